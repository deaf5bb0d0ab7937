"""Clients start alike on every transport: ``connect()`` returns once the service can be
reached and raises ``Unavailable`` when it cannot; the first call connects the same way,
within its own timeout; nothing stays open after a failed attempt, and the next one tries
again. Run over every transport of ``TRANSPORT_URLS`` (a transport added there runs it)."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from conftest import TRANSPORT_URLS

from nanomsg_kernel import Client, DeadlineExceeded, Service, Unavailable, evolve
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType
from nanomsg_kernel.transports.base import Listener

WAIT = 10.0
"""Bound of each wait (every one ends as soon as what it waits for happens)."""

calc = Service("start-calc", CalcRoute)


@calc.handler(CalcWork)
async def work(w: CalcWork) -> CalcWork:
    return evolve(w, result=w.a + w.b)


async def vacant(transport: str) -> str:
    """A URL of ``transport`` where nothing listens: a listener's address, once it closed."""
    listener = calc.serve(TRANSPORT_URLS[transport]())
    await listener.start()
    url = listener.url
    await listener.close()
    return url


@pytest.fixture(params=sorted(TRANSPORT_URLS))
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_connect_to_nothing_is_unavailable(transport: str) -> None:
    client = Client(CalcRoute, await vacant(transport))
    try:
        with pytest.raises(Unavailable):
            await asyncio.wait_for(client.connect(), WAIT)
        with pytest.raises(Unavailable):  # and again: each attempt is a new one
            await asyncio.wait_for(client.connect(), WAIT)
    finally:
        await client.close()


async def test_the_first_call_to_nothing_is_unavailable(transport: str) -> None:
    client = Client(CalcRoute, await vacant(transport))
    try:
        with pytest.raises(Unavailable):
            await asyncio.wait_for(client.call(CalcWork(a=1, b=2, op=WorkType.SUM), timeout=5.0), WAIT)
        with pytest.raises(Unavailable):
            await asyncio.wait_for(client.publish(CalcWork(a=1, b=2, op=WorkType.SUM)), WAIT)
    finally:
        await client.close()


async def test_async_with_a_client_of_nothing_raises_on_entry(transport: str) -> None:
    with pytest.raises(Unavailable):
        async with Client(CalcRoute, await vacant(transport)):
            pytest.fail("entered a client whose service cannot be reached")


async def test_connect_then_call_once_the_service_listens(transport: str) -> None:
    listener: Listener = calc.serve(TRANSPORT_URLS[transport]())
    async with listener, Client(CalcRoute, listener.url) as client:
        reply = await client.call(CalcWork(a=20, b=22, op=WorkType.SUM), timeout=5.0)
    assert reply.result == 42


async def test_a_new_client_connects_after_the_service_came_back(transport: str) -> None:
    url = await vacant(transport)
    with pytest.raises(Unavailable):
        async with Client(CalcRoute, url):
            pass
    async with calc.serve(url) as listener, Client(CalcRoute, listener.url) as client:
        assert (await client.call(CalcWork(a=1, b=1, op=WorkType.SUM), timeout=5.0)).result == 2


async def test_the_first_call_connects_within_its_own_timeout() -> None:
    """A peer that takes TCP connections but never completes a handshake (TLS over tcp://,
    ZMTP over zmq+tcp://): the first call ends at its own deadline, not connect_timeout's."""
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [
        Client(CalcRoute, f"zmq+tcp://127.0.0.1:{port}?events={port}", connect_timeout=30.0),
        Client(CalcRoute, f"tcp://127.0.0.1:{port}", ssl=ssl.create_default_context(), connect_timeout=30.0),
    ]
    try:
        for client in clients:
            with pytest.raises(DeadlineExceeded):
                await asyncio.wait_for(client.call(CalcWork(a=1, b=2, op=WorkType.SUM), timeout=0.2), WAIT)
    finally:
        for client in clients:
            await client.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
