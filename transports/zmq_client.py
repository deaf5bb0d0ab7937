"""The client side of the ZeroMQ transport: a ``DEALER`` for requests, an ``XPUB`` for events.

Requests: one ``DEALER`` connects to every endpoint of the URL and ZeroMQ spreads the
requests over the connected ones, round-robin; replies come back on the same socket and are
matched by correlation id. ``ZMQ_IMMEDIATE`` keeps requests off endpoints that are not
connected, so while one service is down the others take all the work, and a service that
comes back is used again as soon as ZeroMQ has reconnected to it.

Failures: a socket monitor reports each endpoint's connection state. When every endpoint is
disconnected (a crash, or heartbeats unanswered), every request in flight is lost and fails
at once with ``Unavailable``; a request that went to one dead endpoint among live ones fails
with ``DeadlineExceeded`` at its deadline (one ``DEALER`` does not say which peer took
which message). A request that no endpoint can take waits for one, up to
``min(timeout, connect_timeout)`` (then ``DeadlineExceeded`` when the call's own timeout was
the shorter, else ``Unavailable``). It fails sooner, with ``Unavailable``, only when every
endpoint refused the Curve handshake, or refused the connection without ever having been
connected (nothing listens there: a wrong address, or a service not started yet). Once an
endpoint has been connected, a drop is taken for a restart: libzmq's
``EVENT_CONNECT_RETRIED`` means a retry is *scheduled* (every 0.1 s, backing off to 0.5 s), and
requests wait for it rather than failing while the service comes back.

Connecting: :meth:`ZmqConnection.connect` returns once an endpoint is connected, and raises
``Unavailable`` as the other transports' clients do when the service cannot be reached: at
once when every endpoint refused, or after ``connect_timeout``. A
:class:`~nanomsg_kernel.client.Client` connects before its first call.

Events: ``send(frame)`` publishes on an ``XPUB`` connected to each service's events
endpoint (:class:`~nanomsg_kernel.transports.zmq_publisher.EventPublisher`): ZeroMQ filters
at the publisher, so an event travels only to the services that subscribe to its route.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import zmq

from nanomsg_kernel.errors import DeadlineExceeded, EncodeError, Unavailable
from nanomsg_kernel.frame import HEADER_SIZE, MAGIC, Kind, cancel_frame
from nanomsg_kernel.transports.base import Connection, PendingReplies, correlation_id_of
from nanomsg_kernel.transports.zmq_endpoints import connect_endpoints
from nanomsg_kernel.transports.zmq_options import ConnectOptions, configure, reconnect_quickly
from nanomsg_kernel.transports.zmq_publisher import EventPublisher
from nanomsg_kernel.transports.zmq_socket import SocketPump, raw_send, shared_context

__all__ = ["ZmqConnection"]

_NOBLOCK = zmq.NOBLOCK
_Again = zmq.Again
_EVENT = int(Kind.EVENT)
_MONITORED = (
    zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
_FAILED = {
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH): "the service refused the Curve key (authentication failed)",
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL): "the handshake failed (security settings differ?)",
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL): "the handshake failed (security settings differ?)",
}
_EVENT_HEADER = struct.Struct("=hi")
_NB = int(zmq.NOBLOCK)


class _NotSent(Exception):
    """A queued request found no room when its burst was sent (it then waits for room)."""


class ZmqConnection(Connection):
    """A connection to one or more services at ``zmq+tcp://`` / ``zmq+ipc://`` URLs.

    ``url`` may list several endpoints separated by commas; requests are spread across them.
    Options are those of :class:`~nanomsg_kernel.transports.zmq_options.ConnectOptions`.
    """

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self.options: ConnectOptions = ConnectOptions.parse(options, "connect")
        self.endpoints = connect_endpoints(url)
        self._curve = self.options.curve()
        self._max_frame = self.options.max_frame
        self.pending = PendingReplies()
        self._sock: zmq.Socket[Any] | None = None
        self._pump: SocketPump | None = None
        self._monitor: zmq.Socket[Any] | None = None
        self._monitor_pump: SocketPump | None = None
        self._up: set[str] = set()
        self._refused: dict[str, str] = {}
        """Endpoints whose handshake failed last (Curve refused, security mismatch)."""
        self._unreachable: set[str] = set()
        """Endpoints never connected whose connection attempt failed (nothing listens there)."""
        self._was_up: set[str] = set()
        """Endpoints connected at least once: a drop is a restart, waited for."""
        self._down_check = False
        self._closed = False
        self._state_changed = asyncio.Event()
        self._outbox: list[bytes] = []
        """Requests to send at the next loop iteration, all together (see ``_flush``)."""
        self.sends_waiting = 0
        """Requests waiting for room to be sent (no endpoint connected, or queues full)."""
        self._events: EventPublisher | None = None
        """The events' ``XPUB``, made by the first :meth:`send`."""

    def __repr__(self) -> str:
        return f"<ZmqConnection {self.url!r} connected={sorted(self._up)}>"

    @property
    def connected(self) -> frozenset[str]:
        """ZeroMQ addresses of the endpoints currently connected (handshake done)."""
        return frozenset(self._up)

    @property
    def subscriptions(self) -> dict[bytes, int]:
        """Event subscriptions seen from the services: header prefix -> subscriber count."""
        return {} if self._events is None else self._events.subscriptions

    async def wait_connected(self, count: int | None = None, timeout: float = 5.0) -> None:
        """Wait until ``count`` endpoints (default: all) are connected.

        Raises:
            Unavailable: not within ``timeout`` seconds (or every endpoint refused us).
        """
        self._open()
        want = len(self.endpoints) if count is None else count
        try:
            async with asyncio.timeout(timeout):
                while len(self._up) < want:
                    if self._all_refused():
                        raise self._failure()
                    self._state_changed.clear()
                    await self._state_changed.wait()
        except TimeoutError:
            raise Unavailable(
                f"{self.url}: {len(self._up)} of {want} endpoints connected after {timeout}s"
            ) from None

    # -- requests ----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect: return once some endpoint is connected (its handshake done), as every
        transport's client does.

        ZeroMQ connects to every endpoint in the background, and reconnects whenever a
        connection drops; a request made without ``connect()`` starts that and waits only
        for room to send (see :meth:`request`).

        Raises:
            Unavailable: every endpoint refused the connection (nothing listens there) or
                the handshake (Curve keys), at once; or none connected within
                ``connect_timeout`` seconds. Nothing stays open then: the next
                ``connect()`` (or request) is a new attempt.
        """
        self._open()
        if self._up:
            return
        sock, limit = self._sock, self.options.connect_timeout
        try:
            try:
                async with asyncio.timeout(limit):
                    while not self._up:
                        if self._closed:
                            raise Unavailable(f"{self.url}: connection closed")
                        if self._sock is not sock:
                            raise Unavailable(f"{self.url}: not connected (another connect() failed)")
                        if self._cannot_send():
                            raise self._failure()
                        self._state_changed.clear()
                        await self._state_changed.wait()
            except TimeoutError:
                raise Unavailable(f"{self.url}: no endpoint connected within {limit:g}s (connect_timeout)") from None
        except Unavailable as exc:
            if self._sock is sock and not self._closed:
                # Nothing stays open: the next connect() is a fresh attempt, as over tcp://.
                self._close_requests(exc)
                self._state_changed.set()
            raise

    def _open(self) -> None:
        """Create the socket and start connecting to every endpoint (unless done)."""
        if self._sock is not None:
            return
        if self._closed:
            raise Unavailable(f"{self.url}: connection closed")
        sock = shared_context().socket(zmq.DEALER)
        try:
            configure(sock, self.options, ipv6=self._ipv6())
            sock.immediate = 1
            reconnect_quickly(sock)
            if self._curve is not None:
                self._curve.apply(sock)
            monitor = sock.get_monitor_socket(_MONITORED)
            monitor.linger = 0
            for ep in self.endpoints:
                sock.connect(ep.requests)
        except BaseException:
            sock.close(0)
            raise
        self._sock, self._monitor = sock, monitor
        self._monitor_pump = SocketPump(monitor, self._on_monitor)
        # A service answers with one-part messages: each part is a reply frame. (Parts of a
        # non-conforming peer's multipart message are matched one by one, like any reply:
        # one that answers no waiting request is counted in ``pending.late_replies``.)
        self._pump = SocketPump(sock, on_part=self.pending.resolve)

    def _ipv6(self) -> bool:
        return any(ep.requests.startswith("tcp://[") for ep in self.endpoints)

    def _on_monitor(self, parts: list[bytes]) -> None:
        if len(parts) != 2 or len(parts[0]) != 6:
            return
        event, value = _EVENT_HEADER.unpack(parts[0])
        endpoint = parts[1].decode("utf-8", "replace")
        self._state_changed.set()
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._up.add(endpoint)
            self._was_up.add(endpoint)
            self._refused.pop(endpoint, None)
            self._unreachable.discard(endpoint)
        elif event == zmq.EVENT_CONNECTED:
            self._unreachable.discard(endpoint)
        elif event == zmq.EVENT_CONNECT_RETRIED:
            # A retry is scheduled. For an endpoint never connected, the attempt was refused:
            # nothing listens there. For one connected before, the service is restarting (or
            # gone for good): requests wait for the retry, up to their deadline.
            if endpoint in self._was_up:
                return
            self._unreachable.add(endpoint)
            if self._cannot_send() and self._pump is not None:
                self._pump.fail_writers(self._failure())
        elif event == zmq.EVENT_DISCONNECTED:
            if endpoint in self._up:
                self._up.discard(endpoint)
                if not self._down_check:
                    # Decide after the rest of this batch of events: a reconnection may follow.
                    self._down_check = True
                    asyncio.get_running_loop().call_soon(self._check_all_down, endpoint)
        elif event in _FAILED:
            self._refused[endpoint] = f"{_FAILED[event]} (code {value})" if value else _FAILED[event]
            if self._cannot_send() and self._pump is not None:
                self._pump.fail_writers(self._failure())

    def _check_all_down(self, endpoint: str) -> None:
        self._down_check = False
        if not self._up and len(self.pending):
            # Replies that arrived before the connection closed are still queued: take them.
            if self._pump is not None:
                self._pump.drain()
            self.pending.fail_all(Unavailable(f"{endpoint}: connection lost; the request may not have been served"))

    def _all_refused(self) -> bool:
        return not self._up and len(self._refused) >= len(self.endpoints)

    def _cannot_send(self) -> bool:
        """No endpoint is up, and every one refused the handshake, or refused the connection
        without ever having been connected."""
        return not self._up and len(self._unreachable | set(self._refused)) >= len(self.endpoints)

    def _failure(self) -> Unavailable:
        reasons = {ep: "nothing accepts connections there" for ep in self._unreachable}
        reasons.update(self._refused)
        text = "; ".join(f"{ep}: {why}" for ep, why in sorted(reasons.items()))
        return Unavailable(f"{self.url}: unreachable: {text}")

    async def request(self, frame: bytes, timeout: float | None = None) -> bytes:
        """Send ``frame`` to one of the endpoints and return the reply with its correlation id.

        The frame goes out at the next loop iteration, together with the other requests made
        in this one (one wake-up of libzmq's I/O thread per burst, not per request).

        Raises:
            DeadlineExceeded: no reply within ``timeout`` seconds.
            Unavailable: no endpoint could take the request, or all connections dropped.
            EncodeError: the frame is larger than ``max_body_size`` allows.
        """
        pump = self._pump
        if pump is None:
            self._open()
            pump = self._pump
            assert pump is not None
        if len(frame) > self._max_frame:
            raise EncodeError(
                f"frame of {len(frame)} bytes exceeds the maximum of {self._max_frame} "
                f"(max_body_size {self.options.max_body_size} + {HEADER_SIZE}-byte header)"
            )
        pending = self.pending
        cid = correlation_id_of(frame)
        fut = pending.expect(cid, pump.loop)  # before sending: a reply cannot come sooner
        outbox = self._outbox
        if outbox or len(pending) > 1:
            outbox.append(frame)  # others are in flight: join (or start) this iteration's burst
            if len(outbox) == 1:
                pump.loop.call_soon(self._flush)
        else:  # alone: no burst to wait for
            assert self._sock is not None
            try:
                raw_send(self._sock, frame, _NB)
            except _Again:
                pending.discard(cid)
                pump.recheck()  # the failed send may have taken the news of a reply
                return await self._request_when_room(frame, cid, timeout)
            except zmq.ZMQError as exc:
                pending.discard(cid)
                pump.recheck()  # the failed send may have taken the news of a reply
                raise Unavailable(f"{self.url}: cannot send: {exc}") from None
            pump.kick()
        try:
            try:  # pending.wait(cid, fut, timeout), one coroutine less per request
                if timeout is None:
                    return await fut
                bucket = pending.arm(fut, timeout)
                try:
                    return await fut
                finally:
                    del bucket[fut]
            finally:
                pending.discard(cid)  # however it ended
        except _NotSent:
            return await self._request_when_room(frame, cid, timeout)

    def cancel(self, correlation_id: int) -> None:
        """Send ``CANCEL`` for a request whose caller gave up, with this iteration's burst
        (after the request itself, if that has not left yet). With several endpoints it may
        reach one that did not take the request, which ignores it."""
        pump = self._pump
        if pump is None or self._closed:
            return
        outbox = self._outbox
        outbox.append(cancel_frame(correlation_id))
        if len(outbox) == 1:
            pump.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send the queued requests; those ZeroMQ has no room for wait for room, each."""
        outbox, self._outbox = self._outbox, []
        sock, pump = self._sock, self._pump
        if sock is None or pump is None:
            return  # closed: their callers already failed with Unavailable
        i = 0
        try:
            for frame in outbox:
                raw_send(sock, frame, _NB)
                i += 1
        except _Again:
            # Not sent: only requests that were sent are pending (and fail if all connections
            # drop); each of these registers again once it is on its way.
            for frame in outbox[i:]:
                self.pending.fail(correlation_id_of(frame), _NotSent())
        except zmq.ZMQError as exc:
            for frame in outbox[i:]:
                self.pending.fail(correlation_id_of(frame), Unavailable(f"{self.url}: cannot send: {exc}"))
        pump.kick()

    async def _request_when_room(self, frame: bytes, cid: int, timeout: float | None) -> bytes:
        """The request once ZeroMQ had no room for it: wait for room, send, wait for the reply."""
        pump = self._pump
        if pump is None:
            raise Unavailable(f"{self.url}: connection closed")
        spent = await self._send_waiting(pump, frame, timeout)
        fut = self.pending.expect(cid)
        return await self.pending.wait(cid, fut, None if timeout is None else max(0.0, timeout - spent))

    async def _send_waiting(self, pump: SocketPump, frame: bytes, timeout: float | None) -> float:
        """Send once an endpoint has room; returns the seconds spent waiting."""
        if self._closed:
            raise Unavailable(f"{self.url}: connection closed")
        if self._cannot_send():
            raise self._failure()
        limit = self.options.connect_timeout if timeout is None else min(timeout, self.options.connect_timeout)
        start = pump.loop.time()
        self.sends_waiting += 1
        try:
            sent = await pump.send([frame], start + limit)
        finally:
            self.sends_waiting -= 1
        if sent:
            return pump.loop.time() - start
        if self._closed:
            raise Unavailable(f"{self.url}: connection closed")
        if self._cannot_send():
            raise self._failure()
        why = "none connected" if not self._up else "all queues full"
        if timeout is not None and timeout < self.options.connect_timeout:  # the call's own deadline
            raise DeadlineExceeded(f"{self.url}: could not send within {limit:.3f}s ({why})")
        raise Unavailable(f"{self.url}: no endpoint took the request within {limit:.3f}s ({why})")

    # -- events ------------------------------------------------------------------------------

    async def send(self, frame: bytes) -> None:
        """Publish an event frame to every service subscribed to its route.

        Raises:
            EncodeError: ``frame`` is not an event frame, or is too large.
            Unavailable: the subscribers did not make room within ``send_timeout``.
        """
        if len(frame) > self._max_frame:
            raise EncodeError(f"frame of {len(frame)} bytes exceeds the maximum of {self._max_frame}")
        if len(frame) < HEADER_SIZE or frame[:2] != MAGIC or frame[3] != _EVENT:
            raise EncodeError("one-way frames over ZeroMQ are published: send an EVENT frame")
        events = self._events
        if events is None:
            if self._closed:
                raise Unavailable(f"{self.url}: connection closed")
            events = self._events = EventPublisher(self.url, self.endpoints, self.options, self._curve,
                                                   ipv6=self._ipv6())
        await events.publish(frame)

    # -- closing -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Close; requests still waiting fail with ``Unavailable``. Events already sent are
        still delivered for up to a second."""
        if self._closed:
            return
        self._closed = True
        self._state_changed.set()  # a connect() waiting ends
        self._close_requests(Unavailable(f"{self.url}: connection closed"))
        if self._events is not None:
            self._events.close()
            self._events = None

    def _close_requests(self, exc: Unavailable) -> None:
        """Close the requests' socket (and its monitor); requests waiting fail with ``exc``."""
        self._outbox.clear()
        self.pending.fail_all(exc)
        for pump in (self._pump, self._monitor_pump):
            if pump is not None:
                pump.close()
        if self._sock is not None:
            self._sock.disable_monitor()
        if self._monitor is not None:
            self._monitor.close(0)
        if self._sock is not None:
            self._sock.close(0)
        self._sock = self._monitor = None
        self._pump = self._monitor_pump = None
        self._up.clear()
        self._refused.clear()
        self._unreachable.clear()
        self._was_up.clear()
