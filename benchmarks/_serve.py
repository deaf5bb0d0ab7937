"""Serve one of our services in a child process: ``python -m benchmarks._serve SPEC URL
[--loop asyncio|uvloop]``.

SPEC is ``module:attribute`` of a :class:`~nanomsg_kernel.service.Service` (e.g.
``nanomsg_kernel.contracts.services:calc`` or ``benchmarks.payload:blob``), URL any listening address of
our transports (``tcp://127.0.0.1:0``, ``zmq+tcp://127.0.0.1:0``). Prints the bound URL,
then serves until standard input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys

from nanomsg_kernel.transports.loop import run


async def main(spec: str, url: str) -> None:
    """Serve ``spec`` at ``url`` until standard input closes."""
    module, _, attr = spec.partition(":")
    service = getattr(importlib.import_module(module), attr)
    options = {"idle_timeout": None} if url.startswith("tcp://") else {}
    async with service.serve(url, **options) as listener:
        print(listener.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("url")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    run(main(args.spec, args.url), prefer_uvloop=args.loop == "uvloop")
