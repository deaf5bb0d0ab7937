"""Delivery as ``docs/reliability.md`` states it: request/reply is at most once per attempt
and never retried by the library; a slow subscriber makes publishers wait (no transport
drops an event), and every event delivered is counted in the service's metrics."""

from __future__ import annotations

import asyncio

import pytest
from reliability.figures import record
from reliability.kernel import Hold, Note, ReliRoute, Text, probe, reli

from nanomsg_kernel.client import Client
from nanomsg_kernel.errors import DeadlineExceeded, Unavailable

URLS = {"inproc": "inproc://delivery", "tcp": "tcp://127.0.0.1:0", "zmq+tcp": "zmq+tcp://127.0.0.1:0"}


async def until(predicate: object, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0)


@pytest.mark.parametrize("scheme", ["inproc", "tcp", "zmq+tcp"])
async def test_request_is_at_most_once_and_not_retried(scheme: str) -> None:
    """The server goes away while a request is being handled: the call fails with a clear
    error, and when a server is back at the same address the request is not sent again."""
    probe.reset()
    listener = reli.serve(URLS[scheme])
    await listener.start()
    url = listener.url
    client = Client(ReliRoute, url)
    try:
        call = asyncio.ensure_future(client.call(Hold(tag="once"), timeout=30.0))
        await asyncio.wait_for(probe.started.wait(), 10)
        await listener.close(grace=0)
        with pytest.raises(Unavailable):
            await asyncio.wait_for(call, 10)
        listener = reli.serve(url)
        await listener.start()
        failures = 0
        async with asyncio.timeout(30):
            while True:
                try:
                    assert (await client.call(Text(text="after"), timeout=2.0)).reply == "after"
                    break
                except (Unavailable, DeadlineExceeded):
                    failures += 1
                    await asyncio.sleep(0)
        probe.gate.set()
        assert (await client.call(Hold(tag="twice"), timeout=5.0)).tag == "twice"
    finally:
        await client.close()
        await listener.close()
    assert probe.calls["once"] == 1, "the request was sent again"
    assert probe.calls["after"] == 1


@pytest.mark.parametrize("scheme", ["inproc", "tcp", "zmq+tcp"])
async def test_slow_subscriber_makes_the_publisher_wait(scheme: str) -> None:
    """Events to a subscriber that does not keep up fill the bounded queues, then
    ``publish`` waits; when the subscriber catches up every event arrives, counted once."""
    probe.reset()
    count, size = (40, 1024) if scheme == "inproc" else (400, 60 * 1024)
    listen: dict[str, object] = {"max_in_flight": 4}
    connect: dict[str, object] = {}
    if scheme == "inproc":
        listen["queue_size"] = 8
    elif scheme == "zmq+tcp":
        listen["hwm"] = connect["hwm"] = 10
        connect["send_timeout"] = 60.0
    published = 0
    async with reli.serve(URLS[scheme], **listen) as listener, Client(ReliRoute, listener.url, **connect) as client:

        async def publish() -> None:
            nonlocal published
            for i in range(count):
                await client.publish(Note(seq=i, data=b"n" * size, hold=True))
                published += 1

        publisher = asyncio.ensure_future(publish())
        done, _ = await asyncio.wait([publisher], timeout=1.0)
        assert not done, f"{scheme}: all {count} events were taken while the subscriber was stuck"
        waited_at = published
        probe.gate.set()
        async with asyncio.timeout(60):
            await publisher
            await until(lambda: len(probe.notes) >= count)
    assert sorted(probe.notes) == list(range(count)), "an event was lost or duplicated"
    assert reli.metrics.contracts["event:Note"].calls >= count
    record(f"slow subscriber {scheme}", events=count, event_bytes=size, publisher_waited_after=waited_at,
           delivered=len(probe.notes), dropped=count - len(set(probe.notes)), behaviour="wait")


async def test_zmq_publisher_gives_up_with_a_clear_error() -> None:
    """Over ZeroMQ a publisher waits at most ``send_timeout``, then ``publish`` raises
    Unavailable: the event is refused, visibly, never dropped in silence."""
    probe.reset()
    async with (
        reli.serve(URLS["zmq+tcp"], max_in_flight=2, hwm=1) as listener,
        Client(ReliRoute, listener.url, hwm=1, send_timeout=0.5) as client,
    ):
        sent = 0
        with pytest.raises(Unavailable, match="did not take the event"):
            async with asyncio.timeout(60):
                while True:
                    await client.publish(Note(seq=sent, data=b"z" * 60 * 1024, hold=True))
                    sent += 1
        probe.gate.set()
        await until(lambda: len(probe.notes) >= sent)
    assert sorted(probe.notes) == list(range(sent))


async def test_zmq_events_flow_again_with_max_in_flight_1() -> None:
    """A ZeroMQ listener with ``max_in_flight=1`` pauses its events socket while one event is
    handled; it must resume once the queue drains."""
    probe.reset()
    async with (
        reli.serve(URLS["zmq+tcp"], max_in_flight=1) as listener,
        Client(ReliRoute, listener.url) as client,
    ):
        for i in range(5):
            await client.publish(Note(seq=i))
        await until(lambda: len(probe.notes) >= 5, 3)
    assert sorted(probe.notes) == list(range(5))
