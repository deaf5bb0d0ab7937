"""A calculator service in a process of its own, for the reliability tests.

Run ``python tests/reliability/server.py [--max-body N] URL...``. It serves ``Echo`` and
``CalcWork`` of the calculator kernel on every URL and prints, one line each::

    listening <url actually bound>
    ready rss_kib=<peak resident set size so far>

and, after SIGTERM (listeners closed, in-flight calls finished)::

    metrics {"Echo": {"calls": ..., "errors": {...}, ...}, ...}
    peak_rss_kib <peak resident set size of the whole run>
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import signal
import sys

from nanomsg_kernel import Service, ServiceError, Status, evolve
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, Echo
from nanomsg_kernel.contracts.services import OPS


def build(max_body: int) -> Service:
    """The service: Echo upper-cases, CalcWork computes."""
    svc = Service("calc", CalcRoute, max_body_size=max_body)

    @svc.handler(Echo, inline=True)
    def echo(msg: Echo) -> Echo:
        return evolve(msg, reply=msg.text.upper())

    @svc.handler(CalcWork, inline=True)
    def work(msg: CalcWork) -> CalcWork:
        if msg.b == 0 and msg.op.name == "DIV":
            raise ServiceError(Status.BAD_REQUEST, "division by zero")
        return evolve(msg, result=OPS[msg.op](msg.a, msg.b))

    return svc


def rss_kib() -> int:
    """This process's peak resident set size in KiB: ``VmHWM`` (Linux), else ``ru_maxrss``.

    ``ru_maxrss`` is not this process's own figure on Linux: a child started by fork/vfork
    and exec inherits its parent's peak, so a server started from a large test process
    would report the test process's memory. ``VmHWM`` belongs to the process's own memory.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


async def main(argv: list[str]) -> None:
    max_body = 1024 * 1024
    if argv[:1] == ["--max-body"]:
        max_body, argv = int(argv[1]), argv[2:]
    svc = build(max_body)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        for url in argv:
            listener = await stack.enter_async_context(svc.serve(url, max_body_size=max_body))
            print("listening", listener.url, flush=True)
        print(f"ready rss_kib={rss_kib()}", flush=True)
        await stop.wait()
    print("metrics", json.dumps(svc.metrics.snapshot()), flush=True)
    print("peak_rss_kib", rss_kib(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
