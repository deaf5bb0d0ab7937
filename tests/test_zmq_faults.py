"""ZeroMQ services dying, hanging and coming back, with real server processes.

Each server is ``python -m nanomsg_kernel.contracts.bench_services URL`` in a subprocess; it prints its
bound URL, then serves until killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.bench import BenchRoute, Burn, Who
from nanomsg_kernel.errors import DeadlineExceeded, ServiceError, Unavailable
from nanomsg_kernel.transports.zmq import ZmqConnection

ROOT = Path(__file__).resolve().parent.parent


class Server:
    """A service process and the URL it bound."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc = proc
        self.url = url
        self.pid = proc.pid

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


@asynccontextmanager
async def server(url: str, workers: int = 0) -> AsyncIterator[Server]:
    """Run ``burn`` at ``url`` in a new process; kill it on exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nanomsg_kernel.contracts.bench_services", url, str(workers),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )
    srv = Server(proc, "")
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60.0)
        assert line, "the server process exited before serving"
        srv.url = line.decode().strip()
        yield srv
    finally:
        await srv.kill()


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the loop run until ``predicate()`` holds (failing after ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


class Stream:
    """Concurrent callers making calls in a loop and recording each outcome and duration."""

    def __init__(self, client: object, make: Callable[[], object], timeout: float, callers: int = 8) -> None:
        self.client = client
        self.make = make
        self.timeout = timeout
        self.outcomes: list[tuple[object, float]] = []
        self._stop = False
        self._tasks = [asyncio.ensure_future(self._run()) for _ in range(callers)]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop:
            start = loop.time()
            try:
                reply: object = await self.client.call(self.make(), timeout=self.timeout)  # type: ignore[attr-defined]
            except ServiceError as exc:
                reply = exc
                await asyncio.sleep(0)  # a call can fail without waiting: let the loop run
            self.outcomes.append((reply, loop.time() - start))

    def successes(self, since: int = 0) -> list[object]:
        return [r for r, _ in self.outcomes[since:] if not isinstance(r, Exception)]

    def failures(self, since: int = 0) -> list[tuple[object, float]]:
        return [(r, t) for r, t in self.outcomes[since:] if isinstance(r, Exception)]

    async def stop(self) -> None:
        self._stop = True
        await asyncio.gather(*self._tasks)


@pytest.mark.parametrize("kind", ["tcp", "ipc"])
async def test_server_killed_mid_stream_fails_calls_then_recovers(kind: str, ipc_dir: str) -> None:
    url = "zmq+tcp://127.0.0.1:0" if kind == "tcp" else f"zmq+ipc://{ipc_dir}/svc"
    async with server(url) as first, Client(BenchRoute, first.url) as client:
        assert (await client.call(Who(), timeout=10.0)).pid == first.pid
        stream = Stream(client, lambda: Burn(n=2000), timeout=2.0)
        await eventually(lambda: len(stream.successes()) >= 50)
        killed_at = len(stream.outcomes)
        await first.kill()
        # The connection drops: calls in flight fail at once, new ones cannot be sent.
        await eventually(lambda: len(stream.failures(killed_at)) >= 8)
        failures = stream.failures(killed_at)
        assert all(isinstance(e, (Unavailable, DeadlineExceeded)) for e, _ in failures), failures
        assert all(t < 2.0 + 0.5 for _, t in failures), failures
        assert any(isinstance(e, Unavailable) for e, _ in failures)
        # The same endpoint comes back: calls succeed again, served by the new process.
        async with server(first.url) as second:
            assert second.url == first.url
            restarted_at = len(stream.outcomes)
            await eventually(lambda: len(stream.successes(restarted_at)) >= 20, timeout=30.0)
            await stream.stop()
            assert (await client.call(Who(), timeout=5.0)).pid == second.pid


async def test_killed_endpoint_among_several_others_keep_serving(ipc_dir: str) -> None:
    async with (
        server("zmq+tcp://127.0.0.1:0") as a, server(f"zmq+ipc://{ipc_dir}/b") as b,
        Client(BenchRoute, f"{a.url},{b.url}") as client,
    ):
        conn = client.connection
        assert isinstance(conn, ZmqConnection)
        await conn.wait_connected(timeout=10.0)
        stream = Stream(client, Who, timeout=1.0)
        await eventually(lambda: {w.pid for w in stream.successes()} == {a.pid, b.pid})  # type: ignore[attr-defined]
        await a.kill()
        await eventually(lambda: len(conn.connected) == 1)
        after = len(stream.outcomes)
        await eventually(lambda: len(stream.successes(after)) >= 100)
        # Calls made after the disconnection all went to b.
        assert {w.pid for w in stream.successes(after)} == {b.pid}  # type: ignore[attr-defined]
        # Calls that were in flight to a failed within their deadline.
        failures = stream.failures()
        assert all(isinstance(e, (DeadlineExceeded, Unavailable)) for e, _ in failures), failures
        assert all(t < 1.0 + 0.5 for _, t in failures), failures
        # a comes back on the same endpoint and gets calls again.
        async with server(a.url) as again:
            await conn.wait_connected(timeout=20.0)
            await eventually(
                lambda: again.pid in {w.pid for w in stream.successes(after)},  # type: ignore[attr-defined]
                timeout=20.0,
            )
            await stream.stop()


async def test_heartbeats_detect_a_hung_server() -> None:
    """A stopped process keeps its sockets open; only heartbeats can tell it is gone."""
    async with (
        server("zmq+tcp://127.0.0.1:0") as srv,
        Client(BenchRoute, srv.url, heartbeat=0.2) as client,
    ):
        assert (await client.call(Who(), timeout=10.0)).pid == srv.pid
        os.kill(srv.pid, signal.SIGSTOP)
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(Unavailable, match="connection lost"):
                await client.call(Who(), timeout=20.0)
            assert loop.time() - start < 10.0
        finally:
            os.kill(srv.pid, signal.SIGCONT)
