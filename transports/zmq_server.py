"""The serving loop shared by a listener and by each worker process.

Requests arrive on a ``ROUTER`` as ``[routing envelope..., frame]``: the envelope is one
identity from a client's ``DEALER``, or more when a proxy sits in between, and it goes back
unchanged in front of the reply. Each request is handed to the
:data:`~nanomsg_kernel.transports.base.FrameHandler` as soon as it is read, started eagerly: through its
:data:`~nanomsg_kernel.transports.base.FrameStarter` when it has one (a service's ``start_frame``), else
with :func:`~nanomsg_kernel.eager.start_eagerly`. A handler that finishes without waiting
never gets a task, and one that waits continues in a task of its own. At most ``max_in_flight``
run at once, and while that many do, the socket is not read, so ZeroMQ's queues fill up to
their high-water marks and senders wait (backpressure rather than unbounded memory).

Replies are not sent one by one as handlers finish: they leave in bursts
(:class:`ReplyQueue`), so that a burst wakes libzmq's I/O thread once and leaves in a few
TCP segments. Replies of the requests read in one batch go out every
:data:`REPLY_BURST` replies and at the end of the batch (the client starts on the first
ones while the server computes the rest); replies of handlers that waited go out together
at the next loop iteration. A reply whose client has no room (its queue is at the
high-water mark) waits, retried with a short back-off, up to ``reply_timeout`` seconds;
while it waits it holds its place among the ``max_in_flight``.

Events arrive on a ``SUB`` (or, in worker processes, a ``PULL``) as ``[frame]`` and get no
reply. One task hands them to the handler one after the other, so a service sees the events
of each publisher in the order they were published; while ``max_in_flight`` events wait,
the socket is not read (and ``XPUB_NODROP`` publishers wait in turn).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from typing import Any

import zmq

from nanomsg_kernel.eager import start_eagerly
from nanomsg_kernel.errors import Status
from nanomsg_kernel.ratelimit import rate_limited
from nanomsg_kernel.transports.base import FrameHandler, frame_starter
from nanomsg_kernel.transports.replies import error_reply, handler_failed, task_reply
from nanomsg_kernel.transports.zmq_socket import SocketPump, raw_send

__all__ = ["DRAIN_SECONDS", "REPLY_BURST", "REQUEST_BATCH", "FrameServer", "ReplyQueue"]

log = logging.getLogger("nanomsg_kernel.transports.zmq")
peer_log = rate_limited(log)
"""For what a peer can cause: one line per interval and kind, with a count."""
_current_task = asyncio.current_task
_NB = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_Again = zmq.Again
_ZMQError = zmq.ZMQError
_EHOSTUNREACH = zmq.EHOSTUNREACH
_FIRST_RETRY = 0.0005
_MAX_RETRY = 0.005

DRAIN_SECONDS = 0.2
"""How long a closing server keeps its connections after its last replies went out."""

REQUEST_BATCH = 32
"""Requests read from a ``ROUTER`` before other callbacks get a turn (and the replies so far
leave). Measured with ``python -m benchmarks.zmq``: smaller batches keep client and server
busy at once on two cores; much smaller ones cost a loop iteration for too few requests."""

REPLY_BURST = 16
"""Replies of one batch that are sent together as soon as there are that many."""

MAX_ENVELOPE = 16
"""Most routing-envelope parts accepted in front of a frame (more: the message is dropped)."""


class ReplyQueue:
    """The replies waiting to go out on one ``ROUTER``: sent in one burst per loop iteration.

    A reply that ZeroMQ refuses for lack of room (``zmq.Again``: that client's queue is full)
    is *held* and retried with a back-off from 0.5 to 5 ms until its ``reply_timeout``
    passes, when it is dropped and counted; a reply for a client that went away
    (``EHOSTUNREACH``) is dropped and counted at once.
    """

    __slots__ = ("_retry", "_scheduled", "held", "pump", "queued", "server")

    def __init__(self, server: FrameServer, pump: SocketPump) -> None:
        self.server = server
        self.pump = pump
        self.queued: list[list[bytes]] = []
        self.held: list[tuple[list[bytes], float]] = []
        """Replies refused for lack of room, with the loop time at which they are dropped."""
        self._scheduled = False
        self._retry: asyncio.TimerHandle | None = None

    def put(self, parts: list[bytes], alone: bool, in_batch: bool = False) -> None:
        """Send ``parts`` (``[envelope..., reply]``) at the next loop iteration, or now when
        ``alone`` (no other request is being handled: there is no burst to wait for).

        ``in_batch``: the reply of a request of the batch being read; it leaves with the
        next :data:`REPLY_BURST` replies or when the batch ends (the caller then calls
        :meth:`flush`).
        """
        if in_batch:
            queued = self.queued
            queued.append(parts)
            server = self.server
            n = len(queued)
            # A queued reply holds its place among the max_in_flight, like a held one: sent
            # now, one refused for lack of room is held (and counted) at once.
            if n >= REPLY_BURST or n + server.in_flight + server._held >= server.max_in_flight:
                self.flush()
            return
        if alone and not self.queued and not self.held:
            done = self._send(parts)
            if done:
                self.server._last_reply = self.server._loop.time()
                self.pump.kick()
                return
            if done is None:
                return
        self.queued.append(parts)
        if not self._scheduled:
            self._scheduled = True
            self.server._loop.call_soon(self.flush)

    def _send(self, parts: list[bytes]) -> bool | None:
        """Send one reply: True if sent, False if refused for lack of room, None if dropped."""
        sock = self.pump.sock
        try:
            if len(parts) == 2:
                raw_send(sock, parts[0], _MORE)
            else:
                # Only the first part can meet a full queue: a message goes whole or not at all.
                for part in parts[:-1]:
                    raw_send(sock, part, _MORE)
            raw_send(sock, parts[-1], _NB)
        except _Again:
            return False
        except _ZMQError as exc:
            # EHOSTUNREACH: the client went away; ETERM/ENOTSOCK: closing.
            self.server.dropped_replies += 1
            if exc.errno != _EHOSTUNREACH and not self.server._closing:
                peer_log.warning("could not send a reply: %s", exc)
            return None
        return True

    def flush(self) -> None:
        """Send what is queued (after the held replies that have room now)."""
        self._scheduled = False
        server = self.server
        held_before = len(self.held)
        if self.held:
            self._retry_held(reschedule=False)
        queued, self.queued = self.queued, []
        sent = False
        send = self._send
        for parts in queued:
            done = send(parts)
            if done:
                sent = True
            elif done is False:
                self.held.append((parts, server._loop.time() + server.reply_timeout))
        if sent or len(self.held) < held_before:
            server._last_reply = server._loop.time()
            self.pump.kick()  # sending may have consumed the socket's edge
        if len(self.held) != held_before:
            server._held_changed(len(self.held) - held_before)
        if self.held and self._retry is None:
            self._retry = server._loop.call_later(_FIRST_RETRY, self._on_retry, _FIRST_RETRY)

    def _on_retry(self, delay: float) -> None:
        self._retry = None
        before = len(self.held)
        self._retry_held(reschedule=True, delay=delay)
        if len(self.held) != before:
            self.server._held_changed(len(self.held) - before)

    def _retry_held(self, *, reschedule: bool, delay: float = _FIRST_RETRY) -> None:
        server = self.server
        now = server._loop.time()
        still: list[tuple[list[bytes], float]] = []
        progress = False
        for parts, drop_at in self.held:
            done = self._send(parts)
            if done:
                progress = True
            elif done is False:
                if now >= drop_at:
                    server.dropped_replies += 1
                    peer_log.warning("dropped a reply: the client did not make room for %.1fs", server.reply_timeout)
                else:
                    still.append((parts, drop_at))
        self.held = still
        if progress:
            server._last_reply = now
            self.pump.kick()
        if reschedule and still and self._retry is None:
            delay = _FIRST_RETRY if progress else min(delay * 2, _MAX_RETRY)
            self._retry = server._loop.call_later(delay, self._on_retry, delay)

    def drop_held(self) -> None:
        """Give up on every held reply (counted as dropped)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self.held:
            self.server.dropped_replies += len(self.held)
            self.server._held_changed(-len(self.held))
            self.held = []


class FrameServer:
    """Hands the frames of some sockets to a handler and sends the replies back.

    Args:
        handler: called with each frame; returns the reply frame or ``None``.
        max_in_flight: frames handled at once.
        max_frame: the largest reply sent; a larger one is replaced by a
            ``RESOURCE_EXHAUSTED`` error frame (the client would be disconnected otherwise).
        reply_timeout: seconds a reply waits for room in the client's queue.
    """

    def __init__(self, handler: FrameHandler, *, max_in_flight: int, max_frame: int, reply_timeout: float) -> None:
        self.handler = handler
        self._starter = frame_starter(handler)
        self.max_in_flight = max_in_flight
        self.max_frame = max_frame
        self.reply_timeout = reply_timeout
        self.pumps: list[SocketPump] = []
        self.replies: list[ReplyQueue] = []
        """The reply queue of each request socket."""
        self._event_pumps: list[SocketPump] = []
        self._event_ready: list[asyncio.Event] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.in_flight = 0
        self.peak_in_flight = 0
        """The most frames ever handled at once."""
        self.dropped_messages = 0
        """Messages that were not ``[envelope..., frame]``."""
        self.dropped_replies = 0
        """Replies whose client was gone or did not make room in time."""
        self._held = 0
        self._starting = False
        """True while a request's handler runs its first step (from the socket's callback)."""
        self._paused = False
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._create_task = self._loop.create_task
        self._last_reply = -DRAIN_SECONDS

    def serve_requests(self, sock: zmq.Socket[Any]) -> None:
        """Serve a ``ROUTER`` (replies go back along each message's envelope)."""
        replies: ReplyQueue

        def on_message(parts: list[bytes]) -> None:
            if not 2 <= len(parts) <= MAX_ENVELOPE + 1:
                self.dropped_messages += 1
                return
            self._start(parts, replies)

        def after_batch() -> None:
            if replies.queued:
                replies.flush()

        # ROUTER_MANDATORY makes a full queue an error, yet POLLOUT stays set.
        pump = SocketPump(sock, on_message, pollout_means_room=False, router=True,
                          batch=REQUEST_BATCH, after_batch=after_batch)
        replies = ReplyQueue(self, pump)
        self.pumps.append(pump)
        self.replies.append(replies)

    def serve_events(self, sock: zmq.Socket[Any]) -> None:
        """Serve a ``SUB`` or ``PULL`` of events (no replies), in order."""
        queue: collections.deque[bytes] = collections.deque()
        ready = asyncio.Event()
        self._event_ready.append(ready)
        pump: SocketPump

        def on_message(parts: list[bytes]) -> None:
            if len(parts) != 1:
                self.dropped_messages += 1
                return
            queue.append(parts[0])
            ready.set()
            if len(queue) >= self.max_in_flight:
                pump.pause()

        pump = SocketPump(sock, on_message)
        self._event_pumps.append(pump)
        task = self._create_task(self._consume(queue, ready, pump))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _consume(self, queue: collections.deque[bytes], ready: asyncio.Event, pump: SocketPump) -> None:
        handler = self.handler
        while True:
            while queue:
                try:
                    await handler(queue.popleft())
                except Exception:
                    log.exception("frame handler failed on an event")
                if not self._closing and len(queue) <= self.max_in_flight // 2:
                    pump.resume()
            if self._closing:
                return
            ready.clear()
            await ready.wait()

    def _start(self, parts: list[bytes], replies: ReplyQueue) -> None:
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        starter = self._starter
        if starter is not None:
            try:
                result = starter(parts[-1], self._loop)
            except Exception:
                result = handler_failed(parts[-1], log, "")
            if result is None or isinstance(result, bytes):
                self._answer(parts, result, replies, True)
            else:
                self.tasks.add(result)
                result.add_done_callback(functools.partial(self._finished, parts, replies))
        else:
            self._starting = True
            try:
                # A task, if the handler waits, removes itself from ``tasks`` when it ends
                # (cheaper than a done callback).
                start_eagerly(self._loop, self._serve(parts, replies), on_task=self.tasks.add)
            finally:
                self._starting = False
        if self.in_flight + self._held >= self.max_in_flight:
            self._pause()

    def _finished(self, parts: list[bytes], replies: ReplyQueue, task: asyncio.Task[bytes | None]) -> None:
        """A task the starter made ended: its result is the reply."""
        self.tasks.discard(task)
        self._answer(parts, task_reply(task, parts[-1], log, ""), replies, False)

    def _answer(self, parts: list[bytes], reply: bytes | None, replies: ReplyQueue, in_batch: bool) -> None:
        """Queue ``reply`` (if any) for the client; the request is no longer in flight.

        ``in_batch``: answered while the batch it came in is being read."""
        try:
            if reply is None:
                return
            if len(reply) > self.max_frame:
                reply = error_reply(
                    parts[-1], Status.RESOURCE_EXHAUSTED,
                    f"reply of {len(reply)} bytes exceeds the maximum frame of {self.max_frame} bytes",
                )
                if reply is None:
                    return
            parts[-1] = reply
            if in_batch:
                replies.put(parts, False, in_batch=True)
            else:
                replies.put(parts, self.in_flight == 1)
        finally:
            self.in_flight -= 1
            if self._paused:
                self._resume()

    def _pause(self) -> None:
        self._paused = True
        for p in self.pumps:
            p.pause()

    def _resume(self) -> None:
        if self._paused and self.in_flight + self._held < self.max_in_flight and not self._closing:
            self._paused = False
            for p in self.pumps:
                p.resume()

    def _held_changed(self, delta: int) -> None:
        """Replies held for lack of room count among the ``max_in_flight``."""
        self._held += delta
        if delta > 0 and self.in_flight + self._held >= self.max_in_flight:
            self._pause()
        elif delta < 0:
            self._resume()

    async def _serve(self, parts: list[bytes], replies: ReplyQueue) -> None:
        """Serve one request through a handler without a starter (started eagerly)."""
        reply = None
        try:
            reply = await self.handler(parts[-1])
        except Exception:
            reply = handler_failed(parts[-1], log, "")
        finally:  # also when cancelled (no reply then)
            in_batch = self._starting
            if not in_batch:  # finished in a task of its own (none was made otherwise)
                self.tasks.discard(_current_task(self._loop))
            self._answer(parts, reply, replies, in_batch)

    async def close(self, grace: float) -> None:
        """Stop reading; let frames in flight finish within ``grace`` seconds; cancel the rest.

        The sockets stay open until :data:`DRAIN_SECONDS` after the last reply went out
        (within the grace period), so that clients read it before the connection drops:
        libzmq discards a received message its application has not read yet when the
        connection that carried it closes.
        """
        self._closing = True
        loop = self._loop
        deadline = loop.time() + grace
        for p in (*self.pumps, *self._event_pumps):
            p.pause()
        for ev in self._event_ready:
            ev.set()  # consumers finish the events already read, then return
        if self.tasks:
            _done, pending = await asyncio.wait(set(self.tasks), timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
        for replies in self.replies:
            replies.flush()
        delay = _FIRST_RETRY
        while self._held and loop.time() < deadline:  # replies waiting for room, within the grace
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 2, _MAX_RETRY)
        for replies in self.replies:
            replies.drop_held()
        drained = min(self._last_reply + DRAIN_SECONDS, deadline)
        if drained > loop.time():
            await asyncio.sleep(drained - loop.time())
        for p in (*self.pumps, *self._event_pumps):
            p.close()
