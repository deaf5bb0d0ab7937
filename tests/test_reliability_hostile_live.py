"""Hostile frames against a live server on each transport: thousands of random, mutated and
hand-made nasty frames, sent raw, while a well-formed client keeps getting its answers.

TCP and ZeroMQ servers run in a process of their own (``reliability/server.py``), which
reports its own peak memory; the in-process transport is measured with tracemalloc."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import tempfile
import tracemalloc
from collections.abc import Iterator

import pytest
import zmq
import zmq.asyncio
from reliability.corpus import hypothesis_frames, mutations, nasty_frames
from reliability.figures import record
from reliability.process import ServerProcess
from reliability.server import build

from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.frame import HEADER_SIZE, Kind
from nanomsg_kernel.transports.inproc import InprocConnection, InprocListener

MIB = 1024 * 1024
MAX_BODY = 256 * 1024
CODEC = CalcRoute.codec(max_body_size=MAX_BODY)
CHECK_EVERY = 50
"""A well-formed call after every this many hostile frames."""


@pytest.fixture
def ipc_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="nk-") as d:
        yield d


def hostile(count: int) -> list[bytes]:
    """The corpus (the frame of exactly the maximum included) and ``count`` more: drawn by
    hypothesis and mutated from those."""
    corpus = [f for _n, f in nasty_frames(int(CalcRoute.ECHO), MAX_BODY)]
    valid, damaged = hypothesis_frames(CalcRoute, 100)
    seeds = [*valid, *damaged, *corpus]
    return [*corpus, *damaged, *mutations(seeds, max(0, count - len(corpus) - len(damaged)), seed=count)]


def check_replies(data: bytes) -> int:
    """Split a byte stream of reply frames; each must be a well-formed response or error frame."""
    seen, pos = 0, 0
    while pos < len(data):
        assert len(data) - pos >= HEADER_SIZE, f"a truncated reply: {data[pos:pos + 64]!r}"
        header = CODEC.read_header(data[pos:pos + HEADER_SIZE])
        frame = data[pos:pos + HEADER_SIZE + header.body_length]
        decoded = CODEC.decode_frame(frame)
        assert decoded.header.kind in (Kind.RESPONSE, Kind.ERROR)
        pos += len(frame)
        seen += 1
    return seen


class Checker:
    """A well-formed client making one checked call at a time."""

    def __init__(self, url: str) -> None:
        self.client = Client(CalcRoute, url, max_body_size=MAX_BODY)
        self.ids = itertools.count()
        self.answered = 0

    async def check(self) -> None:
        text = f"still there? {next(self.ids)}"
        reply = await self.client.call(Echo(text=text), timeout=10.0)
        assert reply.reply == text.upper()
        self.answered += 1


async def tcp_hostile(url: str, frames: list[bytes], checker: Checker) -> int:
    """Each frame on a connection of its own (a bad header closes it), 16 at a time; the
    connection is half-closed after the frame so that a short one cannot stall."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    replies = 0

    async def one(frame: bytes) -> None:
        # A server that refuses a frame closes the connection at once, maybe with our bytes
        # unread: our next write or read may then fail (reset, not connected), and an error
        # reply still in flight is lost with the connection, as TCP does.
        nonlocal replies
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            data = b""
            try:
                writer.write(frame)
                writer.write_eof()
                async with asyncio.timeout(10):
                    data = await reader.read()
            except OSError:
                pass
            replies += check_replies(data)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    for start in range(0, len(frames), CHECK_EVERY):
        batch = frames[start:start + CHECK_EVERY]
        for i in range(0, len(batch), 16):
            await asyncio.gather(*(one(f) for f in batch[i:i + 16]))
        await checker.check()
    return replies


