"""The transport interface: move frames, never contracts.

A transport is chosen by the URL scheme (``inproc://``, ``tcp://``, ``zmq+tcp://``,
``zmq+ipc://``, ``nats://``, or one a user registers). It has two sides:

* :meth:`Transport.listen` — the server side: every frame received is handed to a
  :data:`FrameHandler`; the frame it returns (if any) is the reply sent back to the peer.
* :meth:`Transport.connect` — the client side, a :class:`Connection`: ``request(frame)``
  sends a frame and waits for the reply frame with the same correlation id (read from the
  header; the ids are chosen by the client layer), ``send(frame)`` is one-way, ``close()``.

What a server does with a frame once it has read it (check the header, start the handler,
count what is in flight, honour ``CANCEL``, check the reply's size, close with grace) is the
same on every transport: :class:`~nanomsg_kernel.transports.server_core.ServerCore`. A
transport only reads and writes frames. A handler may also have a synchronous start
(:func:`frame_starter` finds it: a service's ``start_frame``), which the core calls instead
of awaiting the handler: a request whose handler does not wait is answered by one plain
call.

A client connection whose caller gives up on a request (cancelled, or its timeout passed)
is told so through :meth:`Connection.cancel`; it sends a ``CANCEL`` frame, and the server
cancels the handler.

Frames are carried unchanged, byte for byte. Transports raise the library's errors:
:class:`~nanomsg_kernel.errors.Unavailable` when the peer cannot be reached or goes away,
:class:`~nanomsg_kernel.errors.DeadlineExceeded` when a request's timeout passes, and
:class:`~nanomsg_kernel.errors.EncodeError` for a frame over the size limit.
"""

from __future__ import annotations

import abc
import asyncio
import importlib
import struct
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar
from urllib.parse import urlsplit

from nanomsg_kernel.deadlines import Bucket, reply_deadlines
from nanomsg_kernel.errors import ConfigError, Unavailable
from nanomsg_kernel.frame import HEADER_SIZE, HEADER_STRUCT
from nanomsg_kernel.lifecycle import AsyncResource

__all__ = [
    "Connection",
    "FrameHandler",
    "FrameStarter",
    "Listener",
    "PendingReplies",
    "Transport",
    "correlation_id_of",
    "frame_starter",
    "get_transport",
    "register_transport",
    "split_url",
]

FrameHandler = Callable[[bytes], Awaitable[bytes | None]]
"""Server callback: receives one frame, returns the reply frame, or ``None`` (no reply)."""

FrameStarter = Callable[
    [bytes, asyncio.AbstractEventLoop, Any], "bytes | Coroutine[Any, Any, bytes | None] | None"
]
"""The synchronous start of a :data:`FrameHandler` (a service's
:meth:`~nanomsg_kernel.service.Service.start_frame`): called with a frame, the loop and
the frame's :class:`~nanomsg_kernel.transports.caller.Caller` (whose ``peer()`` names who
calls) on the loop's thread, it returns the reply (or ``None``) if the call ended at once,
else the coroutine that finishes it (its result is the reply), for the caller to run in a
task. A service's ``handle_frame`` takes the caller as its second argument too."""


def frame_starter(handler: FrameHandler) -> FrameStarter | None:
    """The synchronous start of ``handler``, if it has one, else ``None``.

    A service's ``handle_frame`` has one (its service's ``start_frame``). A transport that
    reads frames in a loop callback serves a frame through it with no task and no loop
    iteration when the handler does not wait, and awaits ``handler`` for handlers without one.
    """
    owner = getattr(handler, "__self__", None)
    start: FrameStarter | None = getattr(owner, "start_frame", None)
    if start is None or getattr(owner, "handle_frame", None) != handler:
        return None
    return start


