"""``inproc://name``: frames through bounded in-memory queues, within one process.

Carries exactly the bytes TCP and ZeroMQ carry, for full isolation between services (each
call is encoded and decoded) and for testing the wire without sockets. A listener owns a
bounded queue: a sender waits while it is full (backpressure, never a drop). Names live in
one process-wide table; binding a name twice is an error.

A request (up to :data:`EAGER_MAX_FRAME` bytes) starts its handler eagerly, in the caller's
step (through the handler's :data:`~nanomsg_kernel.transports.base.FrameStarter`, a service's
``start_frame``, or else :func:`~nanomsg_kernel.eager.start_eagerly`): a handler that does not wait has
answered when ``submit`` returns, and the caller then yields to the loop once, as a reply
over a wire would arrive. A handler that waits continues in a task of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

from nanomsg_kernel.eager import start_eagerly
from nanomsg_kernel.errors import ConfigError, EncodeError, Unavailable
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, HEADER_SIZE
from nanomsg_kernel.transports.base import (
    Connection,
    FrameHandler,
    Listener,
    PendingReplies,
    Transport,
    correlation_id_of,
    frame_starter,
    split_url,
)
from nanomsg_kernel.transports.replies import handler_failed, task_reply

__all__ = ["InprocConnection", "InprocListener", "InprocTransport"]

log = logging.getLogger("nanomsg_kernel.transports.inproc")
_yield = asyncio.sleep

EAGER_MAX_FRAME = 64 * 1024
"""Requests up to this size start their handler in the caller's step (larger: in a task)."""

_LISTENERS: dict[str, InprocListener] = {}
_Item = tuple[bytes, "InprocConnection | None"]


def _name(url: str) -> str:
    scheme, name = split_url(url)
    if scheme != "inproc" or not name or "/" in name:
        raise ConfigError(f"bad inproc URL {url!r}: expected inproc://name")
    return name


class InprocListener(Listener):
    """Serves frames put on its queue by :class:`InprocConnection` objects."""

    def __init__(self, url: str, handler: FrameHandler, *, queue_size: int = 1024,
                 max_in_flight: int = 1024, max_body_size: int = DEFAULT_MAX_BODY) -> None:
        self.url = url
        self.name = _name(url)
        self.handler = handler
        self._starter = frame_starter(handler)
        self.max_body_size = max_body_size
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(queue_size)
        self.max_in_flight = max_in_flight
        self._in_flight = 0
        self._slot_free = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Register the name and start taking frames."""
        if self.name in _LISTENERS:
            raise ConfigError(f"inproc://{self.name} is already bound")
        _LISTENERS[self.name] = self
        self._pump = asyncio.create_task(self._run(), name=f"inproc://{self.name}")

    async def submit(self, frame: bytes, conn: InprocConnection | None) -> None:
        """Queue a frame (waits while the queue is full)."""
        if self._closing:
            raise Unavailable(f"inproc://{self.name} is closing")
        if self._in_flight < self.max_in_flight and self._queue.empty():
            self._start(frame, conn)  # capacity now: no queue hop
        else:
            await self._queue.put((frame, conn))

    def _start(self, frame: bytes, conn: InprocConnection | None) -> None:
        self._in_flight += 1
        if conn is None or len(frame) > EAGER_MAX_FRAME:
            # An event: its subscribers run in a task, after the publisher's step. A large
            # request: in a task too, so that the caller's buffers are freed before the
            # reply's are made (measured: answered in the caller's step, a 1 MiB echo kept
            # enough large buffers alive at once for the allocator to hand memory back to
            # the system and fault it in again on every call, 10x slower).
            self._track(asyncio.create_task(self._serve(frame, conn)))
            return
        # A request starts eagerly: a handler that does not wait has answered when the
        # caller's ``submit`` returns (no task); one that waits gets a task.
        loop = asyncio.get_running_loop()
        starter = self._starter
        if starter is None:
            start_eagerly(loop, self._serve(frame, conn), on_task=self._track)
            return
        try:
            result = starter(frame, loop)
        except Exception:
            result = handler_failed(frame, log, f"inproc://{self.name}")
        if result is None or isinstance(result, bytes):
            self._answer(conn, result)
        else:
            self._track(result)
            result.add_done_callback(functools.partial(self._finished, frame, conn))

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _finished(self, frame: bytes, conn: InprocConnection | None, task: asyncio.Task[bytes | None]) -> None:
        """A task the starter made ended: its result is the reply."""
        if task.cancelled():
            self._abandon(frame, conn)
        self._answer(conn, task_reply(task, frame, log, f"inproc://{self.name}"))

    def _abandon(self, frame: bytes, conn: InprocConnection | None) -> None:
        """Only close() cancels: the grace period is over and the caller gets no reply."""
        if conn is not None:
            conn.abandon(correlation_id_of(frame), Unavailable(
                f"inproc://{self.name}: the listener closed before the request was answered"))

    def _answer(self, conn: InprocConnection | None, reply: bytes | None) -> None:
        """Deliver ``reply`` (if any, and if there is a caller); the frame is done."""
        try:
            if reply is not None and conn is not None:
                conn.deliver(reply)
        finally:
            self._in_flight -= 1
            self._slot_free.set()

    async def _slot(self) -> None:
        while self._in_flight >= self.max_in_flight:
            self._slot_free.clear()
            await self._slot_free.wait()

    async def _run(self) -> None:
        while True:
            frame, conn = await self._queue.get()
            await self._slot()
            self._start(frame, conn)

    async def _serve(self, frame: bytes, conn: InprocConnection | None) -> None:
        """Serve one frame through a handler without a starter (and every event)."""
        reply = None
        try:
            reply = await self.handler(frame)
        except asyncio.CancelledError:
            self._abandon(frame, conn)
            raise
        except Exception:
            reply = handler_failed(frame, log, f"inproc://{self.name}")
        finally:
            self._answer(conn, reply)

    async def close(self, grace: float = 5.0) -> None:
        """Stop taking frames, finish those in flight within ``grace`` seconds, then stop.

        Requests still being handled after ``grace`` are cancelled, and their callers get
        ``Unavailable``.
        """
        if _LISTENERS.get(self.name) is self:
            del _LISTENERS[self.name]
        self._closing = True
        if self._pump is not None:
            # Frames already queued were accepted: serve them too.
            while not self._queue.empty():
                frame, conn = self._queue.get_nowait()
                await self._slot()
                self._start(frame, conn)
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)


class InprocConnection(Connection):
    """A client of an :class:`InprocListener`."""

    def __init__(self, url: str, *, max_body_size: int = DEFAULT_MAX_BODY) -> None:
        self.url = url
        self.name = _name(url)
        self.max_body_size = max_body_size
        self.pending = PendingReplies()
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
