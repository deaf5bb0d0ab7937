"""The conformance suite every transport must pass (and the in-process binding, for the
cases that do not need a wire), modelled on gRPC's interop cases.

Transports come from ``TRANSPORT_URLS`` in ``conftest.py``: a transport added there runs
this suite. The service under test is ``reli`` (``reliability/kernel.py``) with a body limit
of 64 KiB, served in this process so that the tests can see what its handlers saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from conftest import TRANSPORT_URLS
from reliability.figures import record
from reliability.kernel import Blob, Crash, Empty, Fail, Hold, ReliRoute, Sleep, Text, Unhandled, probe, reli
from reliability.rawpeer import HOW, bad_peer

from nanomsg_kernel.binding import LocalBinding
from nanomsg_kernel.client import Client
from nanomsg_kernel.errors import (
    DeadlineExceeded,
    EncodeError,
    RemoteError,
    ServiceError,
    Status,
    Unavailable,
)
from nanomsg_kernel.frame import HEADER_SIZE, Kind, pack_header
from nanomsg_kernel.service import Service
from nanomsg_kernel.transports.base import Listener, get_transport
from nanomsg_kernel.transports.server_core import ServerCore

LIMIT = reli.codec.max_body_size
CODEC = ReliRoute.codec(max_body_size=LIMIT)
UNICODE = [
    "", "plain ascii", "déjà vu", "日本語のテキスト", "🙂👍🏽🏳️‍🌈", "\u202eright to left\u202c", "a\x00b",
    "e\u0301 (combining)", "\uffff\ufffe", "\U0001d518\U0001d52b (mathematical letters)", "x" * 10_000 + "✓",
]


class Served:
    """``reli`` served on one transport, and a client of it."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.listener: Listener = reli.serve(TRANSPORT_URLS[transport](), max_body_size=LIMIT)
        self.client = Client(ReliRoute, "inproc://unset")

    async def start(self) -> None:
        await self.listener.start()
        self.client = Client(ReliRoute, self.listener.url, max_body_size=LIMIT)
        await self.client.connect()

    async def restart(self) -> None:
        """Close the listener and listen again at the very same address."""
        url = self.listener.url
        await self.listener.close()
        self.listener = reli.serve(url, max_body_size=LIMIT)
        await self.listener.start()

    async def close(self) -> None:
        await self.client.close()
        await self.listener.close()

    async def call(self, msg: Any, timeout: float | None = None) -> Any:
        return await self.client.call(msg, timeout=timeout)

    async def raw(self, frame: bytes, timeout: float = 5.0) -> Any:
        """Send a hand-made frame on a connection of its own; the decoded reply message."""
        async with get_transport(self.listener.url).connect(self.listener.url, max_body_size=4 * LIMIT) as conn:
            reply = await conn.request(frame, timeout)
        return CODEC.decode_frame(reply).message


class Bound:
    """``reli`` behind an in-process binding (no wire)."""

    transport = "binding"

    def __init__(self) -> None:
        self.binding = LocalBinding("reli", reli)

    async def call(self, msg: Any, timeout: float | None = None) -> Any:
        return await self.binding.call(msg, timeout=timeout)


@pytest.fixture(params=sorted(TRANSPORT_URLS))
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    probe.reset()
    s = Served(request.param)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(params=[*sorted(TRANSPORT_URLS), "binding"])
async def peer(request: pytest.FixtureRequest) -> AsyncIterator[Served | Bound]:
    probe.reset()
    if request.param == "binding":
        yield Bound()
        return
    s = Served(request.param)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


def server_core(listener: Listener) -> ServerCore:
    """The server core of a listener served in this process."""
    core = getattr(listener, "core", None)
    if core is None:
        server = getattr(listener, "server", None)
        core = server.core if server is not None else None
    assert isinstance(core, ServerCore), listener
    return core


def cancelled_count() -> int:
    """Calls of ``Hold`` that ``reli`` counted as cancelled."""
    metrics = reli.metrics.contracts.get("Hold")
    return 0 if metrics is None else metrics.errors.get(Status.CANCELLED, 0)


async def until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


# -- messages ---------------------------------------------------------------------------


async def test_empty_message(peer: Served | Bound) -> None:
    assert await peer.call(Empty(), timeout=5) == Empty()