class Listener(AsyncResource, abc.ABC):
    """A listening endpoint. ``async with`` starts it and closes it."""

    url: str
    """The URL actually bound (for ``tcp://127.0.0.1:0``, with the real port)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Bind and begin serving."""
        raise NotImplementedError("The 'start' method must be implemented.")

    @abc.abstractmethod
    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting; let requests in flight finish within ``grace`` seconds; close."""
        raise NotImplementedError("The 'close' method must be implemented.")


class Connection(AsyncResource, abc.ABC):
    """The client side of a transport. ``async with`` connects and closes it."""

    OPEN = "connect"

    url: str

    async def connect(self) -> None:
        """Connect eagerly (transports may also connect lazily on first use)."""

    @abc.abstractmethod
    async def request(self, frame: bytes, timeout: float | None = None) -> bytes:
        """Send a request frame; return the reply frame carrying the same correlation id.

        Raises:
            DeadlineExceeded: no reply within ``timeout`` seconds.
            Unavailable: the peer cannot be reached or the connection dropped.
        """
        raise NotImplementedError("The 'request' method must be implemented.")

    def cancel(self, correlation_id: int) -> None:
        """The caller of the request ``correlation_id`` gave up: send a ``CANCEL`` frame
        (:func:`~nanomsg_kernel.frame.cancel_frame`) to the server that took the request, so
        that it cancels the handler. Never waits and never raises (best effort: a frame that
        cannot be sent at once is dropped). This default does nothing: a transport that can
        reach its server without waiting overrides it."""

    @abc.abstractmethod
    async def send(self, frame: bytes) -> None:
        """Send a frame that gets no reply (an event)."""
        raise NotImplementedError("The 'send' method must be implemented.")

    @abc.abstractmethod
    async def close(self) -> None:
        """Close; every request still waiting fails with ``Unavailable``."""
        raise NotImplementedError("The 'close' method must be implemented.")


class Transport(abc.ABC):
    """Makes listeners and connections for the URL schemes it serves."""

    schemes: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def listen(self, url: str, handler: FrameHandler, **options: Any) -> Listener:
        """A (not yet started) listener at ``url`` that hands frames to ``handler``."""
        raise NotImplementedError("The 'listen' method must be implemented.")

    @abc.abstractmethod
    def connect(self, url: str, **options: Any) -> Connection:
        """A (not yet connected) connection to ``url``."""
        raise NotImplementedError("The 'connect' method must be implemented.")


_REGISTRY: dict[str, Transport | Callable[[], Transport]] = {}


def register_transport(scheme: str, transport: Transport | Callable[[], Transport]) -> None:
    """Make ``scheme://`` URLs use ``transport`` (an instance, or a factory called lazily)."""
    if not scheme or "://" in scheme:
        raise ConfigError(f"bad URL scheme {scheme!r}")
    _REGISTRY[scheme.lower()] = transport


_BUILTIN = {
    "inproc": ("nanomsg_kernel.transports.inproc", "InprocTransport"),
    "tcp": ("nanomsg_kernel.transports.tcp", "TcpTransport"),
    "zmq+tcp": ("nanomsg_kernel.transports.zmq", "ZmqTransport"),
    "zmq+ipc": ("nanomsg_kernel.transports.zmq", "ZmqTransport"),
    "nats": ("nanomsg_kernel.transports.nats", "NatsTransport"),
}


def _builtin(scheme: str) -> Transport | None:
    """The built-in transport for ``scheme``, imported on first use (so that optional
    dependencies load only when needed)."""
    where = _BUILTIN.get(scheme)
    if where is None:
        return None
    cls = getattr(importlib.import_module(where[0]), where[1])
    made: Transport = cls()
    return made


def get_transport(url: str) -> Transport:
    """The transport for ``url``'s scheme (``ConfigError`` if none is registered)."""
    scheme = split_url(url)[0]
    found = _REGISTRY.get(scheme)
    if found is None:
        found = _builtin(scheme)
        if found is None:
            known = sorted({*_REGISTRY, *_BUILTIN})
            raise ConfigError(f"no transport for scheme {scheme!r} in {url!r}; known: {', '.join(known)}")
        _REGISTRY[scheme] = found
    if not isinstance(found, Transport):
        found = _REGISTRY[scheme] = found()
    return found


def split_url(url: str) -> tuple[str, str]:
    """Split ``scheme://rest`` into ``(scheme, rest)``; ``ConfigError`` if malformed."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"bad URL {url!r}: expected scheme://address")
    scheme = urlsplit(url).scheme.lower() or url.split("://", 1)[0].lower()
    return scheme, url.split("://", 1)[1]


_CID_OFFSET = struct.calcsize(HEADER_STRUCT.format[:HEADER_STRUCT.format.index("Q")])  # before the correlation id
_unpack_cid = struct.Struct(">Q").unpack_from


def correlation_id_of(frame: bytes | bytearray | memoryview) -> int:
    """The correlation id in a frame's header (-1 when the frame is shorter than a header)."""
    if len(frame) < HEADER_SIZE:
        return -1
    cid: int = _unpack_cid(frame, _CID_OFFSET)[0]
    return cid


