"""A nats-server of the demo's own: started on a free loopback port, killed at the end.

The demo never needs an outside server. When ``nats-server`` is on PATH it starts one
(``-a 127.0.0.1``, a port found by binding 127.0.0.1:0; started again on a new port if the
server could not bind that one), waits until it answers with its ``INFO`` line, and kills it
when the demo ends. Without one, :func:`nats_server_missing` says how to get it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator

__all__ = ["local_nats_server", "nats_server_missing"]

START_TIMEOUT = 10.0
"""Seconds the server may take to answer."""
INSTALL_HINT = ("nats-server is not on PATH; get it with 'apt-get install nats-server' (Debian, Ubuntu), "
                "'brew install nats-server' (macOS) or from https://github.com/nats-io/nats-server/releases")


def nats_server_missing() -> str | None:
    """Why the demo cannot start a nats-server (how to get one), or ``None`` when it can."""
    if shutil.which("nats-server") is None:
        return INSTALL_HINT
    try:
        import nats  # noqa: F401
    except ImportError:
        return "nats-py is not installed: pip install 'nanomsg-kernel[nats]'"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _answers(proc: asyncio.subprocess.Process, port: int) -> bool:
    """Whether the server on ``port`` answers with its INFO line within the start timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while loop.time() < deadline and proc.returncode is None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
            async with asyncio.timeout(1.0):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    if (await reader.readexactly(5)) == b"INFO ":
                        return True
                finally:
                    writer.close()
        await asyncio.sleep(0.01)  # the process is starting: nothing to wait on but its port
    return False


@contextlib.asynccontextmanager
async def local_nats_server() -> AsyncIterator[str]:
    """Run a nats-server on loopback for the block; yields its ``127.0.0.1:PORT``."""
    path = shutil.which("nats-server")
    if path is None:
        raise RuntimeError(INSTALL_HINT)
    for _attempt in range(3):
        port = _free_port()
        proc = await asyncio.create_subprocess_exec(path, "-a", "127.0.0.1", "-p", str(port),
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if await _answers(proc, port):
                yield f"127.0.0.1:{port}"
                return
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
    raise RuntimeError("nats-server did not start (three ports tried)")
