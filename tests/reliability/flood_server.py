"""A process with a low descriptor limit and several listeners, for the descriptor-flood tests.

Run ``python tests/reliability/flood_server.py NOFILE [asyncio|uvloop]`` (with the repository on
``PYTHONPATH``). It lowers
its soft ``RLIMIT_NOFILE`` to ``NOFILE``, then serves the calculator's ``calc`` on a TCP
listener to be flooded, a second TCP listener, a ``zmq+tcp://`` listener and the metrics
HTTP listener, and prints one JSON line::

    {"limit": ..., "capacity": ..., "urls": {"flooded": ..., "tcp": ..., "zmq": ..., "metrics": ...},
     "max_connections": {"flooded": ..., "tcp": ..., "metrics": ...}}

Then it answers one JSON line for each line read on stdin:

* ``stats`` — ``{"fds": <descriptors open>, "open": {...}, "refused": {...}, "held": <budget held>}``;
* ``call URL`` — an outgoing call to the calculator at ``URL``: ``{"ok": true, "reply": ...}``
  or ``{"ok": false, "error": ...}``.

It exits when stdin closes, after closing its listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
from typing import Any

from nanomsg_kernel.app.metrics_http import MetricsServer
from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.contracts.services import calc
from nanomsg_kernel.fdbudget import descriptor_capacity, descriptor_limit, process_budget
from nanomsg_kernel.transports.loop import loop_name, run
from nanomsg_kernel.transports.tcp_server import TcpListener

CALL_TIMEOUT = 5.0


def open_descriptors() -> int:
    """How many descriptors the process holds (Linux: ``/proc/self/fd``; else -1)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # the directory being listed
    except OSError:
        return -1


async def outgoing_call(url: str) -> dict[str, Any]:
    """One call to ``url``, reported as JSON."""
    try:
        async with Client(CalcRoute, url) as client:
            reply = await client.call(Echo(text="outgoing"), timeout=CALL_TIMEOUT)
        return {"ok": True, "reply": reply.reply}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


async def main(nofile: int) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        flooded = await stack.enter_async_context(calc.serve("tcp://127.0.0.1:0"))
        tcp = await stack.enter_async_context(calc.serve("tcp://127.0.0.1:0"))
        zmq = await stack.enter_async_context(calc.serve("zmq+tcp://127.0.0.1:0"))
        metrics = await stack.enter_async_context(MetricsServer(lambda: [calc.metrics], "127.0.0.1", 0))
        assert isinstance(flooded, TcpListener) and isinstance(tcp, TcpListener)
        print(json.dumps({
            "limit": descriptor_limit(), "capacity": descriptor_capacity(), "loop": loop_name(),
            "urls": {"flooded": flooded.url, "tcp": tcp.url, "zmq": zmq.url, "metrics": metrics.url},
            "max_connections": {"flooded": flooded.max_connections, "tcp": tcp.max_connections,
                                "metrics": metrics.max_connections},
        }), flush=True)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().strip():
            if line == "stats":
                answer: dict[str, Any] = {
                    "fds": open_descriptors(), "held": process_budget().held,
                    "open": {"flooded": flooded.open_connections, "tcp": tcp.open_connections},
                    "refused": {"flooded": flooded.refused_connections, "tcp": tcp.refused_connections,
                                "metrics": metrics.refused_connections},
                }
            elif line.startswith("call "):
                answer = await outgoing_call(line[5:])
            else:
                answer = {"error": f"unknown command {line!r}"}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    run(main(int(sys.argv[1])), prefer_uvloop=sys.argv[2:] == ["uvloop"])
