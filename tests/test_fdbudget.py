"""The process's descriptor budget and the listeners that share it: the documented defaults,
and listeners refusing connections once the budget is spent, over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Callable

import pytest

from nanomsg_kernel.app.metrics_http import MAX_CONNECTIONS, MetricsServer
from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.errors import ConfigError
from nanomsg_kernel.fdbudget import (
    UNLIMITED,
    DescriptorBudget,
    descriptor_capacity,
    descriptor_limit,
    descriptor_reserve,
    listener_share,
    process_budget,
)
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.admission import ConnectionGate
from nanomsg_kernel.transports.tcp import TcpTransport
from nanomsg_kernel.transports.tcp_stream import parse_address

CODEC = CalcRoute.codec()


async def echo(frame: bytes) -> bytes:
    header, msg = CODEC.decode_frame(frame)
    return CODEC.encode(msg.evolve(reply=msg.text.upper()), kind=Kind.RESPONSE, correlation_id=header.correlation_id)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            return await reader.read() == b""
    except ConnectionResetError:
        return True


# -- the defaults ------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "reserve", "capacity", "share"), [
    (64, 64, 0, 1),
    (256, 64, 192, 96),
    (1024, 128, 896, 448),
    (4096, 512, 3584, 1024),
    (65536, 8192, 57344, 1024),
])
def test_the_documented_defaults(limit: int, reserve: int, capacity: int, share: int) -> None:
    assert descriptor_reserve(limit) == reserve
    assert descriptor_capacity(limit) == capacity
    assert listener_share(limit) == share


def test_the_limit_is_the_soft_rlimit_read_when_needed() -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unbounded = soft == resource.RLIM_INFINITY or soft > UNLIMITED
    assert descriptor_limit() == (UNLIMITED if unbounded else soft)
    assert process_budget().capacity == descriptor_capacity(descriptor_limit())
    if unbounded:
        pytest.skip("no soft limit to lower from here")
    lowered = max(128, min(soft, 512) - 64)
    if lowered >= soft:
        pytest.skip("the soft limit is already too low to lower it further here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, _hard))
    try:
        assert descriptor_limit() == lowered
        assert process_budget().capacity == descriptor_capacity(lowered)
        assert TcpTransport().listen("tcp://127.0.0.1:0", echo).max_connections == listener_share(lowered)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, _hard))


def test_listeners_default_to_their_share() -> None:
    assert TcpTransport().listen("tcp://127.0.0.1:0", echo).max_connections == listener_share()
    assert MetricsServer(list).max_connections == min(MAX_CONNECTIONS, listener_share())
    assert MetricsServer(list, max_connections=500).max_connections == 500


def test_budget_take_and_give_back() -> None:
    budget = DescriptorBudget(2)
    assert budget.take() and budget.take() and not budget.take()
    assert (budget.held, budget.available, budget.refused) == (2, 0, 1)
    budget.give_back()
    assert budget.take()
    budget.give_back()
    budget.give_back()
    with pytest.raises(RuntimeError, match="without a matching take"):
        budget.give_back()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_bad_max_connections_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_connections must be a positive int"):
        ConnectionGate(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_connections"):
        TcpTransport().listen("tcp://127.0.0.1:0", echo, max_connections=bad)
    with pytest.raises(ValueError, match="capacity"):
        DescriptorBudget(-1)


# -- listeners sharing one budget ---------------------------------------------------------------------


async def test_listeners_share_the_budget_and_give_descriptors_back() -> None:
    """Two listeners take from one budget of 6: a flood on the first takes its 4, the second
    still gets the 2 left, a further connection to either is closed at once, and every
    descriptor comes back when the connections close."""
    budget = DescriptorBudget(6)
    first = TcpTransport().listen("tcp://127.0.0.1:0", echo, max_connections=4, descriptor_budget=budget)
    second = TcpTransport().listen("tcp://127.0.0.1:0", echo, max_connections=4, descriptor_budget=budget)
    async with first, second, contextlib.AsyncExitStack() as stack:
        writers: list[asyncio.StreamWriter] = []  # kept: a collected writer closes its connection

        async def connect(url: str) -> asyncio.StreamReader:
            _scheme, host, port = parse_address(url)
            reader, writer = await asyncio.open_connection(host, port)
            writers.append(writer)
            stack.callback(writer.transport.abort)
            return reader

        flood = [await connect(first.url) for _ in range(10)]
        assert all([await closed_by_server(r) for r in flood[4:]])
        await eventually(lambda: first.open_connections == 4)
        assert first.refused_connections == 6 and budget.held == 4
        callers = [TcpTransport().connect(second.url) for _ in range(2)]
        for i, conn in enumerate(callers):
            stack.push_async_callback(conn.close)
            reply = await conn.request(CODEC.encode(Echo(text=f"still {i}"), correlation_id=1), 5.0)
            assert CODEC.decode(reply).reply == f"STILL {i}"
        assert budget.held == 6 and second.open_connections == 2
        late = await connect(second.url)  # second is under its own cap, but the budget is spent
        assert await closed_by_server(late)
        assert second.refused_connections == 1 and budget.refused == 1
    assert budget.held == 0


# -- the metrics listener -------------------------------------------------------------------------------


async def test_the_metrics_listener_is_capped() -> None:
    budget = DescriptorBudget(100)
    async with MetricsServer(list, "127.0.0.1", 0, max_connections=2, descriptor_budget=budget) as server:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]  # send nothing
        await eventually(lambda: budget.held == 2)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        async with asyncio.timeout(5):
            answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and b"Retry-After: 1" in answer
        assert server.refused_connections == 1
        writer.close()
        for _reader, idle_writer in idle:
            idle_writer.transport.abort()
        await eventually(lambda: budget.held == 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            assert (await reader.readline()).startswith(b"HTTP/1.1 200 OK")
        writer.close()
    assert budget.held == 0
