"""A service that goes away and comes back on the same port: libzmq's
``EVENT_CONNECT_RETRIED`` is a scheduled retry, not "unreachable". Calls made meanwhile wait
for the reconnection and succeed once the service is back, within their deadline; a call
whose deadline passes first fails with ``DeadlineExceeded``. Real sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable

import pytest
from reliability.figures import record

from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.errors import DeadlineExceeded, Unavailable
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.zmq import ZmqConnection, ZmqListener, ZmqTransport

CODEC = CalcRoute.codec()
ids = itertools.count(1)


async def echo_handler(frame: bytes) -> bytes:
    header, msg = CODEC.decode_frame(frame)
    assert isinstance(msg, Echo)
    return CODEC.encode(msg.evolve(reply=msg.text.upper()), kind=Kind.RESPONSE,
                        correlation_id=header.correlation_id)


def echo(text: str) -> bytes:
    return CODEC.encode(Echo(text=text), correlation_id=next(ids))


async def call(conn: ZmqConnection, text: str, timeout: float) -> str:
    reply = CODEC.decode(await conn.request(echo(text), timeout))
    assert isinstance(reply, Echo) and reply.reply is not None
    return reply.reply


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


async def listen(port: int) -> ZmqListener:
    listener = ZmqTransport().listen(f"zmq+tcp://127.0.0.1:{port}", echo_handler, events=[])
    await listener.start()
    return listener


def port_of(listener: ZmqListener) -> int:
    match = re.match(r"zmq\+tcp://127\.0\.0\.1:(\d+)", listener.url)
    assert match is not None
    return int(match.group(1))


async def test_calls_made_while_the_service_restarts_succeed_once_it_is_back() -> None:
    first = await listen(0)
    port = port_of(first)
    second: ZmqListener | None = None
    try:
        async with ZmqTransport().connect(f"zmq+tcp://127.0.0.1:{port}") as conn:
            assert await call(conn, "before", 5.0) == "BEFORE"
            await first.close(grace=0.0)
            await eventually(lambda: not conn.connected)
            loop = asyncio.get_running_loop()
            down = loop.time()
            during = [asyncio.ensure_future(call(conn, f"during {i}", 10.0)) for i in range(5)]
            for _ in range(10):  # the client sees the drop and schedules its retry meanwhile
                await asyncio.sleep(0)
            second = await listen(port)
            back = loop.time()
            after = [asyncio.ensure_future(call(conn, f"after {i}", 10.0)) for i in range(5)]
            results = await asyncio.gather(*during, *after, return_exceptions=True)
            assert results == [f"DURING {i}" for i in range(5)] + [f"AFTER {i}" for i in range(5)]
            record("wait restart zmq+tcp", calls_while_down=5, calls_after_restart=5,
                   failed=sum(not isinstance(r, str) for r in results),
                   down_s=round(back - down, 3), back_to_answered_s=round(loop.time() - back, 3))
    finally:
        await first.close(grace=0.0)
        if second is not None:
            await second.close(grace=0.0)


async def test_while_the_service_is_away_a_call_fails_by_its_deadline() -> None:
    """Down for longer than the call's timeout: ``DeadlineExceeded`` at the deadline (not
    ``Unavailable`` at once); the connection serves again once the service is back."""
    first = await listen(0)
    port = port_of(first)
    second: ZmqListener | None = None
    try:
        async with ZmqTransport().connect(f"zmq+tcp://127.0.0.1:{port}") as conn:
            assert await call(conn, "before", 5.0) == "BEFORE"
            await first.close(grace=0.0)
            await eventually(lambda: not conn.connected)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(DeadlineExceeded):
                await call(conn, "away", 0.3)
            assert loop.time() - started >= 0.3
            second = await listen(port)
            assert await call(conn, "back", 10.0) == "BACK"
    finally:
        await first.close(grace=0.0)
        if second is not None:
            await second.close(grace=0.0)


async def test_nothing_ever_listening_still_fails_at_once() -> None:
    """An endpoint never connected whose connection is refused: ``Unavailable`` without
    waiting for the deadline (a wrong address is reported at once)."""
    probe = await listen(0)
    port = port_of(probe)
    await probe.close(grace=0.0)
    conn = ZmqTransport().connect(f"zmq+tcp://127.0.0.1:{port}")
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Unavailable, match="nothing accepts connections"):
            await call(conn, "nobody", 30.0)
        assert loop.time() - started < 25.0
    finally:
        await conn.close()
