"""The TCP server's limits against misbehaving peers, over real sockets: bad and oversized
headers, stalled partial frames (slowloris), idle peers, too many connections, too many
requests in flight, random damage; none of it affects other connections."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings

from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.errors import ConfigError, RemoteError, Status
from nanomsg_kernel.frame import HEADER_SIZE, Kind, pack_header, parse_header
from nanomsg_kernel.testing import mutated_frames
from nanomsg_kernel.transports.tcp import TcpConnection, TcpListener, TcpTransport
from nanomsg_kernel.transports.tcp_stream import parse_address

CODEC = CalcRoute.codec()
ids = itertools.count(1)


class Blocking:
    """Answers ``Echo`` requests; those whose text starts with "wait" wait for :attr:`gate`."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.running = 0
        self.max_running = 0
        self.seen = 0

    async def __call__(self, frame: bytes) -> bytes | None:
        self.seen += 1
        header, msg = CODEC.decode_frame(frame)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if msg.text.startswith("wait"):
                await self.gate.wait()
        finally:
            self.running -= 1
        return CODEC.encode(msg.evolve(reply=msg.text[:10].upper()), kind=Kind.RESPONSE,
                            correlation_id=header.correlation_id)


def echo_frame(text: str, cid: int | None = None) -> bytes:
    return CODEC.encode(Echo(text=text), correlation_id=next(ids) if cid is None else cid)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


