"""``inproc://name``: frames through bounded in-memory queues, within one process.

Carries exactly the bytes TCP and ZeroMQ carry, for full isolation between services (each
call is encoded and decoded) and for testing the wire without sockets. A listener owns a
bounded queue: a sender waits while it is full (backpressure, never a drop). Names live in
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
import contextlib
from typing import Any

from nanomsg_kernel.errors import ConfigError, EncodeError, Unavailable
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, HEADER_SIZE, Kind, cancel_frame
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

__all__ = ["InprocConnection", "InprocListener", "InprocTransport"]

_yield = asyncio.sleep
_CANCEL = bytes((Kind.CANCEL,))

EAGER_MAX_FRAME = 64 * 1024
"""Requests up to this size start their handler in the caller's step (larger: in a task)."""

_LISTENERS: dict[str, InprocListener] = {}
_Item = tuple[bytes, "InprocConnection | None"]


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

    def finished(self, request: bytes, reply: bytes | None) -> None:
        """Deliver the reply of a call that continued in a task."""
        conn = self.conn
        if conn is not None:
            if reply is not None:
                conn.deliver(reply)
            elif self.listener.closing:
                # Cancelled at the end of the grace period: the caller gets no reply.
                conn.abandon(correlation_id_of(request), Unavailable(
                    f"inproc://{self.listener.name}: the listener closed before the request was answered"))
        self.listener._slot_free.set()


class InprocListener(Listener):
    """Serves frames put on its queue by :class:`InprocConnection` objects."""

    def __init__(self, url: str, handler: FrameHandler, *, queue_size: int = 1024,
                 max_in_flight: int = 1024, max_body_size: int = DEFAULT_MAX_BODY) -> None:
        self.url = url
        self.name = _name(url)
        self.handler = handler
        self.max_body_size = max_body_size
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(queue_size)
        self.max_in_flight = max_in_flight
        self.core: ServerCore | None = None
        """What serves the frames (made when the listener starts)."""
        self._slot_free = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._events: _Link | None = None
        self.closing = False

    async def start(self) -> None:
        """Register the name and start taking frames."""
        if self.name in _LISTENERS:
            raise ConfigError(f"inproc://{self.name} is already bound")
        self.core = ServerCore(self.handler, name=self.url, max_body_size=self.max_body_size)
        self._events = _Link(self, None)
        _LISTENERS[self.name] = self
        self._pump = asyncio.create_task(self._run(), name=f"inproc://{self.name}")

    @property
    def _in_flight(self) -> int:
        return self.core.in_flight if self.core is not None else 0

    async def submit(self, frame: bytes, conn: InprocConnection | None) -> None:
        """Queue a frame (waits while the queue is full)."""
        if self.closing:
            raise Unavailable(f"inproc://{self.name} is closing")
        core = self.core
        assert core is not None
        if core.in_flight < self.max_in_flight and self._queue.empty():
            self._start(frame, conn)  # capacity now: no queue hop
        else:
            await self._queue.put((frame, conn))

    def cancel(self, conn: InprocConnection, correlation_id: int) -> None:
        """The ``CANCEL`` frame of ``conn`` for ``correlation_id``: served at once when its
        request runs (or nothing is queued), else after the frames queued before it (its
        request may be among them)."""
        frame = cancel_frame(correlation_id)
        if correlation_id in self._link(conn).by_id or self._queue.empty() or self.closing:
            self._start(frame, conn)
            return
        try:
            self._queue.put_nowait((frame, conn))
        except asyncio.QueueFull:
            self._start(frame, conn)

    def _link(self, conn: InprocConnection | None) -> _Link:
        if conn is None:
            assert self._events is not None
            return self._events
        link = conn.link
        if link is None or link.listener is not self:
            link = conn.link = _Link(self, conn)
        return link

    def _start(self, frame: bytes, conn: InprocConnection | None) -> None:
        # A request starts in the caller's step. Events run in a task, after the publisher's
        # step. A large request runs in a task too, so that the caller's buffers are freed
        # before the reply's are made (measured: answered in the caller's step, a 1 MiB echo
        # kept enough large buffers alive at once for the allocator to hand memory back to
        # the system and fault it in again on every call, 10x slower).
        core = self.core
        assert core is not None
        reply = core.start(frame, self._link(conn), eager=len(frame) <= EAGER_MAX_FRAME)
        if reply is not None and conn is not None:
            conn.deliver(reply)

    async def _slot(self) -> None:
        while self._in_flight >= self.max_in_flight:
            self._slot_free.clear()
            await self._slot_free.wait()

    async def _run(self) -> None:
        while True:
            frame, conn = await self._queue.get()
            if frame[3:4] != _CANCEL:  # a CANCEL takes no slot
                await self._slot()
            self._start(frame, conn)

    async def close(self, grace: float = 5.0) -> None:
        """Stop taking frames, finish those in flight within ``grace`` seconds, then stop.

        Requests still being handled after ``grace`` are cancelled, and their callers get
        ``Unavailable``.
        """
        if _LISTENERS.get(self.name) is self:
            del _LISTENERS[self.name]
        self.closing = True
        if self._pump is not None:
            # Frames already queued were accepted: serve them too.
            while not self._queue.empty():
                frame, conn = self._queue.get_nowait()
                if frame[3:4] != _CANCEL:
                    await self._slot()
                self._start(frame, conn)
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        if self.core is not None:
            await self.core.close(grace)


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
