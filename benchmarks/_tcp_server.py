"""The server half of ``benchmarks/tcp.py``, run in a child process.

``python -m benchmarks._tcp_server TARGET --loop asyncio|uvloop`` listens on 127.0.0.1 (a
free port), prints ``tcp://127.0.0.1:PORT``, and serves until its standard input closes.
TARGET is one of:

* ``echo`` — a bare asyncio length-prefixed echo server (the baseline);
* ``frames`` — the TCP transport with a handler returning each frame unchanged;
* ``service`` — the ``calc`` service (``nanomsg_kernel.contracts.services:calc``) over the TCP transport.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys

from nanomsg_kernel.transports.loop import run

_PREFIX = struct.Struct(">I")


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    unpack, readexactly = _PREFIX.unpack, reader.readexactly
    try:
        while True:
            prefix = await readexactly(4)
            body = await readexactly(unpack(prefix)[0])
            writer.write(prefix + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _frame_echo(frame: bytes) -> bytes:
    return frame


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def main(target: str) -> None:
    """Serve ``target`` until standard input closes."""
    if target == "echo":
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        print(f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await _stdin_closed()
        return
    from nanomsg_kernel.transports.tcp import TcpTransport

    if target == "frames":
        handler = _frame_echo
    else:
        from nanomsg_kernel.contracts.services import calc

        handler = calc.handle_frame
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler, idle_timeout=None) as listener:
        print(listener.url, flush=True)
        await _stdin_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["echo", "frames", "service"])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    run(main(args.target), prefer_uvloop=args.loop == "uvloop")