async def zmq_hostile(url: str, frames: list[bytes], checker: Checker) -> int:
    """All frames on one raw DEALER (single-part), plus some multi-part messages; every reply
    read back must be well-formed."""
    address = url.split("?")[0].replace("zmq+", "")
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    replies = 0

    async def drain() -> None:
        nonlocal replies
        while True:
            parts = await sock.recv_multipart()
            # A multi-part request is refused with an error frame behind the envelope it came
            # with (the parts before the one that starts with the magic).
            assert parts[:-1] in ([], [b"junk"])
            replies += check_replies(parts[-1])

    try:
        sock.connect(address)
        reader = asyncio.ensure_future(drain())
        try:
            for start in range(0, len(frames), CHECK_EVERY):
                for frame in frames[start:start + CHECK_EVERY]:
                    async with asyncio.timeout(10):
                        await sock.send(frame)
                async with asyncio.timeout(10):
                    await sock.send_multipart([b"junk", frames[start], b"more"])
                await checker.check()
        finally:
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
    finally:
        sock.close(0)
        ctx.term()
    return replies


class Collector:
    """Takes the replies an in-process listener hands back."""

    def __init__(self) -> None:
        self.replies = 0

    def deliver(self, reply: bytes) -> None:
        self.replies += check_replies(reply)


@pytest.fixture
def frame_count(request: pytest.FixtureRequest) -> int:
    return 50_000 if request.config.getoption("--long") else 5_000


@pytest.mark.parametrize("transport", ["tcp", "zmq+tcp", "zmq+ipc"])
async def test_live_server_survives_hostile_frames(transport: str, frame_count: int, ipc_dir: str) -> None:
    url = {"tcp": "tcp://127.0.0.1:0", "zmq+tcp": "zmq+tcp://127.0.0.1:0", "zmq+ipc": f"zmq+ipc://{ipc_dir}/s"}[transport]
    frames = hostile(frame_count)
    server = await ServerProcess.start(url, max_body=MAX_BODY)
    try:
        checker = Checker(server.urls[0])
        try:
            await checker.check()
            send = tcp_hostile if transport == "tcp" else zmq_hostile
            replies = await send(server.urls[0], frames, checker)
            await checker.check()
        finally:
            await checker.client.close()
        assert server.alive
        await server.stop()
    finally:
        await server.kill()
    assert "Traceback" not in server.stderr, server.stderr[-3000:]
    grown = (server.peak_rss_kib - server.start_rss_kib) / 1024
    assert grown < 64, f"the server grew by {grown:.1f} MiB"
    assert server.metrics["Echo"]["calls"] >= checker.answered
    record(f"hostile live {transport}", frames_sent=len(frames), error_replies_checked=replies,
           good_calls_answered=checker.answered, server_start_rss_mib=round(server.start_rss_kib / 1024, 1),
           server_peak_rss_mib=round(server.peak_rss_kib / 1024, 1), server_grew_mib=round(grown, 1))


async def test_inproc_server_survives_hostile_frames(frame_count: int) -> None:
    frames = hostile(frame_count)
    svc = build(MAX_BODY)
    collector = Collector()
    tracemalloc.start()
    try:
        async with InprocListener("inproc://hostile", svc.handle_frame, max_body_size=MAX_BODY) as listener:
            checker = Checker(listener.url)
            conn = InprocConnection(listener.url, max_body_size=2 * MAX_BODY)
            try:
                await checker.check()
                for start in range(0, len(frames), CHECK_EVERY):
                    for frame in frames[start:start + CHECK_EVERY]:
                        await listener.submit(frame, collector)  # type: ignore[arg-type]
                    await checker.check()
                for frame in frames[:CHECK_EVERY]:
                    await conn.send(frame)
                await checker.check()
            finally:
                await checker.client.close()
                await conn.close()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    outcomes = collections.Counter(k for k, m in svc.metrics.contracts.items() for _ in range(m.calls))
    assert peak < 48 * MIB, f"peaked at {peak / MIB:.1f} MiB"
    record("hostile live inproc", frames_sent=len(frames) + CHECK_EVERY, error_replies_checked=collector.replies,
           good_calls_answered=checker.answered, peak_traced_mib=round(peak / MIB, 1),
           outcomes={k: v for k, v in outcomes.items()})