async def raw(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    _scheme, host, port = parse_address(url)
    return await asyncio.open_connection(host, port)


async def until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (fails after ``timeout``)."""
    data = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionResetError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError):
            await writer.wait_closed()
    return bytes(data)


def split_frames(data: bytes) -> list[bytes]:
    """Cut a byte stream into frames, checking every header."""
    frames = []
    while data:
        header = parse_header(data)
        end = HEADER_SIZE + header.body_length
        assert len(data) >= end, "truncated frame"
        frames.append(data[:end])
        data = data[end:]
    return frames


async def good_call(conn: TcpConnection, text: str = "ok") -> None:
    reply = CODEC.decode(await conn.request(echo_frame(text), 5.0))
    assert reply.reply == text.upper()


# -- bad headers ----------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [1025, 2**32 - 1])
async def test_an_oversized_frame_is_refused_before_its_body(declared: int) -> None:
    async with TcpTransport().listen("tcp://127.0.0.1:0", Blocking(), max_body_size=1024) as listener, \
            TcpTransport().connect(listener.url) as good:
        await good_call(good)
        reader, writer = await raw(listener.url)
        # Only the header is sent: the answer cannot wait for (or make room for) the body.
        writer.write(pack_header(Kind.REQUEST, int(CalcRoute.ECHO), 1, 77, 0, declared))
        [reply] = split_frames(await until_closed(reader, writer))
        header, err = CODEC.decode_frame(reply)
        assert (header.kind, header.correlation_id, header.route) == (Kind.ERROR, 77, int(CalcRoute.ECHO))
        assert isinstance(err, RemoteError) and err.status == Status.RESOURCE_EXHAUSTED
        assert f"{declared} bytes exceeds the maximum of 1024" in err.message
        await good_call(good)  # the other connection is untouched
        assert good.connects == 1


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda h: h[:2] + b"\x09" + h[3:], "unsupported wire version 9"),
    (lambda h: h[:3] + b"\x63" + h[4:], "unknown frame kind 99"),
])
async def test_a_malformed_header_gets_bad_request_and_the_connection_closes(
    damage: Callable[[bytes], bytes], expected: str
) -> None:
    async with TcpTransport().listen("tcp://127.0.0.1:0", Blocking()) as listener, \
            TcpTransport().connect(listener.url) as good:
        reader, writer = await raw(listener.url)
        writer.write(damage(echo_frame("x", cid=5)))
        [reply] = split_frames(await until_closed(reader, writer))
        header, err = CODEC.decode_frame(reply)
        assert header.correlation_id == 5 and err.status == Status.BAD_REQUEST
        assert expected in err.message
        await good_call(good)


async def test_garbage_without_magic_is_closed_without_reply() -> None:
    async with TcpTransport().listen("tcp://127.0.0.1:0", Blocking()) as listener, \
            TcpTransport().connect(listener.url) as good:
        reader, writer = await raw(listener.url)
        writer.write(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        assert await until_closed(reader, writer) == b""
        await good_call(good)


async def test_requests_before_a_bad_frame_are_still_answered() -> None:
    handler = Blocking()
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler) as listener:
        reader, writer = await raw(listener.url)
        bad = pack_header(Kind.REQUEST, 2, 1, 2, 0, 0)
        writer.write(echo_frame("wait", cid=1) + bad[:2] + b"\x07" + bad[3:])
        await eventually(lambda: handler.running == 1)
        handler.gate.set()
        frames = [CODEC.decode_frame(f) for f in split_frames(await until_closed(reader, writer))]
        assert sorted((h.correlation_id, h.kind) for h, _ in frames) == [(1, Kind.RESPONSE), (2, Kind.ERROR)]


async def test_a_peer_that_stops_sending_mid_frame_still_gets_its_replies() -> None:
    async with TcpTransport().listen("tcp://127.0.0.1:0", Blocking()) as listener:
        reader, writer = await raw(listener.url)
        writer.write(echo_frame("one", cid=1) + echo_frame("two", cid=2)[:30])
        writer.write_eof()
        frames = split_frames(await until_closed(reader, writer))
        assert [CODEC.decode_frame(f).header.correlation_id for f in frames] == [1]


# -- stalled and idle peers -----------------------------------------------------------------


@pytest.mark.parametrize("sent", [10, HEADER_SIZE + 3], ids=["partial header", "partial body"])
async def test_a_stalled_partial_frame_is_dropped(sent: int, caplog: pytest.LogCaptureFixture) -> None:
    async with TcpTransport().listen("tcp://127.0.0.1:0", Blocking(), read_timeout=0.2) as listener, \
            TcpTransport().connect(listener.url) as good:
        reader, writer = await raw(listener.url)
        with caplog.at_level(logging.WARNING, "nanomsg_kernel.transports.tcp"):
            writer.write(echo_frame("slowloris")[:sent])
            assert await until_closed(reader, writer) == b""
        assert "no progress on a partial frame" in caplog.text
        await good_call(good)
        assert good.connects == 1


async def test_an_idle_connection_is_closed_and_the_client_reconnects() -> None:
    async with TcpTransport().listen("tcp://127.0.0.1:0", Blocking(), idle_timeout=0.2) as listener, \
            TcpTransport().connect(listener.url) as client:
        reader, writer = await raw(listener.url)
        assert await until_closed(reader, writer) == b""
        await eventually(lambda: not client.connected)
        await good_call(client)
        assert client.connects == 2


async def test_no_idle_timeout_by_choice() -> None:
    async with TcpTransport().listen("tcp://127.0.0.1:0", Blocking(), idle_timeout=None,
                                     read_timeout=None) as listener:
        assert listener._sweeper is None
        async with TcpTransport().connect(listener.url) as client:
            await good_call(client)


# -- connection and request limits --------------------------------------------------------------


async def test_connections_beyond_the_maximum_are_closed() -> None:
    async with TcpTransport().listen("tcp://127.0.0.1:0", Blocking(), max_connections=2) as listener:
        first, second = TcpTransport().connect(listener.url), TcpTransport().connect(listener.url)
        await good_call(first)
        await good_call(second)
        reader, writer = await raw(listener.url)
        assert await until_closed(reader, writer) == b""
        assert listener.refused_connections == 1
        await good_call(first)
        await first.close()
        await eventually(lambda: len(listener.peers) == 1)
        async with TcpTransport().connect(listener.url) as third:
            await good_call(third)
        await good_call(second)
        await second.close()


async def test_a_connection_is_not_read_beyond_max_in_flight() -> None:
    handler = Blocking()
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler, max_in_flight=3) as listener, \
            TcpTransport().connect(listener.url) as conn:
        calls = [asyncio.ensure_future(conn.request(echo_frame(f"wait {i}"), 10.0)) for i in range(10)]
        await eventually(lambda: handler.running == 3)
        [peer] = listener.peers
        await eventually(lambda: peer.slot is not None)  # the reader waits for a free slot
        for _ in range(20):
            await asyncio.sleep(0)
        assert handler.running == 3 and handler.seen == 3
        handler.gate.set()
        replies = await asyncio.gather(*calls)
        assert [CODEC.decode(r).reply for r in replies] == [f"WAIT {i}".upper()[:10] for i in range(10)]
        assert handler.max_running == 3 and handler.seen == 10


async def test_backpressure_reaches_the_client_and_nothing_is_lost() -> None:
    """With the server not reading, the client's socket buffers fill and callers wait."""
    handler = Blocking()
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler, max_in_flight=1) as listener, \
            TcpTransport().connect(listener.url, write_high_water=64 * 1024) as conn:
        big = "wait" + "b" * (256 * 1024)
        calls = [asyncio.ensure_future(conn.request(echo_frame(big), 30.0)) for _ in range(64)]
        await eventually(lambda: conn._out is not None and conn._out.congested)
        await eventually(lambda: len(conn.pending) < len(calls))  # later callers wait to write
        await eventually(lambda: handler.seen == 1)
        for _ in range(20):
            await asyncio.sleep(0)
        assert handler.seen == 1 and len(conn.pending) < len(calls)
        handler.gate.set()
        async with asyncio.timeout(30):
            replies = await asyncio.gather(*calls)
        assert len(replies) == 64 and handler.seen == 64 and handler.max_running == 1
        assert len(conn.pending) == 0


