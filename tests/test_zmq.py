"""The ZeroMQ transport over real pyzmq sockets (tcp on 127.0.0.1, ipc in a temporary
directory): request-reply, endpoints, limits, backpressure, events, CurveZMQ."""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import zmq

from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.errors import (
    ConfigError,
    DeadlineExceeded,
    EncodeError,
    RemoteError,
    Status,
    Unavailable,
)
from nanomsg_kernel.frame import HEADER_SIZE, Kind
from nanomsg_kernel.transports.base import correlation_id_of, get_transport
from nanomsg_kernel.transports.zmq import ZmqConnection, ZmqListener, ZmqTransport

CODEC = CalcRoute.codec()
ids = itertools.count(1)


class CalcHandler:
    """A frame handler answering like the calc service and recording what it sees.

    ``Echo("wait...")`` blocks until :attr:`gate` is set; ``Echo("boom")`` raises;
    ``Echo("big:N")`` answers with N characters.
    """

    def __init__(self) -> None:
        self.requests = 0
        self.events: list[object] = []
        self.event_seen = asyncio.Event()
        self.gate = asyncio.Event()
        self.running = 0
        self.max_running = 0

    async def __call__(self, frame: bytes) -> bytes | None:
        header, msg = CODEC.decode_frame(frame)
        if header.kind == Kind.EVENT:
            self.events.append(msg)
            self.event_seen.set()
            return None
        self.requests += 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if isinstance(msg, Echo):
                if msg.text == "boom":
                    raise RuntimeError("boom")
                if msg.text.startswith("wait"):
                    await self.gate.wait()
                text = "x" * int(msg.text[4:]) if msg.text.startswith("big:") else msg.text.upper()
                reply: Any = msg.evolve(reply=text)
            else:
                for _ in range(msg.a % 4):  # finish out of order
                    await asyncio.sleep(0)
                reply = msg.evolve(result=msg.a + msg.b)
        finally:
            self.running -= 1
        return CODEC.encode(reply, kind=Kind.RESPONSE, correlation_id=header.correlation_id)

    async def wait_events(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` events arrived."""
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self.event_seen.clear()
                await self.event_seen.wait()


def work_frame(a: int, b: int = 1, timeout_ms: int = 0) -> bytes:
    return CODEC.encode(CalcWork(a=a, b=b, op=WorkType.SUM), correlation_id=next(ids), timeout_ms=timeout_ms)


def echo_frame(text: str) -> bytes:
    return CODEC.encode(Echo(text=text), correlation_id=next(ids))


def event_frame(msg: object) -> bytes:
    return CODEC.encode(msg, kind=Kind.EVENT)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run until ``predicate()`` holds (failing after ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


@pytest.fixture(params=["tcp", "ipc"])
def url(request: pytest.FixtureRequest, ipc_dir: str) -> str:
    """A URL to listen on: port 0 on the loopback, or a socket file."""
    return "zmq+tcp://127.0.0.1:0" if request.param == "tcp" else f"zmq+ipc://{ipc_dir}/svc"


@pytest.fixture
async def served(url: str) -> AsyncIterator[tuple[ZmqListener, CalcHandler]]:
    handler = CalcHandler()
    async with ZmqTransport().listen(url, handler) as listener:
        yield listener, handler


async def test_scheme_is_registered() -> None:
    assert isinstance(get_transport("zmq+tcp://127.0.0.1:1"), ZmqTransport)
    assert isinstance(get_transport("zmq+ipc:///tmp/x"), ZmqTransport)


async def test_many_requests_in_flight_matched_by_correlation_id(
    served: tuple[ZmqListener, CalcHandler],
) -> None:
    listener, handler = served
    async with ZmqTransport().connect(listener.url) as conn:
        frames = {a: work_frame(a, 1000) for a in range(300)}
        replies = await asyncio.gather(*(conn.request(f, 10.0) for f in frames.values()))
        for a, reply in zip(frames, replies, strict=True):
            assert CODEC.decode(reply).result == a + 1000
        assert len(conn.pending) == 0
    assert handler.requests == 300
    assert handler.max_running > 1  # they really were in flight together


async def test_frames_are_carried_unchanged(url: str) -> None:
    """One frame is one message part, byte for byte, both ways (large frames too)."""
    seen: list[bytes] = []
    replies: list[bytes] = []

    async def recording(frame: bytes) -> bytes:
        seen.append(frame)
        header, msg = CODEC.decode_frame(frame)
        reply = CODEC.encode(msg.evolve(reply=msg.text[::-1]), kind=Kind.RESPONSE,
                             correlation_id=header.correlation_id)
        replies.append(reply)
        return reply

    async with (
        ZmqTransport().listen(url, recording, events=[]) as listener,
        ZmqTransport().connect(listener.url) as conn,
    ):
        for text in ("bytes", "é" * 10, "x" * 1_000_000):
            frame = echo_frame(text)
            got = await conn.request(frame, 10.0)
            assert seen[-1] == frame
            assert got == replies[-1]
            assert type(got) is bytes


async def test_listener_url_reports_real_endpoint(url: str, ipc_dir: str) -> None:
    async with ZmqTransport().listen(url, CalcHandler()) as listener:
        if url.startswith("zmq+tcp"):
            m = re.fullmatch(r"zmq\+tcp://127\.0\.0\.1:(\d+)\?events=(\d+)", listener.url)
            assert m is not None, listener.url
            assert int(m[1]) > 0 and int(m[2]) > 0 and m[1] != m[2]
        else:
            assert listener.url == f"zmq+ipc://{ipc_dir}/svc?events={ipc_dir}/svc.events"
            assert Path(f"{ipc_dir}/svc").exists()
    assert list(Path(ipc_dir).iterdir()) == []  # the socket files are removed on close
    # Without event routes there is no events endpoint.
    async with ZmqTransport().listen(url, CalcHandler(), events=[]) as listener:
        assert "?" not in listener.url
        async with ZmqTransport().connect(listener.url.replace("127.0.0.1", "localhost")) as conn:
            assert CODEC.decode(await conn.request(work_frame(2, 3), 5.0)).result == 5


async def test_fixed_port_and_default_events_port() -> None:
    # A free pair of ports is not guaranteed; ask for a free port, then use it and the next.
    for _attempt in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        listener = ZmqTransport().listen(f"zmq+tcp://127.0.0.1:{port}", CalcHandler())
        try:
            await listener.start()
        except Exception:
            continue
        try:
            assert listener.url == f"zmq+tcp://127.0.0.1:{port}?events={port + 1}"
            # A client given only the request port finds the events port by the same rule.
            async with ZmqTransport().connect(f"zmq+tcp://127.0.0.1:{port}") as conn:
                await conn.send(event_frame(CalcDone(work=1, result=2)))
                await listener.handler.wait_events(1)  # type: ignore[attr-defined]
        finally:
            await listener.close()
        return
    pytest.fail("no free pair of ports found")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("zmq+tcp://127.0.0.1", "expected zmq+tcp://host:port"),
        ("zmq+tcp://127.0.0.1:x", "port 'x' is not a number"),
        ("zmq+tcp://example.org:70000", "port 70000 is out of range"),
        ("zmq+tcp://127.0.0.1:0", "cannot connect to port 0"),
        ("zmq+tcp://127.0.0.1:5?colour=red", "unknown parameter(s) colour"),
        ("zmq+tcp://127.0.0.1:5,", "empty item"),
        ("zmq+tcp://127.0.0.1:5,127.0.0.1:5", "listed twice"),
        ("zmq+udp://127.0.0.1:5", "must be zmq+tcp or zmq+ipc"),
        ("zmq+tcp://127.0.0.1:5?events=x", "events='x' is not a port"),
    ],
)
def test_bad_connect_urls(target: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        ZmqTransport().connect(target)


def test_bad_listen_urls_and_options() -> None:
    t = ZmqTransport()
    with pytest.raises(ConfigError, match="a listener binds one endpoint"):
        t.listen("zmq+tcp://127.0.0.1:0,127.0.0.1:1", CalcHandler())
    with pytest.raises(ConfigError, match=r"unknown ZeroMQ listen option\(s\) colour"):
        t.listen("zmq+tcp://127.0.0.1:0", CalcHandler(), colour="red")
    with pytest.raises(ConfigError, match="hwm must be a positive integer"):
        t.listen("zmq+tcp://127.0.0.1:0", CalcHandler(), hwm=0)
    with pytest.raises(ConfigError, match="events must be route ids"):
        t.listen("zmq+tcp://127.0.0.1:0", CalcHandler(), events=[70000])
    with pytest.raises(ConfigError, match="workers must be"):
        t.listen("zmq+tcp://127.0.0.1:0", CalcHandler(), workers=-1)
    with pytest.raises(ConfigError, match=r"unknown ZeroMQ connect option\(s\) workers"):
        t.connect("zmq+tcp://127.0.0.1:5", workers=2)
    with pytest.raises(ConfigError, match="heartbeat must be a positive number"):
        t.connect("zmq+tcp://127.0.0.1:5", heartbeat=-1)


async def test_binding_a_taken_port_is_a_config_error() -> None:
    async with ZmqTransport().listen("zmq+tcp://127.0.0.1:0", CalcHandler(), events=[]) as first:
        second = ZmqTransport().listen(first.url, CalcHandler(), events=[])
        with pytest.raises(ConfigError, match="cannot bind tcp://127.0.0.1:.*Address already in use"):
            await second.start()
        await second.close()


async def test_timeout_raises_deadline_exceeded_without_leaking(served: tuple[ZmqListener, CalcHandler]) -> None:
    listener, handler = served
    async with ZmqTransport().connect(listener.url) as conn:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(DeadlineExceeded):
            await conn.request(echo_frame("wait"), 0.2)
        assert 0.15 < loop.time() - start < 2.0
        assert len(conn.pending) == 0
        handler.gate.set()
        await eventually(lambda: conn.pending.late_replies == 1)
        # The connection still works afterwards.
        assert CODEC.decode(await conn.request(work_frame(1, 1), 5.0)).result == 2


async def test_oversized_frames_raise_encode_error_before_sending(served: tuple[ZmqListener, CalcHandler]) -> None:
    listener, handler = served
    async with ZmqTransport().connect(listener.url, max_body_size=100) as conn:
        with pytest.raises(EncodeError, match="exceeds the maximum"):
            await conn.request(echo_frame("y" * 200), 1.0)
        with pytest.raises(EncodeError, match="exceeds the maximum"):
            await conn.send(CODEC.encode(Echo(text="y" * 200), kind=Kind.EVENT))
        assert len(conn.pending) == 0
        assert CODEC.decode(await conn.request(echo_frame("ok"), 5.0)).reply == "OK"
    assert handler.requests == 1


async def test_only_event_frames_are_published(served: tuple[ZmqListener, CalcHandler]) -> None:
    listener, _handler = served
    async with ZmqTransport().connect(listener.url) as conn:
        with pytest.raises(EncodeError, match="send an EVENT frame"):
            await conn.send(echo_frame("not an event"))
        with pytest.raises(EncodeError, match="send an EVENT frame"):
            await conn.send(b"garbage")


async def test_oversized_reply_becomes_an_error_frame(url: str) -> None:
    async with (
        ZmqTransport().listen(url, CalcHandler(), max_body_size=200) as listener,
        ZmqTransport().connect(listener.url) as conn,
    ):
        reply = await conn.request(echo_frame("big:1000"), 5.0)
        with pytest.raises(RemoteError) as info:
            CODEC.decode(reply)
        assert info.value.status == Status.RESOURCE_EXHAUSTED
        assert "exceeds the maximum frame" in info.value.message
        assert CODEC.decode(await conn.request(echo_frame("big:10"), 5.0)).reply == "x" * 10


async def test_maxmsgsize_drops_a_peer_sending_too_much(url: str) -> None:
    """ZeroMQ disconnects a raw peer whose message exceeds MAXMSGSIZE; others are served."""
    handler = CalcHandler()
    async with ZmqTransport().listen(url, handler, max_body_size=100) as listener:
        address = listener.url.split("?")[0].replace("zmq+", "")
        ctx = zmq.Context()
        raw = ctx.socket(zmq.DEALER)
        raw.linger = 0
        monitor = raw.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        try:
            raw.connect(address)
            raw.send(echo_frame("z" * 5000))
            seen: list[int] = []
            async with asyncio.timeout(5.0):
                while zmq.EVENT_DISCONNECTED not in seen:
                    if await asyncio.to_thread(monitor.poll, 100):
                        seen.append(int.from_bytes(monitor.recv_multipart()[0][:2], "little"))
            assert handler.requests == 0
            async with ZmqTransport().connect(listener.url, max_body_size=100) as conn:
                assert CODEC.decode(await conn.request(echo_frame("fine"), 5.0)).reply == "FINE"
        finally:
            raw.disable_monitor()
            monitor.close(0)
            raw.close(0)
            ctx.term()


async def test_handler_exception_answers_internal_error(served: tuple[ZmqListener, CalcHandler]) -> None:
    listener, _handler = served
    async with ZmqTransport().connect(listener.url) as conn:
        with pytest.raises(RemoteError) as info:
            CODEC.decode(await conn.request(echo_frame("boom"), 5.0))
        assert info.value.status == Status.INTERNAL


async def test_requests_are_spread_over_endpoints(ipc_dir: str) -> None:
    a, b = CalcHandler(), CalcHandler()
    t = ZmqTransport()
    async with (
        t.listen("zmq+tcp://127.0.0.1:0", a) as la, t.listen(f"zmq+ipc://{ipc_dir}/b", b) as lb,
        t.connect(f"{la.url},{lb.url}") as conn,
    ):
        assert isinstance(conn, ZmqConnection)
        await conn.wait_connected(timeout=5.0)
        assert len(conn.connected) == 2
        replies = await asyncio.gather(*(conn.request(work_frame(i), 5.0) for i in range(200)))
        assert [CODEC.decode(r).result for r in replies] == [i + 1 for i in range(200)]
    assert a.requests + b.requests == 200
    assert a.requests >= 50 and b.requests >= 50  # round-robin over both


async def test_close_fails_waiting_requests_with_unavailable(served: tuple[ZmqListener, CalcHandler]) -> None:
    listener, handler = served
    conn = ZmqTransport().connect(listener.url)
    await conn.connect()
    waiting = asyncio.ensure_future(conn.request(echo_frame("wait"), 10.0))
    await eventually(lambda: handler.running == 1)
    await conn.close()
    with pytest.raises(Unavailable, match="closed"):
        await waiting
    with pytest.raises(Unavailable, match="closed"):
        await conn.request(echo_frame("again"), 1.0)
    handler.gate.set()


async def test_closing_while_a_request_waits_to_be_sent() -> None:
    # A TCP listener that never answers ZeroMQ's greeting: the connection is made, the
    # handshake never ends, so (ZMQ_IMMEDIATE) the request waits for room, whatever the timing.
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        port = mute.getsockname()[1]
        conn = ZmqTransport().connect(f"zmq+tcp://127.0.0.1:{port}", connect_timeout=30.0)
        assert isinstance(conn, ZmqConnection)
        waiting = asyncio.ensure_future(conn.request(work_frame(1), 30.0))
        await eventually(lambda: conn.sends_waiting == 1)
        await conn.close()
        with pytest.raises(Unavailable, match="closed"):
            await waiting
        assert len(conn.pending) == 0


async def test_nothing_listening_is_unavailable_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.get_running_loop()
    conn = ZmqTransport().connect(f"zmq+tcp://127.0.0.1:{port}")
    assert isinstance(conn, ZmqConnection)
    try:
        start = loop.time()
        with pytest.raises(Unavailable, match="nothing accepts connections"):
            await conn.connect()  # fails when the connection is refused, as over tcp://
        assert loop.time() - start < 2.0
        with pytest.raises(Unavailable, match="nothing accepts connections"):
            await conn.request(work_frame(1), 5.0)  # and so does a request
        assert len(conn.pending) == 0
        with pytest.raises(Unavailable, match="0 of 1 endpoints connected"):
            await conn.wait_connected(timeout=0.1)
    finally:
        await conn.close()


async def test_a_peer_that_never_completes_the_handshake() -> None:
    """A socket that accepts TCP but never speaks ZeroMQ: requests wait for connect_timeout."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        port = mute.getsockname()[1]
        loop = asyncio.get_running_loop()
        conn = ZmqTransport().connect(f"zmq+tcp://127.0.0.1:{port}", connect_timeout=0.3)
        try:
            start = loop.time()
            with pytest.raises(Unavailable, match="no endpoint connected within 0.3s"):
                await conn.connect()  # bounded by connect_timeout
            assert 0.25 < loop.time() - start < 2.0
            start = loop.time()
            with pytest.raises(Unavailable, match="no endpoint took the request within 0.300s"):
                await conn.request(work_frame(1), 5.0)  # bounded by connect_timeout
            assert 0.25 < loop.time() - start < 2.0
            start = loop.time()
            with pytest.raises(DeadlineExceeded, match="could not send within 0.100s"):
                await conn.request(work_frame(1), 0.1)  # bounded by the call's own timeout
            assert loop.time() - start < 1.5
            assert len(conn.pending) == 0
        finally:
            await conn.close()


async def test_slow_service_applies_backpressure(url: str) -> None:
    """A blocked service stops reading; the queues fill to their high-water marks and the
    client's requests wait to be sent (bounded memory); none is lost once it goes on."""
    handler = CalcHandler()
    body = 256 * 1024
    async with (
        ZmqTransport().listen(url, handler, max_in_flight=2, hwm=4, max_body_size=4 * body) as listener,
        ZmqTransport().connect(listener.url, hwm=4, max_body_size=4 * body, connect_timeout=30.0) as conn,
    ):
        assert isinstance(conn, ZmqConnection)
        await conn.wait_connected()
        frames = [echo_frame(f"wait{i}".ljust(body, ".")) for i in range(100)]
        calls = [asyncio.ensure_future(conn.request(f, 30.0)) for f in frames]
        # Reading pauses at max_in_flight; then the queues fill and senders wait.
        await eventually(lambda: handler.running == 2 and conn.sends_waiting > 0, timeout=20.0)
        assert listener.server is not None and listener.server.peak_in_flight == 2
        handler.gate.set()
        replies = await asyncio.gather(*calls)
        assert len(replies) == 100
        assert all(CODEC.decode(r).reply.startswith("WAIT") for r in replies)
    assert handler.requests == 100
    assert handler.max_running <= 2


async def test_events_are_filtered_by_route(served: tuple[ZmqListener, CalcHandler], url: str) -> None:
    listener, _ = served
    handler = CalcHandler()
    async with ZmqTransport().listen(url.replace("svc", "svc2"), handler,
                                     events=[int(CalcRoute.CALC_DONE)]) as only_done:
        async with ZmqTransport().connect(only_done.url, events_wait=0.1) as conn:
            assert isinstance(conn, ZmqConnection)
            await conn.send(event_frame(CalcDone(work=0, result=0)))  # waits for the subscription
            await conn.send(CODEC.encode(Echo(text="not subscribed"), kind=Kind.EVENT))
            for i in range(1, 3):
                await conn.send(event_frame(CalcDone(work=i, result=i)))
            await handler.wait_events(3)
            # The subscription is the header prefix of CALC_DONE events, and the only one.
            assert conn.subscriptions == {b"NK\x01\x04\x00\x03": 1}
        # Events on one connection arrive in order: the Echo event would be second.
        assert handler.events == [CalcDone(work=i, result=i) for i in range(3)]
    assert listener.url  # the other listener was not involved


async def test_events_reach_every_subscribed_service(ipc_dir: str) -> None:
    a, b = CalcHandler(), CalcHandler()
    t = ZmqTransport()
    async with (
        t.listen("zmq+tcp://127.0.0.1:0", a) as la, t.listen(f"zmq+ipc://{ipc_dir}/b", b) as lb,
        t.connect(f"{la.url},{lb.url}") as conn,
    ):
        assert isinstance(conn, ZmqConnection)
        await conn.send(event_frame(CalcDone(work=0, result=0)))  # opens the events socket
        await eventually(lambda: sum(conn.subscriptions.values()) == 2)
        for i in range(1, 50):
            await conn.send(event_frame(CalcDone(work=i, result=i)))
        await a.wait_events(49)
        await b.wait_events(49)
    assert a.events[-49:] == b.events[-49:] == [CalcDone(work=i, result=i) for i in range(1, 50)]


async def test_curve_authorised_client_served_and_unauthorised_refused(url: str) -> None:
    server_pub, server_sec = zmq.curve_keypair()
    good_pub, good_sec = zmq.curve_keypair()
    _bad_pub, bad_sec = zmq.curve_keypair()
    handler = CalcHandler()
    loop = asyncio.get_running_loop()
    t = ZmqTransport()
    async with (
        t.listen(url, handler, curve_secret_key=server_sec, curve_allow=[good_pub]) as listener,
        t.connect(listener.url, curve_server_key=server_pub, curve_secret_key=good_sec) as good,
    ):
        assert CODEC.decode(await good.request(work_frame(20, 22), 5.0)).result == 42
        bad = t.connect(listener.url, curve_server_key=server_pub, curve_secret_key=bad_sec)
        start = loop.time()
        with pytest.raises(Unavailable, match="refused the Curve key"):
            await bad.connect()
        assert loop.time() - start < 2.5
        with pytest.raises(Unavailable, match="refused the Curve key"):
            await bad.request(work_frame(1), 2.0)  # a request without connect() learns it too
        assert len(bad.pending) == 0
        await bad.close()
        plain = t.connect(listener.url, connect_timeout=0.5)  # no Curve at all
        with pytest.raises(Unavailable, match="handshake failed"):
            await plain.connect()
        await plain.close()
        # Events need the key too, and the service keeps serving the authorised client.
        await good.send(event_frame(CalcDone(work=5, result=5)))
        await handler.wait_events(1)
        assert CODEC.decode(await good.request(work_frame(1, 1), 5.0)).result == 2
    assert handler.requests == 2
    assert handler.events == [CalcDone(work=5, result=5)]


def test_curve_keys_are_checked() -> None:
    pub, sec = zmq.curve_keypair()
    t = ZmqTransport()
    with pytest.raises(ConfigError, match="curve_secret_key must be a CurveZMQ key"):
        t.listen("zmq+tcp://127.0.0.1:0", CalcHandler(), curve_secret_key="short")
    with pytest.raises(ConfigError, match="does not belong"):
        t.listen("zmq+tcp://127.0.0.1:0", CalcHandler(), curve_secret_key=sec, curve_public_key=zmq.curve_keypair()[0])
    with pytest.raises(ConfigError, match="curve_allow needs curve_secret_key"):
        t.listen("zmq+tcp://127.0.0.1:0", CalcHandler(), curve_allow=[pub])
    with pytest.raises(ConfigError, match="not one key"):
        t.listen("zmq+tcp://127.0.0.1:0", CalcHandler(), curve_secret_key=sec, curve_allow=pub)
    with pytest.raises(ConfigError, match="curve_secret_key needs curve_server_key"):
        t.connect("zmq+tcp://127.0.0.1:5", curve_secret_key=sec)
    # Raw 32-byte keys and str keys are accepted.
    t.connect("zmq+tcp://127.0.0.1:5", curve_server_key=zmq.utils.z85.decode(pub), curve_secret_key=sec.decode())


async def test_listener_close_lets_requests_in_flight_finish(served: tuple[ZmqListener, CalcHandler]) -> None:
    listener, handler = served
    async with ZmqTransport().connect(listener.url) as conn:
        waiting = asyncio.ensure_future(conn.request(echo_frame("wait"), 10.0))
        await eventually(lambda: handler.running == 1)
        closing = asyncio.ensure_future(listener.close(grace=5.0))
        await asyncio.sleep(0)
        handler.gate.set()
        await closing
        assert CODEC.decode(await waiting).reply == "WAIT"


async def test_header_constant_matches_codec() -> None:
    frame = event_frame(CalcDone(work=1, result=1))
    assert frame[:6] == b"NK\x01\x04\x00\x03"
    assert len(frame) > HEADER_SIZE


def _big_echo_requests(count: int, size: int) -> list[bytes]:
    return [CODEC.encode(Echo(text=f"big:{size}"), kind=Kind.REQUEST, correlation_id=next(ids), timeout_ms=30_000)
            for _ in range(count)]


@pytest.mark.parametrize("reads_again", [False, True])
async def test_replies_held_for_room_then_sent_or_dropped(reads_again: bool) -> None:
    """A client that stops reading: the service holds the replies it has no room for
    (without pausing: every request is read and handled), sends them when the client makes
    room, and after ``reply_timeout`` drops and counts them; a client that reads again in
    time gets every one."""
    handler = CalcHandler()
    size = 256 * 1024
    count = 40
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.rcvhwm = 1
    dealer.rcvbuf = 64 * 1024
    try:
        async with ZmqTransport().listen("zmq+tcp://127.0.0.1:0", handler, max_in_flight=4, hwm=1,
                                         reply_timeout=0.3 if not reads_again else 10.0,
                                         max_body_size=2 * size) as listener:
            server = listener.server
            assert server is not None
            m = re.match(r"zmq\+(tcp://[^?]+)", listener.url)
            assert m is not None
            dealer.connect(m.group(1))
            for frame in _big_echo_requests(count, size):
                dealer.send(frame)
            await eventually(lambda: server.held_replies > 0, timeout=20.0)
            await eventually(lambda: handler.requests == count, timeout=20.0)  # reading went on
            if not reads_again:
                await eventually(lambda: server.held_replies == 0, timeout=20.0)
                assert server.dropped_replies > 0
                assert server.dropped_reply_bytes >= server.dropped_replies * size
            else:
                got = 0
                async with asyncio.timeout(20):
                    while got < count:
                        try:
                            reply = dealer.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            await asyncio.sleep(0)
                            continue
                        assert len(CODEC.decode(reply).reply) == size
                        got += 1
                assert server.dropped_replies == 0 and server.held_replies == 0
    finally:
        dealer.close(0)
        ctx.term()


async def test_a_multipart_reply_is_matched_part_by_part() -> None:
    """A service answers with one-part messages. A peer that sends more parts gets each part
    matched on its own: the part that answers a waiting request completes it, the other is
    counted as a late reply; nothing hangs or crashes."""
    import zmq.asyncio

    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        async with ZmqTransport().connect(f"zmq+tcp://127.0.0.1:{port}") as conn:
            request = echo_frame("x")
            call = asyncio.ensure_future(conn.request(request, 5.0))
            async with asyncio.timeout(5):
                ident, frame = await router.recv_multipart()
            assert frame == request
            reply = CODEC.encode(Echo(text="x", reply="X"), kind=Kind.RESPONSE,
                                 correlation_id=correlation_id_of(frame))
            await router.send_multipart([ident, b"not a frame", reply])
            assert CODEC.decode(await asyncio.wait_for(call, 5)).reply == "X"
            assert conn.pending.late_replies == 1
    finally:
        router.close(0)
        ctx.term()


async def test_a_socket_pump_needs_a_callback() -> None:
    from nanomsg_kernel.transports.zmq_socket import SocketPump, shared_context

    sock = shared_context().socket(zmq.DEALER)
    try:
        with pytest.raises(TypeError, match="on_message or on_part"):
            SocketPump(sock)
    finally:
        sock.close(0)
