"""Drive a ZeroMQ socket from the asyncio event loop through its file descriptor.

``zmq.asyncio`` checks the socket's readiness around every send and receive. Measured with
``python -m benchmarks.zmq`` on the project's 2-core machine (37-byte frames, one DEALER
against a blocking ROUTER echo in another process, 64 requests in flight): blocking pyzmq
makes ~100,000 round trips/s, a ``zmq.asyncio`` DEALER ~28,000, and the same DEALER driven
from its file descriptor (this module) ~60,000. So a :class:`SocketPump` registers
``socket.FD`` with ``loop.add_reader`` and, whenever it fires, receives with
``zmq.NOBLOCK`` until ``zmq.Again``.

ZeroMQ's descriptor is edge-triggered: it signals that the socket's state *may* have
changed, and any send, receive or ``EVENTS`` read may consume that signal, because each of
them first runs libzmq's command processing (which takes the news of a message that has just
arrived, and resets the descriptor). A send that *fails* (``EAGAIN`` for a full queue,
``EHOSTUNREACH`` for a late reply to a client that has gone) does so too: a request that
arrived just then would never be read. So nothing touches the socket without looking again:

* after a send that succeeds, the owner calls :meth:`SocketPump.kick`, which looks at the
  socket on the next loop iteration (once, however many sends happened in between);
* after a send that fails, :meth:`SocketPump.recheck` reads ``EVENTS`` at once and looks at
  the socket on the next iteration if a message waits;
* receiving goes on until ``zmq.Again`` (a receive that finds nothing processes every command
  first), and a batch that stops before it (fairness, or a pause) reschedules itself.

Two costs dominate a small message once the event loop drives the socket, and both are
avoided here:

* Asking ``RCVMORE`` after each part (``socket.get``) costs several times the receive
  itself in pyzmq; a part received as a :class:`zmq.Frame` carries the flag already
  (``frame.more``), so parts are received that way and copied to ``bytes`` once. Where the
  answer is known (a ``ROUTER``'s routing id always has more parts behind it; a client's
  replies are one part each), the part is received straight as ``bytes``, which is cheaper
  still (0.3 µs against 0.75 µs, and 1.4 µs more for asking ``RCVMORE``).
* A message sent while libzmq's I/O thread sleeps wakes it (a system call on each side)
  and goes out in a TCP segment of its own. Senders that answer many messages per loop
  iteration queue them and send them in bursts (the client's outbox, the server's
  :class:`~nanomsg_kernel.transports.zmq_server.ReplyQueue`): one wake-up and a few segments per burst
  instead of per message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import zmq

__all__ = ["MessageCallback", "SocketPump", "last_endpoint", "raw_send", "shared_context"]

log = logging.getLogger("nanomsg_kernel.transports.zmq")

_NOBLOCK = zmq.NOBLOCK
_MORE = zmq.NOBLOCK | zmq.SNDMORE
_POLLOUT = zmq.POLLOUT
_POLLIN = zmq.POLLIN
_EVENTS = zmq.EVENTS
_Again = zmq.Again
_MAX_BACKOFF = 0.005

raw_send = zmq.backend.Socket.send
"""pyzmq's send without the layer for DRAFT routing ids and groups (a third of the cost)."""
_recv = zmq.backend.Socket.recv
_NB = int(zmq.NOBLOCK)

_context: zmq.Context[Any] | None = None
_context_pid = 0


def shared_context() -> zmq.Context[Any]:
    """The ZeroMQ context of this process's client sockets (made on first use, per process)."""
    global _context, _context_pid
    if _context is None or _context_pid != os.getpid():
        _context, _context_pid = zmq.Context(), os.getpid()
    return _context


def last_endpoint(sock: zmq.Socket[Any]) -> str:
    """The address ``sock`` was last bound to, with the real port (``LAST_ENDPOINT``)."""
    value = sock.getsockopt(zmq.LAST_ENDPOINT)
    return value.decode() if isinstance(value, bytes) else str(value)


MessageCallback = Callable[[list[bytes]], None]
"""Called with every multipart message received, as a list of ``bytes`` parts."""
PartCallback = Callable[[bytes], Any]
"""Called with every part received, as ``bytes``, from a peer that sends one-part messages."""


class Received(list[bytes]):
    """A message's parts, with what ZeroMQ tells of the connection it came on: its ZAP
    ``User-Id`` (with CurveZMQ, the client's public key) and the peer's address."""

    __slots__ = ("address", "user_id")

    user_id: str | None
    address: str | None


