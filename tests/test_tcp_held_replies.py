"""Replies held for a TCP client that sends requests and never reads: bounded in bytes.

The client's requests are small and their replies large (1 MiB each); the handlers wait
until all the requests are in, then answer at once, so every reply is ready while the client
reads nothing. The listener holds them up to ``max_unsent`` bytes, then drops the client.
Memory is measured with ``tracemalloc`` (every reply is a Python ``bytes``), figures recorded
for ``docs/reliability.md``.
"""

from __future__ import annotations

import asyncio
import socket
import time
import tracemalloc
from collections.abc import Callable

import pytest
from reliability.figures import record

from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.tcp import TcpTransport
from nanomsg_kernel.transports.tcp_stream import parse_address

CODEC = CalcRoute.codec()
MIB = 1024 * 1024
REPLY = MIB
REQUESTS = 128


class LateReplies:
    """Each request's reply is ``REPLY`` bytes, made once all ``expected`` requests arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.arrived = 0
        self.all_in = asyncio.Event()
        self.answered = 0

    async def __call__(self, frame: bytes) -> bytes | None:
        header, msg = CODEC.decode_frame(frame)
        self.arrived += 1
        if self.arrived >= self.expected:
            self.all_in.set()
        await self.all_in.wait()
        self.answered += 1
        return CODEC.encode(Echo(text=msg.text, reply="r" * REPLY), kind=Kind.RESPONSE,
                            correlation_id=header.correlation_id)


async def eventually(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


@pytest.mark.parametrize("max_unsent", [None, 8 * MIB], ids=["default", "8MiB"])
async def test_replies_held_for_a_client_that_does_not_read(max_unsent: int | None) -> None:
    handler = LateReplies(REQUESTS)
    options = {} if max_unsent is None else {"max_unsent": max_unsent, "max_body_size": 4 * MIB}
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler, **options) as listener:
        limit = listener.max_unsent
        _scheme, host, port = parse_address(listener.url)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        _reader, writer = await asyncio.open_connection(sock=sock)
        tracemalloc.start()
        try:
            started = time.perf_counter()
            writer.write(b"".join(CODEC.encode(Echo(text=f"q{i}"), correlation_id=i + 1) for i in range(REQUESTS)))
            await eventually(lambda: listener.dropped_slow_readers == 1 and not listener.peers)
            seconds = time.perf_counter() - started
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            writer.transport.abort()
        reply_frame = len(CODEC.encode(Echo(text="q0", reply="r" * REPLY), kind=Kind.RESPONSE, correlation_id=1))
        # What the listener held for the client: at most max_unsent and the reply that crossed
        # it, and a few replies being made; nothing near REQUESTS x REPLY.
        assert peak < limit + 8 * reply_frame
        assert peak < REQUESTS * REPLY
        record(f"held replies tcp max_unsent {limit // MIB} MiB",
               requests=REQUESTS, **{"reply bytes": reply_frame, "replies made": handler.answered,
                                     "would hold mib": round(REQUESTS * reply_frame / MIB, 1),
                                     "max_unsent mib": limit // MIB,
                                     "peak traced mib": round(peak / MIB, 1),
                                     "client dropped after s": round(seconds, 2)})
