"""Load: 200 concurrent clients on TCP and on ZeroMQ, each with several requests in flight,
against a server in a process of its own. Every call must be answered exactly once, with
its own reply (checked by content), none lost, none duplicated."""

from __future__ import annotations

import asyncio
import collections
import time

import pytest
from reliability.figures import record
from reliability.kernel import Note, ReliRoute, probe, reli
from reliability.process import ServerProcess

from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.calc import CalcRoute, Echo

CLIENTS = 200
IN_FLIGHT = 4
"""Requests each client keeps in flight."""


async def run_client(client: Client, number: int, calls_each: int, seen: collections.Counter[str]) -> None:
    """``IN_FLIGHT`` callers on one client, each making ``calls_each`` calls in turn."""

    async def caller(k: int) -> None:
        for m in range(calls_each):
            text = f"c{number}-k{k}-m{m}-é✓"
            reply = await client.call(Echo(text=text), timeout=60.0)
            assert reply.text == text and reply.reply == text.upper(), (text, reply)
            seen[text] += 1

    await asyncio.gather(*(caller(k) for k in range(IN_FLIGHT)))


async def load(url: str, calls_each: int) -> dict[str, object]:
    clients = [Client(CalcRoute, url) for _ in range(CLIENTS)]
    seen: collections.Counter[str] = collections.Counter()
    try:
        await asyncio.gather(*(c.connect() for c in clients))
        started = time.perf_counter()
        await asyncio.gather(*(run_client(c, i, calls_each, seen) for i, c in enumerate(clients)))
        seconds = time.perf_counter() - started
        late = sum(c.connection.pending.late_replies for c in clients)  # type: ignore[attr-defined]
        waiting = sum(len(c.connection.pending) for c in clients)  # type: ignore[attr-defined]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    expected = CLIENTS * IN_FLIGHT * calls_each
    assert len(seen) == expected, f"{expected - len(seen)} calls lost"
    duplicated = sum(n - 1 for n in seen.values())
    assert duplicated == 0
    assert late == 0, f"{late} replies arrived for no waiting call (duplicates)"
    assert waiting == 0
    return {"calls": expected, "lost": expected - len(seen), "duplicated": duplicated + late,
            "seconds": round(seconds, 2), "calls_per_second": round(expected / seconds)}


@pytest.mark.parametrize("scheme", ["tcp", "zmq+tcp"])
async def test_200_clients_many_in_flight_every_reply_its_own(scheme: str, request: pytest.FixtureRequest) -> None:
    calls_each = 250 if request.config.getoption("--long") else 25
    server = await ServerProcess.start(f"{scheme}://127.0.0.1:0")
    try:
        figures = await load(server.urls[0], calls_each)
        await server.stop()
    finally:
        await server.kill()
    assert "Traceback" not in server.stderr, server.stderr[-3000:]
    echo = server.metrics["Echo"]
    assert echo["calls"] == figures["calls"], "the server handled a different number of calls than were made"
    assert echo["errors"] == {}
    grown = (server.peak_rss_kib - server.start_rss_kib) / 1024
    assert grown < 64, f"the server grew by {grown:.1f} MiB under load"
    record(f"load {scheme}", clients=CLIENTS, in_flight_per_client=IN_FLIGHT, **figures,
           server_handled=echo["calls"], server_peak_rss_mib=round(server.peak_rss_kib / 1024, 1),
           server_grew_mib=round(grown, 1))


@pytest.mark.slow
async def test_long_soak_tcp_and_zmq() -> None:
    """Release check: the same load, ten times longer, on both transports at once."""
    server = await ServerProcess.start("tcp://127.0.0.1:0", "zmq+tcp://127.0.0.1:0")
    try:
        tcp, zmq = await asyncio.gather(load(server.urls[0], 100), load(server.urls[1], 100))
        await server.stop()
    finally:
        await server.kill()
    assert server.metrics["Echo"]["calls"] == tcp["calls"] + zmq["calls"]  # type: ignore[operator]
    grown = (server.peak_rss_kib - server.start_rss_kib) / 1024
    assert grown < 64
    record("long soak tcp+zmq", tcp=tcp, zmq=zmq, server_grew_mib=round(grown, 1))


async def test_zmq_events_keep_each_publishers_order() -> None:
    """ZeroMQ promises that a service sees each publisher's events in the order published
    (one consumer per events socket): 20 publishers, 200 events each, interleaved."""
    probe.reset()
    publishers, each = 20, 200
    async with reli.serve("zmq+tcp://127.0.0.1:0") as listener:
        clients = [Client(ReliRoute, listener.url) for _ in range(publishers)]
        try:

            async def publish(p: int, client: Client) -> None:
                for i in range(each):
                    await client.publish(Note(seq=p * 1_000_000 + i))

            await asyncio.gather(*(publish(p, c) for p, c in enumerate(clients)))
            async with asyncio.timeout(30):
                while len(probe.notes) < publishers * each:
                    probe.note_seen.clear()
                    await probe.note_seen.wait()
        finally:
            await asyncio.gather(*(c.close() for c in clients))
    by_publisher: dict[int, list[int]] = collections.defaultdict(list)
    for seq in probe.notes:
        by_publisher[seq // 1_000_000].append(seq % 1_000_000)
    assert len(probe.notes) == publishers * each
    assert all(got == list(range(each)) for got in by_publisher.values())
    record("zmq event order", publishers=publishers, events_each=each, received=len(probe.notes),
           out_of_order=0, lost=publishers * each - len(probe.notes))
