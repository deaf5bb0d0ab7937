"""``inproc://name``: frames through bounded in-memory queues, within one process.

Carries exactly the bytes TCP and ZeroMQ carry, for full isolation between services (each
call is encoded and decoded) and for testing the wire without sockets. While a listener
runs ``max_in_flight`` calls, frames wait for a place in a bounded queue, and a sender waits
while it is full (backpressure, never a drop). Names live in
one process-wide table; binding a name twice is an error.

Frames are served by the listener's :class:`~nanomsg_kernel.transports.server_core.ServerCore`,
as on every transport. A request (up to :data:`EAGER_MAX_FRAME` bytes) is handed to it in
the caller's step: a handler that answers without waiting (an inline one, or an async one
started eagerly on Python 3.12+) has answered when ``submit`` returns, and the caller then
yields to the loop once, as a reply over a wire would arrive. A handler that waits continues
in a task of its own. A caller that gives up sends ``CANCEL``, which cancels that task.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nanomsg_kernel.errors import ConfigError, EncodeError, Unavailable
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, HEADER_SIZE, cancel_frame
from nanomsg_kernel.peer import Peer
from nanomsg_kernel.transports.base import (
    Connection,
    FrameHandler,
    Listener,
    PendingReplies,
    Transport,
    correlation_id_of,
    split_url,
)
from nanomsg_kernel.transports.server_core import Caller, ServerCore
from nanomsg_kernel.transports.waiting import Waiting

__all__ = ["InprocConnection", "InprocListener", "InprocTransport"]

_yield = asyncio.sleep

EAGER_MAX_FRAME = 64 * 1024
"""Requests up to this size start their handler in the caller's step (larger: in a task)."""

_LISTENERS: dict[str, InprocListener] = {}


def _name(url: str) -> str:
    scheme, name = split_url(url)
    if scheme != "inproc" or not name or "/" in name:
        raise ConfigError(f"bad inproc URL {url!r}: expected inproc://name")
    return name


class _Link(Caller):
    """The listener's side of one connection (or of the events, ``conn`` ``None``)."""

    __slots__ = ("conn", "listener")

    def __init__(self, listener: InprocListener, conn: InprocConnection | None) -> None:
        super().__init__()
        self.listener = listener
        self.conn = conn

    def describe(self) -> Peer:
        """An ``inproc://`` peer: the listener's address (no identity to prove)."""
        return Peer("inproc", self.listener.url)

    def finished(self, request: bytes, reply: bytes | None) -> None:
        """Deliver the reply of a call that continued in a task."""
        conn = self.conn
        if conn is not None:
            if reply is not None:
                conn.deliver(reply)
            elif self.listener.closing:
                self.listener.abandon(request, conn)
        self.listener._start_waiting()


class InprocListener(Listener):
    """Serves the frames of :class:`InprocConnection` objects.

    Args:
        queue_size: frames that may wait while ``max_in_flight`` calls run; a sender waits
            while that many wait (backpressure, never a drop).
        max_in_flight: calls handled at once.
        max_body_size: the largest body accepted, and sent in a reply.
    """

    def __init__(self, url: str, handler: FrameHandler, *, queue_size: int = 1024,
                 max_in_flight: int = 1024, max_body_size: int = DEFAULT_MAX_BODY, allow: object = None) -> None:
        if allow is not None:
            raise ConfigError(f"{url}: an inproc:// listener cannot tell its callers apart; allow is for tcp:// "
                              "with TLS client certificates and for ZeroMQ with Curve")
        self.url = url
        self.name = _name(url)
        self.handler = handler
        self.max_body_size = max_body_size
        self.queue_size = queue_size
        self.max_in_flight = max_in_flight
        self.core: ServerCore | None = None
        """What serves the frames (made when the listener starts)."""
        self.waiting = Waiting()
        """Frames sent while ``max_in_flight`` calls ran, waiting for a place, in order."""
        self._room = asyncio.Event()
        self._events: _Link | None = None
        self.closing = False

    async def start(self) -> None:
        """Register the name and start taking frames."""
        if self.name in _LISTENERS:
            raise ConfigError(f"inproc://{self.name} is already bound")
        self.core = ServerCore(self.handler, name=self.url, max_body_size=self.max_body_size)
        self._events = _Link(self, None)
        _LISTENERS[self.name] = self

    async def submit(self, frame: bytes, conn: InprocConnection | None) -> None:
        """Hand a frame to the listener: started at once when there is a place, else it
        waits for one (and the sender waits while ``queue_size`` frames wait)."""
        while len(self.waiting) >= self.queue_size and not self.closing:
            self._room.clear()
            await self._room.wait()
        if self.closing:
            raise Unavailable(f"inproc://{self.name} is closing")
        core = self.core
        assert core is not None
        link = self._link(conn)
        reply = core.offer(frame, link, self.waiting, core.in_flight < self.max_in_flight, eager=_eager(frame, conn))
        if reply is not None and conn is not None:
            conn.deliver(reply)

    def cancel(self, conn: InprocConnection, correlation_id: int) -> None:
        """The ``CANCEL`` frame of ``conn`` for ``correlation_id``: its request is cancelled
        if it runs, dropped if it waits for a place."""
        core = self.core
        if core is not None:
            core.offer(cancel_frame(correlation_id), self._link(conn), self.waiting, True)
            self._start_waiting()

    def _link(self, conn: InprocConnection | None) -> _Link:
        if conn is None:
            assert self._events is not None
            return self._events
        link: _Link | None = getattr(conn, "link", None)  # (a test may hand in its own collector)
        if link is None or link.listener is not self:
            link = conn.link = _Link(self, conn)
        return link

    def _start_waiting(self) -> None:
        """Start the frames that waited, while there is a place (once the grace period of
        a close ran out, their callers get ``Unavailable`` instead)."""
        waiting, core = self.waiting, self.core
        if not waiting or core is None:
            return
        while waiting and (core.cancelling or core.in_flight < self.max_in_flight):
            frame, link = waiting.pop()
            assert isinstance(link, _Link)
            conn = link.conn
            if core.cancelling:
                if conn is not None:
                    self.abandon(frame, conn)
                continue
            reply = core.resume(frame, link, eager=_eager(frame, conn))
            if reply is not None and conn is not None:
                conn.deliver(reply)
        if len(waiting) < self.queue_size:
            self._room.set()

    def abandon(self, request: bytes, conn: InprocConnection) -> None:
        """The listener closed before ``request`` was answered: its caller gets ``Unavailable``."""
        conn.abandon(correlation_id_of(request), Unavailable(
            f"inproc://{self.name}: the listener closed before the request was answered"))

    async def close(self, grace: float = 5.0) -> None:
        """Stop taking frames, finish those in flight (and those waiting) within ``grace``
        seconds, then stop.

        Requests still being handled after ``grace`` are cancelled, and their callers get
        ``Unavailable``.
        """
        if _LISTENERS.get(self.name) is self:
            del _LISTENERS[self.name]
        self.closing = True
        self._room.set()  # senders waiting for room get Unavailable
        if self.core is not None:
            await self.core.close(grace)
            self._start_waiting()