async def test_unicode_in_messages(peer: Served | Bound) -> None:
    for text in UNICODE:
        reply = await peer.call(Text(text=text), timeout=5)
        assert reply.reply == text


async def test_body_at_the_size_limit_accepted(served: Served) -> None:
    blob = Blob(data=b"\xab" * (LIMIT - 5))
    assert len(CODEC.encode_body(blob)) == LIMIT
    assert await served.call(blob, timeout=10) == blob


async def test_one_byte_over_the_limit_refused_by_the_sender(served: Served) -> None:
    with pytest.raises(EncodeError, match="exceeds the maximum"):
        await served.call(Blob(data=b"\xab" * (LIMIT - 4)), timeout=5)
    assert (await served.call(Text(text="next"), timeout=5)).reply == "next"


async def test_one_byte_over_the_limit_refused_by_the_receiver(served: Served) -> None:
    """A sender allowing larger bodies than the service: the service refuses the frame with
    a clear error (over ZeroMQ, libzmq drops the connection: the call is Unavailable)."""
    big = Client(ReliRoute, served.listener.url, max_body_size=2 * LIMIT)
    try:
        with pytest.raises(ServiceError) as e:
            await big.call(Blob(data=b"\xab" * (LIMIT - 4)), timeout=5)
    finally:
        await big.close()
    if isinstance(e.value, RemoteError):
        assert e.value.status in (Status.RESOURCE_EXHAUSTED, Status.DECODE_ERROR)
        assert f"exceeds the maximum of {LIMIT}" in e.value.message
    else:
        assert served.transport.startswith("zmq") and isinstance(e.value, Unavailable), repr(e.value)
    assert (await served.call(Text(text="next"), timeout=5)).reply == "next"


# -- errors -----------------------------------------------------------------------------


async def test_status_and_message_of_an_error_reply(peer: Served | Bound) -> None:
    for status in Status:
        if status is Status.OK:
            continue
        with pytest.raises(ServiceError) as e:  # TIMEOUT and UNAVAILABLE: their own subclasses
            await peer.call(Fail(status=int(status), message=f"{status.name} — ✓ déjà"), timeout=5)
        assert e.value.status is status
        assert e.value.message == f"{status.name} — ✓ déjà"


async def test_unknown_contract(peer: Served | Bound) -> None:
    with pytest.raises(RemoteError) as e:
        await peer.call(Unhandled(x=1), timeout=5)
    assert e.value.status is Status.CONTRACT_NOT_SUPPORTED
    assert "no handler for Unhandled" in e.value.message


async def test_unknown_route(served: Served) -> None:
    reply = await served.raw(pack_header(Kind.REQUEST, 999, 1, 5, 0, 1) + b"\x80")
    assert isinstance(reply, RemoteError) and reply.status is Status.CONTRACT_NOT_SUPPORTED
    assert "unknown route 999" in reply.message


async def test_handler_exception_is_internal_with_a_generic_message(
    peer: Served | Bound, caplog: pytest.LogCaptureFixture,
) -> None:
    """The exception's text may hold secrets: it stays in the service's log."""
    with caplog.at_level(logging.ERROR, logger="nanomsg_kernel.service.reli"), pytest.raises(RemoteError) as e:
        await peer.call(Crash(what="secret db password=hunter2"), timeout=5)
    assert e.value.status is Status.INTERNAL
    assert e.value.message == "internal error in reli handling Crash (details in the service's log)"
    assert "hunter2" not in repr(e.value.details)
    assert any("password=hunter2" in (r.exc_text or "") for r in caplog.records)


async def test_expose_errors_sends_the_exception_text(peer: Served | Bound) -> None:
    """For development, ``expose_errors=True`` sends the exception's text."""
    reli.expose_errors = True
    try:
        with pytest.raises(RemoteError) as e:
            await peer.call(Crash(what="kaboom"), timeout=5)
    finally:
        reli.expose_errors = False
    assert e.value.status is Status.INTERNAL
    assert e.value.message == "ValueError: kaboom"


@pytest.mark.parametrize("body", [b"\x81\x01\x05", b"\x81\x01\xa5hi", b"\xc1", b"\x91\x01"])
async def test_bad_body_gets_a_decode_error_reply(served: Served, body: bytes) -> None:
    reply = await served.raw(pack_header(Kind.REQUEST, int(ReliRoute.TEXT), 1, 9, 0, len(body)) + body)
    assert isinstance(reply, RemoteError) and reply.status is Status.DECODE_ERROR
    assert reply.message.startswith("Text")


