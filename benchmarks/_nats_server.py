"""The server half of ``benchmarks/nats.py``'s baselines, run in a child process.

``python -m benchmarks._nats_server TARGET SERVER SUBJECT [--loop asyncio|uvloop]`` subscribes
to SUBJECT on the NATS server at SERVER (``127.0.0.1:PORT``), prints ``ready`` once
subscribed, and answers every request with its payload unchanged until its standard input
closes. TARGET is one of:

* ``raw`` — plain nats-py: a subscription whose callback publishes the payload to the
  request's reply subject (the baseline);
* ``faststream`` — FastStream's ``NatsBroker`` with a ``bytes`` subscriber returning its
  argument, default settings but no log line per message (``pip install 'faststream[nats]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from nanomsg_kernel.transports.loop import run


async def _raw(server: str, subject: str) -> None:
    import nats

    nc = await nats.connect(f"nats://{server}")

    async def echo(msg: Any) -> None:
        await nc.publish(msg.reply, msg.data)

    await nc.subscribe(subject, cb=echo)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await nc.close()


async def _faststream(server: str, subject: str) -> None:
    from faststream.nats import NatsBroker

    # Default settings but for its log: a line per message, which would fill the pipe this
    # process writes to (and cost time: leaving it out only flatters the baseline).
    broker = NatsBroker(f"nats://{server}", logger=None)

    @broker.subscriber(subject)
    async def echo(body: bytes) -> bytes:
        return body

    await broker.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["raw", "faststream"])
    parser.add_argument("server")
    parser.add_argument("subject")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    main = _raw if args.target == "raw" else _faststream
    run(main(args.server, args.subject), prefer_uvloop=args.loop == "uvloop")
