"""The gRPC server of the benchmarks, run in a child process.

``python -m benchmarks._grpc_server [--loop asyncio|uvloop]`` serves the ``Bench`` service of
``benchmarks/proto/echo.proto`` with ``grpc.aio`` on 127.0.0.1 (a free port), prints
``127.0.0.1:PORT`` and serves until its standard input closes. ``CallEcho`` answers like the
``calc`` service's ``Echo`` handler (``reply`` = ``text`` upper-cased), ``CallBlob`` returns
the request unchanged, like :mod:`benchmarks.payload`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from benchmarks.grpc_stubs import load
from nanomsg_kernel.transports.loop import run

MAX_MESSAGE = 16 * 1024 * 1024
"""The largest message either side accepts (as our frames' default maximum body)."""

OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
"""Channel and server options of both sides."""


async def main() -> None:
    """Serve until standard input closes."""
    import grpc

    pb2, pb2_grpc = load()

    class Bench(pb2_grpc.BenchServicer):  # type: ignore[misc,name-defined]
        async def CallEcho(self, request: Any, context: Any) -> Any:
            return pb2.Echo(text=request.text, reply=request.text.upper())

        async def CallBlob(self, request: Any, context: Any) -> Any:
            return request

    server = grpc.aio.server(options=OPTIONS)
    pb2_grpc.add_BenchServicer_to_server(Bench(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"127.0.0.1:{port}", flush=True)
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await server.stop(None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    run(main(), prefer_uvloop=parser.parse_args().loop == "uvloop")