def _property(frame: zmq.Frame, name: str) -> str | None:
    try:
        value = frame.get(name)
    except zmq.ZMQError:  # the message has no such property
        return None
    return value if isinstance(value, str) else None


def _receiver(sock: zmq.Socket[Any], router: bool, identify: bool = False) -> Callable[[], list[bytes]]:
    """A function receiving one whole message without blocking (``zmq.Again`` if none);
    ``identify``: as :class:`Received` parts."""

    if identify:
        def receive() -> list[bytes]:
            parts = Received()
            f = _recv(sock, _NB, False)
            while f.more:
                parts.append(f.bytes)
                f = _recv(sock, _NB, False)
            parts.append(f.bytes)
            parts.user_id = _property(f, "User-Id")
            parts.address = _property(f, "Peer-Address")
            return parts
    elif router:
        def receive() -> list[bytes]:
            # A ROUTER puts the sender's routing id in front of every message, so more parts
            # always follow the first: it is taken as bytes, the cheapest receive.
            parts: list[bytes] = [_recv(sock, _NB, True)]
            f = _recv(sock, _NB, False)
            while f.more:
                parts.append(f.bytes)
                f = _recv(sock, _NB, False)
            parts.append(f.bytes)
            return parts
    else:
        def receive() -> list[bytes]:
            f = _recv(sock, _NB, False)
            if not f.more:
                return [f.bytes]
            parts: list[bytes] = [f.bytes]
            while f.more:
                f = _recv(sock, _NB, False)
                parts.append(f.bytes)
            return parts

    return receive