BAD_HEADERS = {
    # name: (damage to a good request, status, message, whether a stream closes)
    "wire version 2": (lambda f: f[:2] + b"\x02" + f[3:], Status.BAD_REQUEST,
                       "unsupported wire version 2, expected 1", True),
    "kind 7": (lambda f: f[:3] + b"\x07" + f[4:], Status.BAD_REQUEST, "unknown frame kind 7", False),
    "kind response": (lambda f: f[:3] + b"\x02" + f[4:], Status.BAD_REQUEST,
                      "a service takes requests, not RESPONSE", False),
}


async def exchange(url: str, frame: bytes) -> tuple[bytes, bool]:
    """Send a hand-made ``frame``; its reply, and whether the connection closed after it (a
    stream only: message transports have no connection to lose). A request sent after it on
    the same connection must still be answered when it stays open."""
    if not url.startswith("tcp://"):
        async with get_transport(url).connect(url, max_body_size=LIMIT) as conn:
            reply = await conn.request(frame, 5)
            after = await conn.request(CODEC.encode(Text(text="after"), correlation_id=43), 5)
        assert CODEC.decode(after).reply == "after"
        return reply, False
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        async with asyncio.timeout(5):
            writer.write(frame)
            header = await reader.readexactly(HEADER_SIZE)
            reply = header + await reader.readexactly(CODEC.read_header(header).body_length)
            writer.write(CODEC.encode(Text(text="after"), correlation_id=43))
            try:  # the next reply, or the end of the stream
                after = await reader.readexactly(HEADER_SIZE)
            except asyncio.IncompleteReadError as exc:
                assert exc.partial == b""
                return reply, True
            after += await reader.readexactly(CODEC.read_header(after).body_length)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    assert CODEC.decode(after).reply == "after"
    return reply, False


@pytest.mark.parametrize("damage", sorted(BAD_HEADERS))
async def test_a_bad_header_gets_the_same_reply_on_every_transport(served: Served, damage: str) -> None:
    """One check for every transport (``docs/wire.md``, "What a receiver refuses")."""
    spoil, status, message, closes = BAD_HEADERS[damage]
    reply, closed = await exchange(served.listener.url, spoil(CODEC.encode(Text(text="x"), correlation_id=41)))
    header, error = CODEC.decode_frame(reply)
    assert (header.kind, header.correlation_id) == (Kind.ERROR, 41)
    assert isinstance(error, RemoteError) and (error.status, error.message) == (status, message)
    assert closed == (closes and served.transport == "tcp")
    assert (await served.call(Text(text="next"), timeout=5)).reply == "next"


# -- handlers run as real tasks -----------------------------------------------------------

web = Service("web", ReliRoute)
"""A service whose handler calls an HTTP server with httpx under an anyio deadline."""


@web.handler(Text)
async def fetch(msg: Text) -> Text:
    """GET ``msg.text`` (an http:// URL); reply with the body. anyio's cancel scope needs the
    current task to be a real task (it keeps a weak reference to it)."""
    task = asyncio.current_task()
    assert task is not None and weakref.ref(task)() is task
    with anyio.fail_after(5):
        async with httpx.AsyncClient(trust_env=False) as http:
            response = await http.get(msg.text)
    return Text(text=msg.text, reply=response.text)


