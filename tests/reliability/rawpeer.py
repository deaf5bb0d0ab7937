"""A misbehaving peer on a connection of its own, for each transport.

``bad_peer(url, how, limit)`` is an async context manager: on entry it connects to the
service at ``url`` the way the transport's own clients would (a TCP stream, a ZeroMQ
``DEALER``, a raw socket under ZeroMQ, or the in-process queue) and misbehaves ``how``:

* ``garbage`` — bytes that are not frames (nor, under ZeroMQ, a ZMTP greeting);
* ``oversized`` — a frame whose body is one byte over ``limit``;
* ``half`` — a header and half of the body it declares, then nothing more.

The connection is held open, stalled, until the block exits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import zmq
import zmq.asyncio

from nanomsg_kernel.frame import Kind, pack_header

__all__ = ["HOW", "bad_peer"]

HOW = ("garbage", "oversized", "half")
GARBAGE = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 4


def bad_bytes(how: str, limit: int) -> bytes:
    """The bytes a peer misbehaving ``how`` sends (route 2, correlation id 77)."""
    if how == "garbage":
        return GARBAGE
    if how == "oversized":
        body = b"\xc6" + (limit - 4).to_bytes(4, "big") + b"o" * (limit - 4)
        assert len(body) == limit + 1
        return pack_header(Kind.REQUEST, 2, 1, 77, 0, len(body)) + body
    if how == "half":
        return pack_header(Kind.REQUEST, 2, 1, 77, 0, 1000) + b"\x81\x01\xc6" + b"h" * 497
    raise ValueError(how)


@contextlib.asynccontextmanager
async def _stream(reader_writer: tuple[asyncio.StreamReader, asyncio.StreamWriter], data: bytes) -> AsyncIterator[None]:
    _reader, writer = reader_writer
    try:
        writer.write(data)
        with contextlib.suppress(OSError):
            await writer.drain()
        yield
    finally:
        writer.transport.abort()


@contextlib.asynccontextmanager
async def _dealer(address: str, data: bytes) -> AsyncIterator[None]:
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(address)
        async with asyncio.timeout(10):
            await sock.send(data)
        yield
    finally:
        sock.close(0)
        ctx.term()


@contextlib.asynccontextmanager
async def bad_peer(url: str, how: str, limit: int) -> AsyncIterator[None]:
    """Misbehave ``how`` on a new connection to ``url`` for the duration of the block."""
    data = bad_bytes(how, limit)
    scheme, rest = url.split("://", 1)
    if scheme == "tcp":
        host, port = rest.rsplit(":", 1)
        async with _stream(await asyncio.open_connection(host, int(port)), data):
            yield
    elif scheme in ("zmq+tcp", "zmq+ipc"):
        address = rest.split("?")[0]
        if how == "garbage":  # not even ZMTP: straight at the socket underneath
            if scheme == "zmq+tcp":
                host, port = address.rsplit(":", 1)
                conn = await asyncio.open_connection(host, int(port))
            else:
                conn = await asyncio.open_unix_connection(address)
            async with _stream(conn, data):
                yield
        else:
            async with _dealer(f"{scheme[4:]}://{address}", data):
                yield
    elif scheme == "inproc":
        from nanomsg_kernel.transports.inproc import InprocConnection

        conn_ = InprocConnection(url, max_body_size=2 * limit)
        try:
            await conn_.send(data)
            yield
        finally:
            await conn_.close()
    elif scheme == "nats":
        import nats

        from nanomsg_kernel.transports.nats_url import parse_nats_url

        address = parse_nats_url(url)
        nc = await nats.connect(address.servers, allow_reconnect=False)
        try:  # plain nats-py: the bad bytes as the payload of a request, with a reply subject
            await nc.publish(address.subject, data, reply=nc.new_inbox())
            await nc.flush()
            yield
        finally:
            await nc.close()
    else:
        raise ValueError(f"no bad peer for {url}")