def _eager(frame: bytes, conn: InprocConnection | None) -> bool:
    """Whether ``frame`` starts in the sender's step. Events run in a task, after the
    publisher's step. A large request runs in a task too, so that the caller's buffers are
    freed before the reply's are made (measured: answered in the caller's step, a 1 MiB echo
    kept enough large buffers alive at once for the allocator to hand memory back to the
    system and fault it in again on every call, 10x slower)."""
    return conn is not None and len(frame) <= EAGER_MAX_FRAME


class InprocConnection(Connection):
    """A client of an :class:`InprocListener`."""

    def __init__(self, url: str, *, max_body_size: int = DEFAULT_MAX_BODY) -> None:
        self.url = url
        self.name = _name(url)
        self.max_body_size = max_body_size
        self.pending = PendingReplies()
        self.link: _Link | None = None
        """The listener's side of this connection (set by the listener)."""
        self._closed = False

    def _listener(self) -> InprocListener:
        if self._closed:
            raise Unavailable(f"{self.url}: connection closed")
        listener = _LISTENERS.get(self.name)
        if listener is None:
            raise Unavailable(f"{self.url}: nothing is listening")
        return listener

    def _check_size(self, frame: bytes) -> None:
        if len(frame) - HEADER_SIZE > self.max_body_size:
            raise EncodeError(f"frame body of {len(frame) - HEADER_SIZE} bytes exceeds {self.max_body_size}")

    async def connect(self) -> None:
        """Check that something listens at the name."""
        self._listener()

    async def request(self, frame: bytes, timeout: float | None = None) -> bytes:
        """Queue ``frame`` and wait for the reply with its correlation id."""
        self._check_size(frame)
        listener = self._listener()
        cid = correlation_id_of(frame)
        fut = self.pending.expect(cid)
        try:
            await listener.submit(frame, self)
        except BaseException:
            self.pending.discard(cid)
            raise
        if fut.done():
            # Answered already (the handler did not wait): still give the loop a turn, as a
            # reply over a wire would, so that a caller's loop of calls cannot starve others.
            await _yield(0)
        return await self.pending.wait(cid, fut, timeout)

    def deliver(self, reply: bytes) -> None:
        """Called by the listener with a reply frame."""
        self.pending.resolve(reply)

    def abandon(self, correlation_id: int, exc: BaseException) -> None:
        """Called by the listener for a request it will not answer: its caller gets ``exc``."""
        self.pending.fail(correlation_id, exc)

    def cancel(self, correlation_id: int) -> None:
        """Tell the listener that the caller of ``correlation_id`` gave up (``CANCEL``)."""
        listener = _LISTENERS.get(self.name)
        if listener is not None and not self._closed:
            listener.cancel(self, correlation_id)

    async def send(self, frame: bytes) -> None:
        """Queue a one-way frame."""
        self._check_size(frame)
        await self._listener().submit(frame, None)

    async def close(self) -> None:
        """Close; requests still waiting fail with ``Unavailable``."""
        self._closed = True
        self.pending.fail_all(Unavailable(f"{self.url}: connection closed"))


class InprocTransport(Transport):
    """The ``inproc://`` transport."""

    schemes = ("inproc",)

    def listen(self, url: str, handler: FrameHandler, **options: Any) -> InprocListener:
        """A listener for ``inproc://name`` (options: ``queue_size``, ``max_in_flight``)."""
        return InprocListener(url, handler, **options)

    def connect(self, url: str, **options: Any) -> InprocConnection:
        """A connection to ``inproc://name``."""
        return InprocConnection(url, **options)
