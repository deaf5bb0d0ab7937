"""A flood of idle connections on one listener of a process with a low descriptor limit.

The server is a child process (``tests/reliability/flood_server.py``) that lowers its own
soft ``RLIMIT_NOFILE`` and serves on a TCP listener to be flooded, a second TCP listener, a
``zmq+tcp://`` listener and the metrics HTTP listener. This test process opens the flood
(so its descriptors do not count against the child's limit), then checks that the flooded
listener took only its share of the child's descriptors and that everything else in the
child still works: calls over the other listeners, during the flood and on new connections
after it, a metrics scrape, and an outgoing call from the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from reliability.figures import record

from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.contracts.services import calc
from nanomsg_kernel.fdbudget import descriptor_capacity, listener_share
from nanomsg_kernel.transports.loop import uvloop_available
from nanomsg_kernel.transports.tcp_stream import parse_address

ROOT = Path(__file__).resolve().parent.parent
CHILD = ROOT / "tests" / "reliability" / "flood_server.py"
CALL_TIMEOUT = 5.0
FLOOD_TIMEOUT = 60.0
CONNECTING_AT_ONCE = 64


class FloodedProcess:
    """The child: its listeners, a command/answer channel, and its stderr."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.info: dict[str, Any] = {}
        self.stderr = b""
        self._err: asyncio.Task[bytes] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, nofile: int, loop: str) -> AsyncIterator[FloodedProcess]:
        """Start the child with ``RLIMIT_NOFILE`` ``nofile`` on event ``loop``; stop it on exit."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), str(nofile), loop, cwd=ROOT, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        self = cls(proc)
        assert proc.stderr is not None
        self._err = asyncio.create_task(proc.stderr.read())
        try:
            self.info = await self._answer(30.0)
            yield self
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
            self.stderr = await self._err

    async def _answer(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            line = await self.proc.stdout.readline()
        if not line:
            err = await self._err if self._err is not None else b""
            raise AssertionError(f"the server process ended: {err.decode(errors='replace')[-3000:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def ask(self, command: str) -> dict[str, Any]:
        """Send one command line, return the JSON answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._answer(2 * CALL_TIMEOUT)


class Flood:
    """``count`` idle TCP connections to one address, held open until :meth:`close`."""

    def __init__(self, url: str, count: int) -> None:
        _scheme, host, port = parse_address(url)
        self.host, self.port, self.count = host, port, count
        self.writers: list[asyncio.StreamWriter] = []
        self.closed_by_server = 0
        self._watchers: list[asyncio.Task[None]] = []
        self._refused = asyncio.Event()
        self._expect_closed = count

    async def open(self, expect_closed: int) -> None:
        """Open every connection; return once ``expect_closed`` of them were closed by the
        server (those it refused), the others staying open and idle."""
        self._expect_closed = expect_closed
        if expect_closed == 0:
            self._refused.set()
        gate = asyncio.Semaphore(CONNECTING_AT_ONCE)

        async def one() -> None:
            async with gate:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            self.writers.append(writer)
            self._watchers.append(asyncio.create_task(self._watch(reader)))

        async with asyncio.timeout(FLOOD_TIMEOUT):
            await asyncio.gather(*(one() for _ in range(self.count)))
            await self._refused.wait()

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            await reader.read(1)
        self.closed_by_server += 1
        if self.closed_by_server >= self._expect_closed:
            self._refused.set()

    async def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)


class Caller:
    """Calls a URL in a loop on one client, counting answers and failures."""

    def __init__(self, url: str) -> None:
        self.client = Client(CalcRoute, url)
        self.answered = 0
        self.failed: list[str] = []
        self._stop = False
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop:
            try:
                reply = await self.client.call(Echo(text=f"during {self.answered}"), timeout=CALL_TIMEOUT)
                assert reply.reply == f"DURING {self.answered}"
                self.answered += 1
            except Exception as exc:  # counted: the test fails on any
                self.failed.append(f"{type(exc).__name__}: {exc}")
                if len(self.failed) > 3:
                    return

    async def stop(self) -> None:
        self._stop = True
        await self._task
        await self.client.close()


async def fresh_call(url: str) -> str:
    """One call on a new connection."""
    async with Client(CalcRoute, url) as client:
        reply = await client.call(Echo(text="fresh"), timeout=CALL_TIMEOUT)
    assert reply.reply is not None
    return reply.reply


