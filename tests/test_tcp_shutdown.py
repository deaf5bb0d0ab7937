"""Graceful shutdown of the TCP listener, over real sockets: stop accepting, finish the
requests in flight within the grace period, send their replies, then close."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable

import pytest

from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.errors import Unavailable
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.tcp import TcpConnection, TcpTransport
from nanomsg_kernel.transports.tcp_stream import parse_address

CODEC = CalcRoute.codec()
ids = itertools.count(1)


class Handler:
    """Echoes; "wait" requests block on :attr:`gate`; others yield a few times first."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.running = 0
        self.seen = 0
        self.finished: set[int] = set()
        self.rng = random.Random(7)

    async def __call__(self, frame: bytes) -> bytes:
        self.seen += 1
        header, msg = CODEC.decode_frame(frame)
        self.running += 1
        try:
            if msg.text.startswith("wait"):
                await self.gate.wait()
            for _ in range(self.rng.randrange(20)):
                await asyncio.sleep(0)
        finally:
            self.running -= 1
        self.finished.add(header.correlation_id)
        return CODEC.encode(msg.evolve(reply=msg.text.upper()), kind=Kind.RESPONSE,
                            correlation_id=header.correlation_id)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


async def call(conn: TcpConnection, text: str, cid: int | None = None, timeout: float = 10.0) -> str:
    frame = CODEC.encode(Echo(text=text), correlation_id=next(ids) if cid is None else cid)
    reply = CODEC.decode(await conn.request(frame, timeout))
    assert isinstance(reply.reply, str)
    return reply.reply


async def test_close_stops_accepting_and_finishes_requests_in_flight() -> None:
    handler = Handler()
    listener = TcpTransport().listen("tcp://127.0.0.1:0", handler)
    await listener.start()
    async with TcpTransport().connect(listener.url) as conn:
        accepted = [asyncio.ensure_future(call(conn, f"wait {i}")) for i in range(5)]
        await eventually(lambda: handler.running == 5)
        closing = asyncio.ensure_future(listener.close(grace=30))
        await eventually(lambda: listener.closing)
        _scheme, host, port = parse_address(listener.url)
        with pytest.raises(OSError):  # no longer accepting
            await asyncio.open_connection(host, port)
        late = asyncio.ensure_future(call(conn, "late"))  # sent after the shutdown began: not read
        for _ in range(20):
            await asyncio.sleep(0)
        assert not closing.done() and not late.done()
        handler.gate.set()
        async with asyncio.timeout(10):
            assert await asyncio.gather(*accepted) == [f"WAIT {i}" for i in range(5)]
            await closing
            with pytest.raises(Unavailable):
                await late
        assert handler.seen == 5
        await eventually(lambda: not conn.connected)


async def test_requests_still_running_after_the_grace_period_are_cancelled() -> None:
    handler = Handler()
    listener = TcpTransport().listen("tcp://127.0.0.1:0", handler, grace=0.1)
    await listener.start()
    async with TcpTransport().connect(listener.url) as conn:
        stuck = [asyncio.ensure_future(call(conn, f"wait {i}", timeout=60)) for i in range(3)]
        done = asyncio.ensure_future(call(conn, "quick"))
        await eventually(lambda: handler.running == 3)
        assert await done == "QUICK"
        async with asyncio.timeout(10):
            await listener.close()  # the listener's own grace: 0.1 s
            results = await asyncio.gather(*stuck, return_exceptions=True)
        assert all(isinstance(r, Unavailable) for r in results), results
        assert len(handler.finished) == 1  # only "quick": the stuck ones were cancelled
        assert len(conn.pending) == 0


async def test_no_accepted_request_loses_its_reply() -> None:
    """Under load from several connections, shut down midway: every request whose handler
    finished got its reply; every other one failed with Unavailable; none hangs."""
    handler = Handler()
    listener = TcpTransport().listen("tcp://127.0.0.1:0", handler)
    await listener.start()
    conns = [TcpTransport().connect(listener.url) for _ in range(4)]
    cids = itertools.count(1_000_000)
    try:
        async def worker(conn: TcpConnection) -> list[tuple[int, bool]]:
            out = []
            for _ in range(100):
                cid = next(cids)
                try:
                    await call(conn, "load", cid=cid)
                    out.append((cid, True))
                except Unavailable:
                    out.append((cid, False))
            return out

        work = asyncio.gather(*(worker(c) for c in conns for _ in range(8)))
        await eventually(lambda: len(handler.finished) >= 200, timeout=30)
        await listener.close(grace=10)
        async with asyncio.timeout(30):
            results = [r for per in await work for r in per]
    finally:
        for c in conns:
            await c.close()
    answered = {cid for cid, ok in results if ok}
    assert answered == handler.finished
    assert len(answered) >= 200
    assert any(not ok for _cid, ok in results)  # the shutdown did cut the load