@contextlib.asynccontextmanager
async def http_server(body: bytes) -> AsyncIterator[str]:
    """An HTTP/1.1 server on 127.0.0.1, port 0, answering every request with ``body``."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/page"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("transport", [*sorted(TRANSPORT_URLS), "binding"])
async def test_a_handler_using_anyio_and_httpx(transport: str) -> None:
    """httpx (through anyio) works inside a handler, whatever carries the call."""
    async with http_server("fetched ✓".encode()) as page:
        if transport == "binding":
            reply = await LocalBinding("web", web).call(Text(text=page), timeout=10)
        else:
            async with web.serve(TRANSPORT_URLS[transport]()) as listener, \
                    Client(ReliRoute, listener.url) as client:
                reply = await client.call(Text(text=page), timeout=10)
    assert reply == Text(text=page, reply="fetched ✓")


# -- cancellation and deadlines ---------------------------------------------------------


async def test_call_cancelled_after_it_began(peer: Served | Bound) -> None:
    """The caller stops waiting: the handler it started is cancelled (over a wire, by a
    CANCEL frame), never finishes, and the connection stays usable."""
    cancelled_before = cancelled_count()
    call = asyncio.ensure_future(peer.call(Hold(tag="cancelled"), timeout=30))
    await asyncio.wait_for(probe.started.wait(), 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await until(lambda: probe.running == 0)  # the gate stays shut: only cancellation ends it
    assert cancelled_count() == cancelled_before + 1
    assert (await peer.call(Text(text="after"), timeout=5)).reply == "after"
    assert probe.calls["cancelled"] == 1
    if isinstance(peer, Served):
        assert peer.client.connection.pending.late_replies == 0  # type: ignore[attr-defined]
        assert server_core(peer.listener).in_flight == 0


async def test_200_cancelled_calls_cancel_their_handlers_and_free_their_slots(served: Served) -> None:
    """Each caller that gives up cancels its handler: none of them runs on, and the places
    they held among the requests in flight are free again (TCP holds 128 per connection)."""
    core = server_core(served.listener)
    cap = min(200, getattr(served.listener, "max_in_flight", 1024))
    cancelled_before = cancelled_count()
    loop = asyncio.get_running_loop()
    calls = [asyncio.ensure_future(served.call(Hold(tag="held"), timeout=30)) for _ in range(200)]
    await until(lambda: probe.running == cap)
    assert core.in_flight == cap
    began = loop.time()
    for call in calls:
        call.cancel()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
    # The gate never opens: a handler ends only by being cancelled. Calls TCP had not read
    # yet are read now, started, and cancelled by the CANCEL frames behind them.
    await until(lambda: probe.running == 0 and core.in_flight == 0)
    freed = loop.time() - began
    started = probe.calls["held"]
    assert cap <= started <= 200
    assert cancelled_count() == cancelled_before + started
    assert (await served.call(Text(text="after"), timeout=5)).reply == "after"
    record(f"cancel {served.transport}", calls=200, handlers_started=started, handlers_cancelled=started,
           handlers_finished=0, in_flight_after=core.in_flight, seconds_to_free=round(freed, 3))


@pytest.mark.parametrize("transport", sorted(TRANSPORT_URLS))
async def test_cancelled_calls_free_their_places_at_the_in_flight_limit(transport: str) -> None:
    """With every place taken (``max_in_flight=16``), the CANCEL frames of 100 callers
    still reach the server, behind requests it cannot start yet: every running handler is
    cancelled and the waiting requests are dropped or cancelled in turn."""
    probe.reset()
    url = TRANSPORT_URLS[transport]()
    async with reli.serve(url, max_body_size=LIMIT, max_in_flight=16) as listener, \
            Client(ReliRoute, listener.url, max_body_size=LIMIT) as client:
        core = server_core(listener)
        calls = [asyncio.ensure_future(client.call(Hold(tag="capped"), timeout=30)) for _ in range(100)]
        await until(lambda: probe.running == 16)
        assert core.in_flight == 16
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        await until(lambda: probe.running == 0 and core.in_flight == 0)
        assert 16 <= probe.calls["capped"] <= 100
        assert (await client.call(Text(text="after"), timeout=5)).reply == "after"


async def test_a_call_past_its_deadline_cancels_a_handler_that_ignores_deadlines(served: Served) -> None:
    """A plain frame handler does not read the deadline in the header: the caller's CANCEL,
    sent when its timeout passes, is what stops it."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def forever(frame: bytes) -> bytes | None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return None  # pragma: no cover - never released

    url = TRANSPORT_URLS[served.transport]()
    async with get_transport(url).listen(url, forever) as listener, Client(ReliRoute, listener.url) as client:
        with pytest.raises(DeadlineExceeded):
            await client.call(Hold(tag="deadline"), timeout=0.2)
        assert started.is_set()
        await asyncio.wait_for(cancelled.wait(), 5)
        await until(lambda: server_core(listener).in_flight == 0)