async def scrape(url: str) -> bytes:
    """The status line of ``GET`` on the metrics URL."""
    _scheme, rest = url.split("://", 1)
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\n\r\n".encode())
        async with asyncio.timeout(CALL_TIMEOUT):
            return (await reader.readline()).strip()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def run_flood(nofile: int, flood_size: int, loop: str = "asyncio") -> dict[str, Any]:
    """The whole check; returns its figures."""
    async with FloodedProcess.running(nofile, loop) as child, calc.serve("tcp://127.0.0.1:0") as outside:
        urls, caps = child.info["urls"], child.info["max_connections"]
        assert child.info["limit"] == nofile and child.info["loop"] == loop
        assert child.info["capacity"] == descriptor_capacity(nofile)
        assert caps["flooded"] == caps["tcp"] == listener_share(nofile)
        assert caps["flooded"] < flood_size
        callers = {"tcp": Caller(urls["tcp"]), "zmq": Caller(urls["zmq"])}
        flood = Flood(urls["flooded"], flood_size)
        started = time.perf_counter()
        try:
            await flood.open(expect_closed=flood_size - caps["flooded"])
            flood_seconds = time.perf_counter() - started
            stats = await child.ask("stats")
            assert stats["open"]["flooded"] == caps["flooded"]
            assert stats["refused"]["flooded"] == flood_size - caps["flooded"]
            assert stats["fds"] < nofile - caps["flooded"] // 2, stats  # room left to spare

            # While the flood holds its share: new connections to the other listeners, a
            # metrics scrape and an outgoing call all work; the flooded listener itself
            # closes a newcomer at once instead of hanging.
            after = {"tcp": await fresh_call(urls["tcp"]), "zmq": await fresh_call(urls["zmq"])}
            assert after == {"tcp": "FRESH", "zmq": "FRESH"}
            assert await scrape(urls["metrics"]) == b"HTTP/1.1 200 OK"
            outgoing = await child.ask(f"call {outside.url}")
            assert outgoing == {"ok": True, "reply": "OUTGOING"}
            extra = Flood(urls["flooded"], 1)
            await extra.open(expect_closed=1)
            await extra.close()
            during = {name: c.answered for name, c in callers.items()}
        finally:
            for caller in callers.values():
                await caller.stop()
            await flood.close()
        for name, caller in callers.items():
            assert not caller.failed, (name, caller.failed[:3])
            assert caller.answered > 0
        peak = await child.ask("stats")
    stderr = child.stderr.decode(errors="replace")
    assert "out of system resource" not in stderr and "Too many open files" not in stderr, stderr[-3000:]
    return {
        "loop": loop,
        "limit": nofile,
        "capacity": child.info["capacity"],
        "flooded max_connections": caps["flooded"],
        "flood connections": flood_size,
        "admitted": stats["open"]["flooded"],
        "refused": stats["refused"]["flooded"],
        "child fds": stats["fds"],
        "flood seconds": round(flood_seconds, 2),
        "calls answered during": during,
        "calls failed": 0,
        "after": "tcp, zmq+tcp, metrics 200, outgoing call: ok",
        "fds at the end": peak["fds"],
    }


def _ensure_own_descriptors(needed: int) -> None:
    """Raise this process's soft limit if the flood needs more descriptors than it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the flood needs {needed} descriptors here, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(not uvloop_available(),
                                                                    reason="uvloop is an optional extra"))]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts descriptors in /proc/self/fd")
@pytest.mark.parametrize("loop", LOOPS)
async def test_a_flood_on_one_listener_leaves_the_others_and_outgoing_calls_working(loop: str) -> None:
    nofile, flood_size = 256, 400
    _ensure_own_descriptors(flood_size + 256)
    figures = await run_flood(nofile, flood_size, loop)
    record(f"descriptor flood limit {nofile} {loop}", **figures)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts descriptors in /proc/self/fd")
@pytest.mark.parametrize("loop", LOOPS)
async def test_the_reported_flood_1100_idle_sockets_under_ulimit_1024(loop: str) -> None:
    nofile, flood_size = 1024, 1100
    _ensure_own_descriptors(flood_size + 256)
    figures = await run_flood(nofile, flood_size, loop)
    record(f"descriptor flood limit {nofile} {loop}", **figures)
