"""A client that never reads its replies: what it makes the server keep is bounded in bytes,
and the other clients are served as before. Real pyzmq sockets on 127.0.0.1.

The figures (held bytes, the server's memory, the other client's latency while one does not
read) are recorded for ``docs/reliability.md`` (see ``tests/reliability/figures.py``)."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import statistics
import time

import pytest
import zmq
from reliability.figures import record

from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.zmq import ZmqTransport

CODEC = CalcRoute.codec()
ids = itertools.count(1)
MIB = 1024 * 1024
REPLY = MIB
COUNT = 300
PER_CLIENT = 8 * MIB


class Handler:
    """Answers ``Echo("big")`` with a 1 MiB reply, anything else with its text."""

    def __init__(self) -> None:
        self.big = 0

    async def __call__(self, frame: bytes) -> bytes:
        header, msg = CODEC.decode_frame(frame)
        assert isinstance(msg, Echo)
        if msg.text == "big":
            self.big += 1
            reply = msg.evolve(reply="x" * REPLY)
        else:
            reply = msg.evolve(reply=msg.text)
        return CODEC.encode(reply, kind=Kind.RESPONSE, correlation_id=header.correlation_id)


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")  # pragma: no cover - Linux only


def _p50_max(seconds: list[float]) -> str:
    return f"{1000 * statistics.median(seconds):.2f} / {1000 * max(seconds):.1f}"


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmRSS (Linux)")
@pytest.mark.parametrize("hwm", [1000, 4])
async def test_a_client_that_never_reads_is_bounded_in_bytes_and_slows_no_one(hwm: int) -> None:
    """300 requests for 1 MiB replies from a client that never reads. With ``hwm=1000``
    ZeroMQ would queue all 300 MiB; with ``hwm=4`` most replies are held for room. Either
    way: the bytes counted against that client stay within its budget, the process grows by
    less than a third of what the replies weigh, every request is read and handled (held
    replies do not stop reading), and another client's calls all succeed meanwhile."""
    handler = Handler()
    ctx = zmq.Context()
    sink = ctx.socket(zmq.DEALER)
    sink.linger = 0
    sink.rcvhwm = 1
    sink.rcvbuf = 64 * 1024
    try:
        async with ZmqTransport().listen(
            "zmq+tcp://127.0.0.1:0", handler, hwm=hwm, max_in_flight=8, reply_timeout=1.0,
            max_held_bytes_per_client=PER_CLIENT, events=[],
        ) as listener:
            server = listener.server
            assert server is not None
            async with ZmqTransport().connect(listener.url) as other:

                async def latencies(n: int) -> list[float]:
                    out = []
                    for _ in range(n):
                        started = time.perf_counter()
                        reply = CODEC.decode(await other.request(CODEC.encode(Echo(text="hi"), correlation_id=next(ids)), 2.0))
                        assert isinstance(reply, Echo) and reply.reply == "hi"
                        out.append(time.perf_counter() - started)
                    return out

                before = await latencies(50)
                rss_before = rss_mib()
                match = re.match(r"zmq\+(tcp://[^?]+)", listener.url)
                assert match is not None
                sink.connect(match.group(1))
                for _ in range(COUNT):
                    sink.send(CODEC.encode(Echo(text="big"), correlation_id=next(ids), timeout_ms=60_000))
                flood: list[float] = []
                async with asyncio.timeout(30):
                    while handler.big < COUNT:  # calls made while the server handles the flood
                        flood += await latencies(5)
                grown = rss_mib() - rss_before
                assert grown < COUNT * REPLY / MIB / 3, f"the process grew by {grown:.0f} MiB"
                held = await latencies(50)  # calls made while its replies are held
                loop = asyncio.get_running_loop()
                cpu_start, held_since = time.process_time(), loop.time()
                for replies in server.replies:  # until dropped, after reply_timeout
                    await replies.held.wait_empty(held_since + 10.0)
                held_for = loop.time() - held_since
                cpu = time.process_time() - cpu_start
                assert server.held_replies == 0
                assert server.peak_held_bytes <= PER_CLIENT
                assert server.dropped_replies > 0
                record(
                    f"held replies zmq+tcp hwm={hwm}",
                    replies=f"{COUNT} x {REPLY // MIB} MiB",
                    per_client_budget_mib=PER_CLIENT // MIB,
                    peak_held_mib=round(server.peak_held_bytes / MIB, 1),
                    process_grew_mib=round(grown, 1),
                    dropped=server.dropped_replies,
                    other_p50_ms_before=round(1000 * statistics.median(before), 2),
                    other_p50_max_ms_while_handling_the_flood=_p50_max(flood),
                    other_p50_max_ms_while_held=_p50_max(held),
                    process_cpu_while_held=f"{100 * cpu / held_for:.1f}% for {held_for:.2f}s" if held_for > 0.05 else "-",
                )
    finally:
        sink.close(0)
        ctx.term()