async def test_a_1ms_deadline(peer: Served | Bound) -> None:
    assert (await peer.call(Text(text="warm"), timeout=5)).reply == "warm"  # connected first
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ServiceError) as e:
        await peer.call(Sleep(ms=500, tag="late"), timeout=0.001)
    assert e.value.status is Status.TIMEOUT
    assert isinstance(e.value, DeadlineExceeded) or isinstance(peer, Bound)
    assert loop.time() - started < 1.0
    # The deadline travels with the request: the service drops the work too.
    await until(lambda: "Sleep" in reli.metrics.contracts and probe.running == 0)
    await until(lambda: reli.metrics.contracts["Sleep"].errors.get(Status.TIMEOUT, 0) >= 1)
    assert probe.calls["late"] <= 1
    assert (await peer.call(Text(text="after"), timeout=5)).reply == "after"


async def test_deadline_spent_connecting_is_deadline_exceeded_on_zmq() -> None:
    """A ZeroMQ peer that accepts the connection but never completes the handshake: a call
    with a 50 ms timeout has its deadline pass while waiting to send: DeadlineExceeded, as
    over TCP ("could not send within...")."""
    handlers: list[tuple[asyncio.Task[Any], asyncio.StreamWriter]] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append((asyncio.current_task(), writer))  # type: ignore[arg-type]
        with contextlib.suppress(OSError):
            await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Client(ReliRoute, f"zmq+tcp://127.0.0.1:{port}?events={port}")
    try:
        with pytest.raises(DeadlineExceeded):
            await client.call(Text(text="x"), timeout=0.05)
    finally:
        await client.close()
        server.close()
        for _task, writer in handlers:
            writer.close()
        for task, writer in handlers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            await task
        await server.wait_closed()


# -- volume -----------------------------------------------------------------------------


async def test_1000_concurrent_calls(peer: Served | Bound) -> None:
    texts = [f"concurrent {i} ✓" for i in range(1000)]
    replies = await asyncio.gather(*(peer.call(Text(text=t), timeout=30) for t in texts))
    assert [r.reply for r in replies] == texts


async def test_soak_of_10000_calls(peer: Served | Bound, request: pytest.FixtureRequest) -> None:
    total = 100_000 if request.config.getoption("--long") else 10_000
    workers, done = 50, 0
    started = time.perf_counter()

    async def worker(w: int) -> None:
        nonlocal done
        for i in range(w, total, workers):
            text = f"soak {i}"
            assert (await peer.call(Text(text=text), timeout=30)).reply == text
            done += 1

    await asyncio.gather(*(worker(w) for w in range(workers)))
    seconds = time.perf_counter() - started
    assert done == total
    assert all(probe.calls[f"soak {i}"] == 1 for i in range(total))
    record(f"soak {peer.transport}", calls=total, concurrent=workers, lost=0, duplicated=0,
           seconds=round(seconds, 2), calls_per_second=round(total / seconds))


# -- faults -----------------------------------------------------------------------------


async def test_reconnect_after_a_server_restart(served: Served) -> None:
    """The same client gets through again once the server is back at its address; calls in
    between fail with Unavailable or DeadlineExceeded (nothing is retried for them)."""
    assert (await served.call(Text(text="before"), timeout=5)).reply == "before"
    loop = asyncio.get_running_loop()
    await served.restart()
    back = loop.time()
    failures: list[str] = []
    async with asyncio.timeout(15):
        while True:
            try:
                assert (await served.call(Text(text="after"), timeout=2)).reply == "after"
                break
            except (Unavailable, DeadlineExceeded) as exc:
                failures.append(type(exc).__name__)
                await asyncio.sleep(0)
    record(f"reconnect {served.transport}", recovery_s=round(loop.time() - back, 3),
           failed_calls_meanwhile=len(failures), failure_kinds=sorted(set(failures)))
    assert probe.calls["after"] == 1


@pytest.mark.parametrize("how", HOW)
async def test_bad_peer_does_not_stop_a_good_one(served: Served, how: str) -> None:
    """Garbage, an oversized frame or a half frame on one connection: a second client still
    gets its answer within a second, during and after."""
    async with bad_peer(served.listener.url, how, LIMIT):
        async with asyncio.timeout(1.0):
            assert (await served.call(Text(text="during"), timeout=1.0)).reply == "during"
    async with asyncio.timeout(1.0):
        assert (await served.call(Text(text="after"), timeout=1.0)).reply == "after"
