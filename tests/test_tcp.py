"""The TCP transport over real sockets on the loopback: requests, concurrency, timeouts,
connection loss and reconnection, configuration errors."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

import pytest

from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.deadlines import reply_deadlines
from nanomsg_kernel.errors import (
    ConfigError,
    DeadlineExceeded,
    EncodeError,
    RemoteError,
    Status,
    Unavailable,
)
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.base import get_transport
from nanomsg_kernel.transports.tcp import TcpConnection, TcpListener, TcpTransport

CODEC = CalcRoute.codec()
ids = itertools.count(1)


class CalcHandler:
    """A frame handler answering like the calc service, recording what it sees.

    ``Echo("wait...")`` blocks until :attr:`gate` is set; ``Echo("boom")`` raises.
    """

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.events: list[object] = []
        self.gate = asyncio.Event()
        self.running = 0
        self.max_running = 0
        self.finished: list[int] = []

    async def __call__(self, frame: bytes) -> bytes | None:
        self.frames.append(frame)
        header, msg = CODEC.decode_frame(frame)
        if header.kind == Kind.EVENT:
            self.events.append(msg)
            return None
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if isinstance(msg, Echo):
                if msg.text == "boom":
                    raise RuntimeError("boom")
                if msg.text.startswith("wait"):
                    await self.gate.wait()
                reply = msg.evolve(reply=msg.text.upper())
            else:
                reply = msg.evolve(result=msg.a + msg.b)
        finally:
            self.running -= 1
        self.finished.append(header.correlation_id)
        return CODEC.encode(reply, kind=Kind.RESPONSE, correlation_id=header.correlation_id)


def echo_frame(text: str, cid: int | None = None, kind: Kind = Kind.REQUEST) -> bytes:
    return CODEC.encode(Echo(text=text), kind=kind, correlation_id=next(ids) if cid is None else cid)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run until ``predicate()`` holds (failing after ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


async def call_echo(conn: TcpConnection, text: str, timeout: float = 5.0) -> str | None:
    reply = CODEC.decode(await conn.request(echo_frame(text), timeout))
    assert isinstance(reply, Echo)
    return reply.reply


# -- basics -------------------------------------------------------------------------------


async def test_listener_reports_the_bound_port_and_serves() -> None:
    handler = CalcHandler()
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler) as listener:
        assert listener.url.startswith("tcp://127.0.0.1:")
        assert int(listener.url.rsplit(":", 1)[1]) > 0
        async with get_transport(listener.url).connect(listener.url) as conn:
            assert isinstance(conn, TcpConnection)
            frame = echo_frame("hello", cid=42)
            reply = await conn.request(frame, timeout=5.0)
            # The handler got exactly the bytes sent; the reply carries the request's id.
            assert handler.frames == [frame]
            header, msg = CODEC.decode_frame(reply)
            assert (header.kind, header.correlation_id, msg.reply) == (Kind.RESPONSE, 42, "HELLO")


async def test_ipv6_loopback() -> None:
    async with TcpTransport().listen("tcp://[::1]:0", CalcHandler()) as listener:
        assert listener.url.startswith("tcp://[::1]:") and not listener.url.endswith(":0")
        async with TcpTransport().connect(listener.url) as conn:
            assert await call_echo(conn, "six") == "SIX"


async def test_large_frames_roundtrip_unchanged() -> None:
    handler = CalcHandler()
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler) as listener, \
            TcpTransport().connect(listener.url) as conn:
        texts = ["x" * 3_000_000, "é" * 100_000, ""]
        replies = await asyncio.gather(*(call_echo(conn, t) for t in texts))
        assert replies == [t.upper() for t in texts]


async def test_many_tasks_share_one_connection() -> None:
    handler = CalcHandler()
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler) as listener, \
            TcpTransport().connect(listener.url) as conn:

        async def worker(w: int) -> list[bool]:
            out = []
            for i in range(10):
                reply = CODEC.decode(await conn.request(
                    CODEC.encode(CalcWork(a=w, b=i, op=WorkType.SUM), correlation_id=next(ids)), 5.0))
                out.append(reply.result == w + i)
            return out

        results = await asyncio.gather(*(worker(w) for w in range(100)))
        assert all(all(r) for r in results)
        assert len(conn.pending) == 0
        assert conn.connects == 1


async def test_replies_come_back_in_the_order_they_finish() -> None:
    """Requests of one connection run concurrently; each reply finds its own caller."""
    handler = CalcHandler()
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler) as listener, \
            TcpTransport().connect(listener.url) as conn:
        slow = [asyncio.ensure_future(call_echo(conn, f"wait {i}")) for i in range(20)]
        await eventually(lambda: handler.running == 20)
        # Fast requests overtake the blocked ones on the same connection.
        assert [await call_echo(conn, f"fast {i}") for i in range(5)] == [f"FAST {i}" for i in range(5)]
        assert not any(t.done() for t in slow)
        handler.gate.set()
        assert await asyncio.gather(*slow) == [f"WAIT {i}" for i in range(20)]
        assert handler.max_running == 21  # the 20 blocked ones and each fast one


async def test_events_get_no_reply() -> None:
    handler = CalcHandler()
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler) as listener, \
            TcpTransport().connect(listener.url) as conn:
        for n in range(3):
            await conn.send(CODEC.encode(CalcDone(work=n, result=n * 2), kind=Kind.EVENT))
        assert await call_echo(conn, "after") == "AFTER"  # the events were read before it
        assert handler.events == [CalcDone(work=n, result=n * 2) for n in range(3)]
        assert conn.pending.late_replies == 0


async def test_a_failing_handler_answers_internal(caplog: pytest.LogCaptureFixture) -> None:
    handler = CalcHandler()
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler) as listener, \
            TcpTransport().connect(listener.url) as conn:
        with caplog.at_level(logging.ERROR, "nanomsg_kernel.transports.tcp"):
            reply = await conn.request(echo_frame("boom", cid=9), timeout=5.0)
        header, err = CODEC.decode_frame(reply)
        assert header.kind == Kind.ERROR and header.correlation_id == 9
        assert isinstance(err, RemoteError) and err.status == Status.INTERNAL
        assert "frame handler failed" in caplog.text
        assert await call_echo(conn, "still") == "STILL"


# -- timeouts and connection loss ---------------------------------------------------------


async def test_timeout_raises_deadline_exceeded_and_forgets_the_request() -> None:
    handler = CalcHandler()
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler) as listener, \
            TcpTransport().connect(listener.url) as conn:
        with pytest.raises(DeadlineExceeded):
            await conn.request(echo_frame("wait"), timeout=0.05)
        assert len(conn.pending) == 0
        handler.gate.set()
        # The late reply arrives before this one (same connection, written first): dropped.
        assert await call_echo(conn, "next") == "NEXT"
        assert conn.pending.late_replies == 1
        assert len(conn.pending) == 0


async def test_waiting_requests_share_deadline_timers_and_none_expires_early() -> None:
    handler = CalcHandler()
    loop = asyncio.get_running_loop()
    wheel = reply_deadlines(loop)
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler) as listener, \
            TcpTransport().connect(listener.url) as conn:
        await conn.connect()
        before = len(wheel)
        start = loop.time()
        calls = [asyncio.ensure_future(conn.request(echo_frame(f"wait {i}"), 0.2)) for i in range(40)]
        await eventually(lambda: handler.running == 40)
        # 40 deadlines within a few ms of each other: a timer or two between them, not 40
        assert wheel.waiting == 40 and len(wheel) - before <= 5
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, DeadlineExceeded) for r in results)
        assert loop.time() - start >= 0.2
        assert len(conn.pending) == 0 and wheel.waiting == 0
        # an answered call leaves nothing in the wheel either
        handler.gate.set()
        assert await call_echo(conn, "next", timeout=5.0) == "NEXT"
        assert len(conn.pending) == 0 and wheel.waiting == 0


async def test_cancelled_request_forgets_its_entry() -> None:
    handler = CalcHandler()
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler) as listener, \
            TcpTransport().connect(listener.url) as conn:
        task = asyncio.ensure_future(conn.request(echo_frame("wait"), None))
        await eventually(lambda: handler.running == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(conn.pending) == 0
        handler.gate.set()


async def test_every_pending_call_fails_unavailable_when_the_connection_drops() -> None:
    handler = CalcHandler()
    listener = TcpTransport().listen("tcp://127.0.0.1:0", handler)
    await listener.start()
    async with TcpTransport().connect(listener.url) as conn:
        calls = [asyncio.ensure_future(call_echo(conn, f"wait {i}", timeout=30)) for i in range(10)]
        await eventually(lambda: handler.running == 10)
        await listener.close(grace=0)  # the handlers are cancelled, the connection closed
        async with asyncio.timeout(5):
            results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, Unavailable) and r.status == Status.UNAVAILABLE for r in results), results
        assert "closed by the server" in str(results[0])
        assert len(conn.pending) == 0
        assert not conn.connected


async def test_reconnects_after_the_server_comes_back() -> None:
    handler = CalcHandler()
    first = TcpTransport().listen("tcp://127.0.0.1:0", handler)
    await first.start()
    url = first.url
    async with TcpTransport().connect(url, backoff=(0, 0)) as conn:
        assert await call_echo(conn, "one") == "ONE"
        await first.close()
        await eventually(lambda: not conn.connected)
        with pytest.raises(Unavailable, match="cannot connect"):
            await call_echo(conn, "down")
        async with TcpTransport().listen(url, handler):
            assert await call_echo(conn, "two") == "TWO"
        assert conn.connects == 2


async def test_backoff_window_fails_fast_then_allows_a_new_attempt() -> None:
    handler = CalcHandler()
    probe = TcpTransport().listen("tcp://127.0.0.1:0", handler)
    await probe.start()
    url = probe.url
    await probe.close()
    conn = TcpTransport().connect(url, backoff=(30.0, 60.0))
    try:
        with pytest.raises(Unavailable, match="cannot connect"):
            await conn.request(echo_frame("a"), 5.0)
        async with TcpTransport().listen(url, handler) as listener:
            # Within the back-off window no attempt is made, even though the server is back.
            with pytest.raises(Unavailable, match="next attempt in"):
                await conn.request(echo_frame("b"), 5.0)
            assert not listener.peers and conn.connects == 0
            conn._retry_at = 0.0  # the window has passed
            assert await call_echo(conn, "c") == "C"
    finally:
        await conn.close()


async def test_no_reconnect_when_disabled() -> None:
    handler = CalcHandler()
    first = TcpTransport().listen("tcp://127.0.0.1:0", handler)
    await first.start()
    url = first.url
    async with TcpTransport().connect(url, reconnect=False) as conn:
        assert await call_echo(conn, "one") == "ONE"
        await first.close()
        await eventually(lambda: not conn.connected)
        async with TcpTransport().listen(url, handler):
            with pytest.raises(Unavailable, match="reconnect is off"):
                await call_echo(conn, "two")


async def test_connect_to_nothing_is_unavailable() -> None:
    probe = TcpTransport().listen("tcp://127.0.0.1:0", CalcHandler())
    await probe.start()
    url = probe.url
    await probe.close()
    conn = TcpTransport().connect(url)
    with pytest.raises(Unavailable, match="cannot connect"):
        await conn.connect()
    await conn.close()


async def test_connect_timeout() -> None:
    """A peer that accepts TCP but never answers the TLS handshake: the connect times out."""
    import ssl

    held: list[asyncio.StreamWriter] = []

    async def mute(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        conn = TcpTransport().connect(f"tcp://127.0.0.1:{port}", ssl=ssl.create_default_context(),
                                      connect_timeout=0.2)
        async with asyncio.timeout(5):
            with pytest.raises(Unavailable, match="connect timed out after 0.2s"):
                await conn.request(echo_frame("x"), timeout=10.0)
        assert len(conn.pending) == 0
        await conn.close()
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_request_timeout_covers_connecting() -> None:
    import ssl

    held: list[asyncio.StreamWriter] = []

    async def mute(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        conn = TcpTransport().connect(f"tcp://127.0.0.1:{port}", ssl=ssl.create_default_context(),
                                      connect_timeout=30)
        with pytest.raises(DeadlineExceeded):
            await conn.request(echo_frame("x"), timeout=0.1)
        await conn.close()
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_close_fails_waiting_requests_and_later_ones() -> None:
    handler = CalcHandler()
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler) as listener:
        conn = TcpTransport().connect(listener.url)
        calls = [asyncio.ensure_future(call_echo(conn, "wait")) for _ in range(3)]
        await eventually(lambda: handler.running == 3)
        await conn.close()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, Unavailable) and "connection closed" in str(r) for r in results)
        with pytest.raises(Unavailable, match="connection closed"):
            await call_echo(conn, "again")
        handler.gate.set()


async def test_oversized_request_is_refused_by_the_client() -> None:
    async with TcpTransport().listen("tcp://127.0.0.1:0", CalcHandler()) as listener, \
            TcpTransport().connect(listener.url, max_body_size=100) as conn:
        with pytest.raises(EncodeError, match="exceeds 100"):
            await conn.request(echo_frame("y" * 200), 5.0)
        assert len(conn.pending) == 0


@pytest.mark.parametrize(("frame", "message"), [
    (b"NK\x01", "shorter than a header"),
    (echo_frame("abc")[:-1], "declares a body of"),
    (echo_frame("abc") + b"x", "declares a body of"),
    (b"XX" + echo_frame("abc")[2:], "bad magic"),
])
async def test_malformed_frames_are_refused_before_they_reach_the_stream(frame: bytes, message: str) -> None:
    async with TcpTransport().listen("tcp://127.0.0.1:0", CalcHandler()) as listener, \
            TcpTransport().connect(listener.url) as conn:
        with pytest.raises(EncodeError, match=message):
            await conn.request(frame, 5.0)
        with pytest.raises(EncodeError, match=message):
            await conn.send(frame)
        assert await call_echo(conn, "fine") == "FINE"
        assert conn.connects == 1 and len(conn.pending) == 0


async def test_a_reply_over_the_clients_limit_drops_the_connection() -> None:
    handler = CalcHandler()
    async with TcpTransport().listen("tcp://127.0.0.1:0", handler) as listener, \
            TcpTransport().connect(listener.url, max_body_size=1000) as conn:
        with pytest.raises(Unavailable, match="bad frame from the server"):
            await call_echo(conn, "z" * 900)  # the reply carries the text twice: over 1000 bytes
        assert not conn.connected
        assert await call_echo(conn, "small") == "SMALL"  # a new connection
        assert conn.connects == 2


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "tcp://127.0.0.1", "tcp://:80", "tcp://127.0.0.1:99999", "tcp://127.0.0.1:x",
    "tcp://127.0.0.1:80/path", "zmq+tcp://127.0.0.1:80", "tcp+tls://127.0.0.1:80", "127.0.0.1:80",
])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        TcpListener(url, CalcHandler())
    with pytest.raises(ConfigError):
        TcpConnection(url)


@pytest.mark.parametrize("options", [
    {"max_in_flight": 0}, {"max_connections": -1}, {"max_body_size": 0}, {"read_timeout": 0},
    {"idle_timeout": -1.0}, {"grace": -1}, {"no_such_option": 1}, {"ssl": "yes"},
])
def test_bad_listen_options_are_config_errors(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        TcpTransport().listen("tcp://127.0.0.1:0", CalcHandler(), **options)


@pytest.mark.parametrize("options", [
    {"connect_timeout": 0}, {"backoff": (2, 1)}, {"backoff": "x"}, {"max_body_size": 2**40},
    {"no_such_option": 1},
])
def test_bad_connect_options_are_config_errors(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        TcpTransport().connect("tcp://127.0.0.1:1", **options)


def test_a_client_needs_a_host() -> None:
    with pytest.raises(ConfigError, match="needs a host"):
        TcpConnection("tcp://*:80")


async def test_binding_a_taken_port_is_a_config_error() -> None:
    async with TcpTransport().listen("tcp://127.0.0.1:0", CalcHandler()) as listener:
        with pytest.raises(ConfigError, match="cannot listen"):
            async with TcpTransport().listen(listener.url, CalcHandler()):
                pass