class SocketPump:
    """Reads a socket whenever the loop sees it ready; sends without blocking the loop.

    Args:
        sock: the socket (owned by the caller, who closes it after :meth:`close`).
        on_message: called with each received multipart message; must not block.
        on_part: instead of ``on_message``, for a peer that sends one-part messages only (a
            ``DEALER`` reading a service's replies): called with each part received, straight
            as ``bytes`` (no asking whether more parts follow, no list); a peer that sends
            more parts has each handed over on its own.
        batch: messages read per loop iteration before other callbacks get a turn.
        pollout_means_room: ``False`` for sockets whose ``POLLOUT`` is always set even when
            a send would fail (``ROUTER`` with ``ROUTER_MANDATORY``, ``XPUB`` with
            ``XPUB_NODROP``): their sends are retried with a short back-off instead.
        router: the socket is a ``ROUTER`` (every message it receives starts with a routing
            id, which is received without asking whether more parts follow).
        identify: hand each message over as :class:`Received` parts, which tell who sent it.
        after_batch: called after each look at the socket while it is read (not while
            paused), once the messages found were handed to ``on_message``.
        on_wake: called after every look at the socket, paused or not (the socket's state
            may have changed: a full queue may have room again).
    """

    __slots__ = (
        "_after_batch", "_batch", "_closed", "_fd", "_on_message", "_on_wake", "_out_waiters", "_paused",
        "_pollout", "_receive", "_scheduled", "loop", "sock",
    )

    def __init__(
        self,
        sock: zmq.Socket[Any],
        on_message: MessageCallback | None = None,
        *,
        on_part: PartCallback | None = None,
        batch: int = 256,
        pollout_means_room: bool = True,
        router: bool = False,
        identify: bool = False,
        after_batch: Callable[[], None] | None = None,
        on_wake: Callable[[], None] | None = None,
    ) -> None:
        self.sock = sock
        self._receive: Callable[[], Any]
        self._on_message: Callable[[Any], Any]
        if on_part is not None:
            self._receive = functools.partial(_recv, sock, _NB, True)
            self._on_message = on_part
        elif on_message is not None:
            self._receive = _receiver(sock, router, identify)
            self._on_message = on_message
        else:
            raise TypeError("SocketPump needs on_message or on_part")
        self.loop = asyncio.get_running_loop()
        self._batch = batch
        self._after_batch = after_batch
        self._on_wake = on_wake
        self._pollout = pollout_means_room
        self._scheduled = False
        self._paused = False
        self._closed = False
        self._out_waiters: list[asyncio.Future[None]] = []
        self._fd: int = sock.FD
        self.loop.add_reader(self._fd, self._run)
        self.kick()  # messages may be queued already, with the edge long gone

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def kick(self) -> None:
        """Look at the socket on the next loop iteration (call after every send)."""
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self.loop.call_soon(self._run)

    def recheck(self) -> None:
        """After a send that failed: look at the socket on the next loop iteration if a
        message waits (the failed send may have consumed the descriptor's signal for it)."""
        if self._scheduled or self._closed or self._paused:
            return  # (a paused pump looks again when it resumes)
        try:
            events = int(self.sock.getsockopt(_EVENTS))
        except zmq.ZMQError:
            return  # closing
        if events & _POLLIN:
            self.kick()

    def pause(self) -> None:
        """Stop reading (messages wait in ZeroMQ's queue, up to its high-water mark)."""
        self._paused = True

    def resume(self) -> None:
        """Read again after :meth:`pause`."""
        if self._paused:
            self._paused = False
            self.kick()

    def drain(self) -> None:
        """Read every message ZeroMQ holds for this socket now (whatever the batch size)."""
        if self._closed or self._paused:
            return
        receive, on_message = self._receive, self._on_message
        while True:
            try:
                parts = receive()
            except _Again:
                break
            on_message(parts)
        if self._after_batch is not None:
            self._after_batch()

    def _run(self) -> None:
        self._scheduled = False
        if self._closed:
            return
        if not self._paused:
            receive, on_message = self._receive, self._on_message
            try:
                for _ in range(self._batch):
                    try:
                        parts = receive()
                    except _Again:
                        break
                    on_message(parts)
                    if self._paused:
                        break
                else:
                    self.kick()  # more may be waiting: continue after other callbacks
            except zmq.ZMQError as exc:
                if self._closed or exc.errno in (zmq.ENOTSOCK, zmq.ETERM):
                    return
                log.error("receiving from a ZeroMQ socket failed: %s", exc)
                self.kick()
            except Exception:
                log.exception("a ZeroMQ message callback failed")
                self.kick()
            if self._after_batch is not None:
                self._after_batch()
        if self._on_wake is not None:
            self._on_wake()
        if self._out_waiters:
            try:
                events = int(self.sock.getsockopt(_EVENTS))
            except zmq.ZMQError:
                return  # closing
            if events & _POLLIN and not self._paused:
                self.kick()  # reading EVENTS may have consumed the signal of a message
            if events & _POLLOUT:
                waiters, self._out_waiters = self._out_waiters, []
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)

    def try_send(self, parts: Sequence[bytes]) -> bool:
        """Send now if ZeroMQ takes the message; False if it would block.

        Other ZeroMQ errors (``EHOSTUNREACH`` for a gone ``ROUTER`` peer, ...) propagate.
        """
        sock = self.sock
        try:
            if len(parts) == 1:
                raw_send(sock, parts[0], _NOBLOCK)
            else:
                # Only the first part can meet a full queue: a message goes whole or not at all.
                for part in parts[:-1]:
                    raw_send(sock, part, _MORE)
                raw_send(sock, parts[-1], _NOBLOCK)
        except _Again:
            self.recheck()
            return False
        except zmq.ZMQError:
            self.recheck()
            raise
        self.kick()
        return True

    async def send(self, parts: Sequence[bytes], deadline: float | None) -> bool:
        """Send, waiting while ZeroMQ's queue is full; False if ``deadline`` (loop time) passed."""
        delay = 0.0005
        loop = self.loop
        while True:
            if self._closed:
                return False
            if self.try_send(parts):
                return True
            now = loop.time()
            if deadline is not None and now >= deadline:
                return False
            if self._pollout:
                await self.writable(None if deadline is None else deadline - now)
            else:
                await asyncio.sleep(delay if deadline is None else min(delay, deadline - now))
                delay = min(delay * 2, _MAX_BACKOFF)

    async def writable(self, timeout: float | None) -> None:
        """Wait until ``POLLOUT`` is set, the timeout passes, or the pump closes."""
        fut: asyncio.Future[None] = self.loop.create_future()
        self._out_waiters.append(fut)
        self.kick()
        try:
            if timeout is None:
                await fut
            else:
                async with asyncio.timeout(timeout):
                    await fut
        except TimeoutError:
            pass
        finally:
            if not fut.done():
                fut.cancel()
                if fut in self._out_waiters:
                    self._out_waiters.remove(fut)

    def fail_writers(self, exc: BaseException) -> None:
        """Fail every task waiting in :meth:`writable` with ``exc``."""
        waiters, self._out_waiters = self._out_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_exception(exc)

    def close(self) -> None:
        """Stop watching the socket (does not close it); wakes waiting senders."""
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self._fd)
        waiters, self._out_waiters = self._out_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