class PendingReplies:
    """Requests waiting for their reply, by correlation id (for transports that multiplex).

    ``expect(cid)`` registers a future before the frame is sent; ``resolve(frame)`` completes
    the matching future (unknown ids are ignored and counted: the caller gave up);
    ``fail(cid, exc)`` fails one request (its peer will not answer it); ``fail_all(exc)`` fails
    everything waiting, e.g. when the connection drops.
    """

    __slots__ = ("_recent", "_waiting", "late_replies")

    def __init__(self) -> None:
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._recent: tuple[asyncio.AbstractEventLoop | None, Bucket | None] = (None, None)
        """The loop and deadline bucket of the last request (the next ones mostly join it)."""
        self.late_replies = 0
        """Replies that arrived for no waiting request (their caller timed out or cancelled)."""

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(self, correlation_id: int, loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Future[bytes]:
        """A future for the reply to ``correlation_id`` (which must not be waiting already).

        ``loop``: the running loop, when the caller knows it (asking for it costs a system
        call per request on Python 3.11).
        """
        if correlation_id in self._waiting:
            raise ValueError(f"correlation id {correlation_id} is already waiting for a reply")
        fut: asyncio.Future[bytes] = (loop or asyncio.get_running_loop()).create_future()
        self._waiting[correlation_id] = fut
        return fut

    def resolve(self, frame: bytes) -> bool:
        """Complete the request that ``frame`` answers; False if none is waiting."""
        # correlation_id_of(frame), inline: this runs once per reply.
        cid = _unpack_cid(frame, _CID_OFFSET)[0] if len(frame) >= HEADER_SIZE else -1
        fut = self._waiting.pop(cid, None)
        if fut is None or fut.done():
            self.late_replies += 1
            return False
        fut.set_result(frame)
        return True

    def fail(self, correlation_id: int, exc: BaseException) -> bool:
        """Fail the request waiting for ``correlation_id`` with ``exc``; False if none is."""
        fut = self._waiting.pop(correlation_id, None)
        if fut is None or fut.done():
            return False
        fut.set_exception(exc)
        return True

    def discard(self, correlation_id: int) -> None:
        """Forget a request (its caller gave up)."""
        self._waiting.pop(correlation_id, None)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every waiting request with ``exc``."""
        waiting, self._waiting = self._waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(exc)

    async def wait(self, correlation_id: int, fut: asyncio.Future[bytes], timeout: float | None) -> bytes:
        """Await ``fut``; on timeout raise ``DeadlineExceeded``; never leaks the entry.

        The deadline is enforced by a timer shared with the requests whose deadlines fall
        in the same few milliseconds (:mod:`nanomsg_kernel.deadlines`): up to
        :data:`~nanomsg_kernel.deadlines.GRAIN` late, never early.
        """
        try:
            if timeout is None:
                return await fut
            bucket = self.arm(fut, timeout)
            try:
                return await fut
            finally:
                del bucket[fut]
        finally:
            self._waiting.pop(correlation_id, None)

    def arm(self, fut: asyncio.Future[bytes], timeout: float) -> Bucket:
        """Fail ``fut`` with ``DeadlineExceeded`` unless it is done within ``timeout``
        seconds; returns the bucket to ``del bucket[fut]`` from once it is done.

        What :meth:`wait` does around its ``await``, for a caller that awaits ``fut`` itself.
        """
        loop = fut.get_loop()
        deadline = loop.time() + timeout
        recent_loop, bucket = self._recent
        if recent_loop is not loop or bucket is None or not bucket.takes(deadline, timeout):
            bucket = reply_deadlines(loop).bucket(deadline, timeout)
            self._recent = (loop, bucket)
        bucket[fut] = timeout
        return bucket


def unavailable(url: str, reason: object) -> Unavailable:
    """The ``Unavailable`` error transports raise, naming the URL and the cause."""
    return Unavailable(f"{url}: {reason}")
