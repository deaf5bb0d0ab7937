"""The serving loop shared by a listener and by each worker process.

Requests arrive on a ``ROUTER`` as ``[routing envelope..., frame]``: the envelope is one
identity from a client's ``DEALER``, or more when a proxy sits in between, and it goes back
unchanged in front of the reply. Each request is handed to the
:class:`~nanomsg_kernel.transports.server_core.ServerCore` as soon as it is read, as on every
transport: a handler that finishes without waiting answers at once, one that waits continues
in a task of its own, and a ``CANCEL`` from the same envelope cancels it. At most
``max_in_flight`` run at once; requests read meanwhile wait for a place
(:class:`~nanomsg_kernel.transports.waiting.Waiting`), and once that is full the socket is not
read, so ZeroMQ's queues fill up to their high-water marks and senders wait (backpressure
rather than unbounded memory).

Replies are not sent one by one as handlers finish: they leave in bursts
(:class:`ReplyQueue`), so that a burst wakes libzmq's I/O thread once and leaves in a few
TCP segments. Replies of the requests read in one batch go out every
:data:`REPLY_BURST` replies and at the end of the batch (the client starts on the first
ones while the server computes the rest); replies of handlers that waited go out every
:data:`REPLY_BURST` replies and at the next loop iteration. A reply whose client has no room (its queue is at the
high-water mark) is held until the client makes room, up to ``reply_timeout`` seconds,
within a budget in bytes (:mod:`nanomsg_kernel.transports.zmq_held`); held replies do not count among the
``max_in_flight``, so a client that does not read does not stop the server reading the
others' requests.

A request sent in several message parts by a foreign client is answered with a
``BAD_REQUEST`` error frame (:mod:`nanomsg_kernel.transports.zmq_envelope`).

Events arrive on a ``SUB`` (or, in worker processes, a ``PULL``) as ``[frame]`` and get no
reply. One task hands them to the handler one after the other, so a service sees the events
of each publisher in the order they were published; while ``max_in_flight`` events wait,
the socket is not read (and ``XPUB_NODROP`` publishers wait in turn).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

import zmq

from nanomsg_kernel.frame import HEADER_SIZE, Kind
from nanomsg_kernel.peer import Allow, Peer
from nanomsg_kernel.transports.base import FrameHandler
from nanomsg_kernel.transports.server_core import Caller, ServerCore
from nanomsg_kernel.transports.waiting import Waiting
from nanomsg_kernel.transports.zmq_envelope import multipart_refusal, request_start
from nanomsg_kernel.transports.zmq_held import TRACK_FROM, Counters, HeldReplies
from nanomsg_kernel.transports.zmq_socket import Received, SocketPump, raw_send

__all__ = ["DRAIN_SECONDS", "REPLY_BURST", "REQUEST_BATCH", "FrameServer", "ReplyQueue"]

log = logging.getLogger("nanomsg_kernel.transports.zmq")
_NB = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_Again = zmq.Again
_ZMQError = zmq.ZMQError
_CANCEL_KIND = bytes((int(Kind.CANCEL),))

DRAIN_SECONDS = 0.2
"""How long a closing server keeps its connections after its last replies went out."""

REQUEST_BATCH = 32
"""Requests read from a ``ROUTER`` before other callbacks get a turn (and the replies so far
leave). Measured with ``python -m benchmarks.zmq``: smaller batches keep client and server
busy at once on two cores; much smaller ones cost a loop iteration for too few requests."""

REPLY_BURST = 16
"""Replies of one batch that are sent together as soon as there are that many."""

DEFAULT_MAX_HELD_BYTES = 256 * 1024 * 1024
"""Bytes of replies on their way to all clients of a server together, by default."""

DEFAULT_MAX_HELD_BYTES_PER_CLIENT = 128 * 1024 * 1024
"""Bytes of replies on their way to one client, by default."""

MAX_ENVELOPE = 16
"""Most routing-envelope parts accepted in front of a frame (more: the message is dropped)."""


class ReplyQueue:
    """The replies waiting to go out on one ``ROUTER``: sent in one burst per loop iteration.

    A reply that ZeroMQ refuses for lack of room (``zmq.Again``: that client's queue is full)
    is held, bounded in bytes, until the client makes room or its ``reply_timeout`` passes;
    large replies are counted until libzmq has written them (:mod:`nanomsg_kernel.transports.zmq_held`). A
    reply for a client that went away (``EHOSTUNREACH``) is dropped and counted at once.
    """

    __slots__ = ("_scheduled", "callers", "held", "idle", "pump", "queued", "server")

    def __init__(self, server: FrameServer, pump: SocketPump) -> None:
        self.server = server
        self.pump = pump
        self.callers: dict[object, _Envelope] = {}
        """The return addresses with calls running or waiting (for ``CANCEL``)."""
        self.idle: _Envelope | None = None
        """The last return address whose calls all ended in the step that read them: the next
        request from it (most come from the same few clients) takes it again instead of a new
        one."""
        self.queued: list[list[bytes]] = []
        self.held = HeldReplies(pump, server.counters, per_client=server.max_held_bytes_per_client,
                                total=server.max_held_bytes, reply_timeout=server.reply_timeout)
        """Replies refused for lack of room, and the bytes counted against each client."""
        self._scheduled = False

    def put(self, parts: list[bytes], alone: bool, in_batch: bool = False) -> None:
        """Send ``parts`` (``[envelope..., reply]``) at the next loop iteration (or with the
        :data:`REPLY_BURST` replies queued), or now when ``alone`` (no other request is being
        handled: there is no burst to wait for).

        ``in_batch``: the reply of a request of the batch being read; it leaves with the
        next :data:`REPLY_BURST` replies or when the batch ends (the caller then calls
        :meth:`flush`).
        """
        if in_batch:
            queued = self.queued
            queued.append(parts)
            server = self.server
            n = len(queued)
            if n >= REPLY_BURST or n + server.core.in_flight >= server.max_in_flight:
                self.flush()
            return
        if alone and not self.queued:
            if self._send(parts):
                self.server._last_reply = self.server._loop.time()
                self.pump.kick()
            return
        queued = self.queued
        queued.append(parts)
        if len(queued) >= REPLY_BURST:  # (many handlers ended in one loop iteration)
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self.server._loop.call_soon(self.flush)

    def _send(self, parts: list[bytes]) -> bool | None:
        """Send one reply: True if sent, False if held for lack of room, None if dropped.

        A send that fails looks at the socket again (:meth:`SocketPump.recheck`): libzmq may
        have taken the news of a request that has just arrived while failing."""
        if len(parts[-1]) >= TRACK_FROM:
            done = self.held.send_large(parts)
            if not done:
                self.pump.recheck()
            return done
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
            done = self.held.hold(parts)
            self.pump.recheck()
            return done
        except _ZMQError as exc:  # EHOSTUNREACH: the client went away; ETERM/ENOTSOCK: closing
            self.held.gone(parts, exc)
            self.pump.recheck()
            return None
        return True

    def flush(self) -> None:
        """Send what is queued."""
        self._scheduled = False
        queued, self.queued = self.queued, []
        sent = False
        send = self._send
        for parts in queued:
            if send(parts):
                sent = True
        if sent:
            self.server._last_reply = self.server._loop.time()
            self.pump.kick()  # sending may have consumed the socket's edge

    def on_wake(self) -> None:
        """The socket was looked at: send the held replies that have room now."""
        if self.held.waiting:
            before = self.held.count
            self.held.retry()
            if self.held.count < before:
                self.server._last_reply = self.server._loop.time()


class _Envelope(Caller):
    """One return address of a ``ROUTER``: the calls of one client (through any proxies)."""

    __slots__ = ("envelope", "key", "replies", "server")

    def __init__(self, server: FrameServer, replies: ReplyQueue, key: object, envelope: list[bytes]) -> None:
        super().__init__()
        self.server = server
        self.replies = replies
        self.key = key
        self.envelope = envelope

    def identify(self, parts: list[bytes]) -> None:
        """Take who sent ``parts`` (:class:`Received`: its Curve key and address) as this
        return address's peer, for the message's call."""
        if isinstance(parts, Received):
            self._peer = Peer("zmq", parts.address, curve_key=parts.user_id)

    def describe(self) -> Peer:
        """A ZeroMQ peer whose key is not known (the listener has no ``allow``)."""
        return Peer("zmq")

    def finished(self, request: bytes, reply: bytes | None) -> None:
        """Queue the reply of a call that continued in a task; it is no longer in flight."""
        server = self.server
        if reply is not None:
            self.replies.put([*self.envelope, reply], server.core.in_flight == 0)
        self.forget()
        if server._paused or server.waiting:
            server._resume()

    def forget(self) -> None:
        """Leave the table of return addresses once nothing of this one runs or waits."""
        if not self.in_flight and not self.queued and self.replies.callers.get(self.key) is self:
            del self.replies.callers[self.key]


class FrameServer:
    """Hands the frames of some sockets to a handler and sends the replies back.

    Args:
        handler: called with each frame; returns the reply frame or ``None``.
        max_in_flight: frames handled at once.
        max_frame: the largest frame received or sent; a larger reply is replaced by a
            ``RESOURCE_EXHAUSTED`` error frame (the client would be disconnected otherwise).
        reply_timeout: seconds a reply waits for room in the client's queue.
        max_held_bytes: bytes of replies on their way to all clients together (held for
            room, or large ones not yet written by libzmq; see :mod:`nanomsg_kernel.transports.zmq_held`).
        max_held_bytes_per_client: the same, for one client.
        allow: the identities that may call (Curve keys, which ZAP gives each message);
            anyone else is answered ``PERMISSION_DENIED``.
    """

    def __init__(self, handler: FrameHandler, *, max_in_flight: int, max_frame: int, reply_timeout: float,
                 max_held_bytes: int = DEFAULT_MAX_HELD_BYTES,
                 max_held_bytes_per_client: int = DEFAULT_MAX_HELD_BYTES_PER_CLIENT, allow: Allow | None = None) -> None:
        self.handler = handler
        self.core = ServerCore(handler, name="zmq", max_body_size=max_frame - HEADER_SIZE, allow=allow)
        self.identify = allow is not None
        """Whether each request's sender is read (its Curve key), for ``allow``."""
        """What serves the frames (as on every transport)."""
        self.max_in_flight = max_in_flight
        self.max_frame = max_frame
        self.reply_timeout = reply_timeout
        self.max_held_bytes = max_held_bytes
        self.max_held_bytes_per_client = max_held_bytes_per_client
        self.counters = Counters()
        """Replies dropped (see :attr:`dropped_replies`)."""
        self.pumps: list[SocketPump] = []
        self.replies: list[ReplyQueue] = []
        """The reply queue of each request socket."""
        self.waiting = Waiting()
        """Requests read while ``max_in_flight`` ran, waiting for a place (reading goes on
        until it is full, so that a ``CANCEL`` behind them is still read)."""
        self._event_pumps: list[SocketPump] = []
        self._event_ready: list[asyncio.Event] = []
        self._consumers: set[asyncio.Task[None]] = set()
        self.dropped_messages = 0
        """Messages that were not ``[envelope..., frame]`` and could not be answered."""
        self.refused_multipart = 0
        """Requests sent in several message parts, answered with ``BAD_REQUEST``."""
        self._paused = False
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._create_task = self._loop.create_task
        self._last_reply = -DRAIN_SECONDS

    @property
    def in_flight(self) -> int:
        """Frames being handled now."""
        return self.core.in_flight

    @property
    def peak_in_flight(self) -> int:
        """The most frames ever handled at once."""
        return self.core.peak_in_flight

    @property
    def dropped_replies(self) -> int:
        """Replies dropped: their client was gone, did not make room within
        ``reply_timeout``, or held too many bytes unread."""
        return self.counters.dropped_replies

    @property
    def dropped_reply_bytes(self) -> int:
        """The bytes of the replies counted in :attr:`dropped_replies`."""
        return self.counters.dropped_reply_bytes

    @property
    def held_replies(self) -> int:
        """Replies held now for clients that have no room for them."""
        return sum(r.held.count for r in self.replies)

    @property
    def held_bytes(self) -> int:
        """Bytes counted now against the clients (held replies, large replies not yet
        written by libzmq)."""
        return sum(r.held.bytes for r in self.replies)

    @property
    def peak_held_bytes(self) -> int:
        """The most bytes ever counted at once (per request socket, the largest)."""
        return max((r.held.peak_bytes for r in self.replies), default=0)

    def serve_requests(self, sock: zmq.Socket[Any]) -> None:
        """Serve a ``ROUTER`` (replies go back along each message's envelope)."""
        replies: ReplyQueue

        def on_message(parts: list[bytes]) -> None:
            n = len(parts)
            if n != 2:
                if not 2 < n <= MAX_ENVELOPE + 1:
                    self.dropped_messages += 1
                    return
                start = request_start(parts)
                if start < n - 1:
                    self._refuse_multipart(parts, start, replies)
                    return
            self._start(parts, replies)

        def after_batch() -> None:
            if replies.queued:
                replies.flush()

        def on_wake() -> None:
            if replies.held.waiting:
                replies.on_wake()

        # ROUTER_MANDATORY makes a full queue an error, yet POLLOUT stays set: held replies
        # are sent again when the socket's descriptor signals a change (see zmq_held).
        pump = SocketPump(sock, on_message, pollout_means_room=False, router=True, identify=self.identify,
                          batch=REQUEST_BATCH, after_batch=after_batch, on_wake=on_wake)
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
            if self.identify and not self._permitted(parts):
                return
            queue.append(parts[0])
            ready.set()
            if len(queue) >= self.max_in_flight:
                pump.pause()

        pump = SocketPump(sock, on_message, identify=self.identify)
        self._event_pumps.append(pump)
        task = self._create_task(self._consume(queue, ready, pump))
        self._consumers.add(task)
        task.add_done_callback(self._consumers.discard)

    async def _consume(self, queue: collections.deque[bytes], ready: asyncio.Event, pump: SocketPump) -> None:
        run_event = self.core.run_event
        while True:
            while queue:
                await run_event(queue.popleft())
                if not self._closing and len(queue) <= self.max_in_flight // 2:
                    pump.resume()
            if self._closing:
                return
            ready.clear()
            await ready.wait()

    def _permitted(self, parts: list[bytes]) -> bool:
        """Whether the sender of an event is allowed (else it is dropped, counted)."""
        core = self.core
        assert core.allow is not None
        if isinstance(parts, Received) and core.allow.permits(Peer("zmq", parts.address, curve_key=parts.user_id)):
            return True
        core.denied += 1
        return False

    def _refuse_multipart(self, parts: list[bytes], start: int, replies: ReplyQueue) -> None:
        """Answer a request sent in several parts with ``BAD_REQUEST`` (never serve it)."""
        answer = multipart_refusal(parts, start)
        if answer is None:
            self.dropped_messages += 1
            return
        self.refused_multipart += 1
        replies.put(answer, False)

    def _start(self, parts: list[bytes], replies: ReplyQueue) -> None:
        key: object = parts[0] if len(parts) == 2 else tuple(parts[:-1])
        callers = replies.callers
        caller = callers.get(key)
        if caller is None:
            caller = replies.idle
            if caller is None or caller.key != key:
                caller = _Envelope(self, replies, key, parts[:-1])
        if self.identify:
            caller.identify(parts)
        core = self.core
        waiting = self.waiting
        frame = parts[-1]
        if waiting.frames or core.in_flight >= self.max_in_flight or frame[3:4] == _CANCEL_KIND:
            reply = core.offer(frame, caller, waiting, core.in_flight < self.max_in_flight)
            if waiting.full:
                self._pause()
        else:  # the common case, without the checks of offer()
            reply = core.start(frame, caller)
        if reply is not None:
            parts[-1] = reply
            replies.put(parts, False, in_batch=True)
        if caller.in_flight or caller.queued:
            if key not in callers:
                callers[key] = caller  # a call runs or waits: a CANCEL may come for it
        else:
            replies.idle = caller

    def _start_waiting(self) -> None:
        """Start the requests that waited, while there is room (drop them once the grace
        period of a close ran out)."""
        waiting, core = self.waiting, self.core
        while waiting and (core.cancelling or core.in_flight < self.max_in_flight):
            frame, caller = waiting.pop()
            assert isinstance(caller, _Envelope)
            if not core.cancelling:
                reply = core.resume(frame, caller)
                if reply is not None:
                    caller.replies.put([*caller.envelope, reply], core.in_flight == 0)
            caller.forget()

    def _pause(self) -> None:
        self._paused = True
        for p in self.pumps:
            p.pause()

    def _resume(self) -> None:
        if self.waiting:
            self._start_waiting()
        if self._paused and not self._closing and not self.waiting.full:
            self._paused = False
            for p in self.pumps:
                p.resume()

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
        await self.core.close(grace)
        self._start_waiting()  # (drops what still waits)
        if self._consumers:
            _done, pending = await asyncio.wait(set(self._consumers), timeout=max(0.0, deadline - loop.time()))
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
        for replies in self.replies:
            replies.flush()
        for replies in self.replies:  # replies waiting for room, within the grace
            await replies.held.wait_empty(deadline)
        for replies in self.replies:
            replies.held.drop_all()
        drained = min(self._last_reply + DRAIN_SECONDS, deadline)
        if drained > loop.time():
            await asyncio.sleep(drained - loop.time())
        for p in (*self.pumps, *self._event_pumps):
            p.close()