# -- random damage --------------------------------------------------------------------------------


def test_damaged_frames_get_error_frames_or_a_close_never_a_crash() -> None:
    """Each damaged frame on a fresh connection: the server answers with well-formed frames
    (or nothing) and closes; it keeps serving everyone else."""
    from nanomsg_kernel.contracts.services import calc

    with asyncio.Runner() as runner:
        listener = TcpListener("tcp://127.0.0.1:0", calc.handle_frame, read_timeout=2.0)
        runner.run(listener.start())
        good = TcpConnection(listener.url)

        async def one(data: bytes) -> None:
            reader, writer = await raw(listener.url)
            writer.write(data)
            writer.write_eof()
            for frame in split_frames(await until_closed(reader, writer)):
                header = parse_header(frame)
                assert header.kind in (Kind.RESPONSE, Kind.ERROR)
            await good_call(good)

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(mutated_frames(CalcRoute))
        def check(data: bytes) -> None:
            runner.run(one(data))

        try:
            check()
            assert good.connects == 1
        finally:
            runner.run(good.close())
            runner.run(listener.close())


# -- replies a peer does not read ------------------------------------------------------------------


class BigReplies:
    """Answers each ``Echo`` with a ``size``-byte reply, once :attr:`gate` opens."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.gate = asyncio.Event()
        self.started = 0

    async def __call__(self, frame: bytes) -> bytes | None:
        header, msg = CODEC.decode_frame(frame)
        self.started += 1
        if msg.text != "now":
            await self.gate.wait()
        return CODEC.encode(msg.evolve(reply="r" * self.size), kind=Kind.RESPONSE,
                            correlation_id=header.correlation_id)


def unsent_bytes(listener: TcpListener) -> int:
    """Bytes of replies the listener holds for its connections, not yet sent."""
    return sum(p.out.unsent for p in listener.peers)


async def test_replies_held_for_a_peer_that_does_not_read_are_bounded_in_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer sends requests whose replies are large and never reads: the listener holds at
    most ``max_unsent`` bytes (plus the reply that crossed it) for it, then drops it; the
    requests it still had running are cancelled, and other connections are not affected."""
    reply_size, max_unsent = 256 * 1024, 1024 * 1024
    handler = BigReplies(reply_size)
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler, max_body_size=512 * 1024,
                                     max_unsent=max_unsent) as listener, \
            TcpTransport().connect(listener.url) as good:
        assert CODEC.decode(await good.request(echo_frame("now"), 5.0)).reply is not None
        known, handler.started = set(listener.peers), 0
        _scheme, host, port = parse_address(listener.url)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # holds almost nothing for us
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        _reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"".join(echo_frame(f"request {i}") for i in range(64)))  # 16 MiB of replies
        await eventually(lambda: handler.started == 64)
        [peer] = listener.peers - known
        peak = 0

        def watch() -> bool:
            nonlocal peak
            peak = max(peak, peer.out.unsent)
            return peer not in listener.peers

        with caplog.at_level(logging.WARNING, "nanomsg_kernel.transports.tcp"):
            handler.gate.set()
            await eventually(watch)
        assert listener.dropped_slow_readers == 1
        assert "exceed max_unsent" in caplog.text
        assert peak <= max_unsent + reply_size + HEADER_SIZE + 64
        assert unsent_bytes(listener) < reply_size  # nothing held for the dropped peer
        reply = CODEC.decode(await good.request(echo_frame("now"), 5.0))
        assert len(reply.reply) == reply_size and good.connects == 1
        writer.transport.abort()


def test_max_unsent_defaults_to_64_mib_or_twice_the_largest_frame() -> None:
    async def nothing(frame: bytes) -> None:
        return None

    assert TcpListener("tcp://127.0.0.1:0", nothing).max_unsent == 64 * 1024 * 1024
    big = 48 * 1024 * 1024
    assert TcpListener("tcp://127.0.0.1:0", nothing, max_body_size=big).max_unsent == 2 * (big + HEADER_SIZE)
    with pytest.raises(ConfigError, match="max_unsent must be"):
        TcpListener("tcp://127.0.0.1:0", nothing, max_body_size=1024, max_unsent=1024)
