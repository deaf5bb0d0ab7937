"""The serving loop shared by a listener and by each worker process.

Requests arrive on a ``ROUTER`` as ``[routing envelope..., frame]``: the envelope is one
identity from a client's ``DEALER``, or more when a proxy sits in between, and it goes back
unchanged in front of the reply. Each request is handed to the
:data:`~transports.base.FrameHandler` in its own task; at most ``max_in_flight`` run at
once, and while that many do, the socket is not read, so ZeroMQ's queues fill up to their
high-water marks and senders wait (backpressure rather than unbounded memory).

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

from nanomsg_kernel.codec import encode_error_body
from nanomsg_kernel.errors import Status
from nanomsg_kernel.frame import HEADER_SIZE, HEADER_STRUCT, MAGIC, Kind, pack_header
from transports.base import FrameHandler
from transports.zmq_socket import SocketPump

__all__ = ["DRAIN_SECONDS", "FrameServer", "error_frame"]

log = logging.getLogger("nanomsg_kernel.transports.zmq")
_current_task = asyncio.current_task

DRAIN_SECONDS = 0.2
"""How long a closing server keeps its connections after its last replies went out."""

MAX_ENVELOPE = 16
"""Most routing-envelope parts accepted in front of a frame (more: the message is dropped)."""


def error_frame(status: Status, message: str, request: bytes) -> bytes | None:
    """An error frame answering ``request`` (None if it has no readable header)."""
    if len(request) < HEADER_SIZE or request[:2] != MAGIC:
        return None
    fields = HEADER_STRUCT.unpack_from(request)
    body = encode_error_body(status, message)
    return pack_header(Kind.ERROR, fields[3], 0, fields[6], 0, len(body)) + body


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
        self.max_in_flight = max_in_flight
        self.max_frame = max_frame
        self.reply_timeout = reply_timeout
        self.pumps: list[SocketPump] = []
        self._event_pumps: list[SocketPump] = []
        self._event_ready: list[asyncio.Event] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        self.peak_in_flight = 0
        """The most frames ever handled at once."""
        self.dropped_messages = 0
        """Messages that were not ``[envelope..., frame]``."""
        self.dropped_replies = 0
        """Replies whose client was gone or did not make room in time."""
        self._paused = False
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._create_task = self._loop.create_task
        self._last_reply = -DRAIN_SECONDS

    def serve_requests(self, sock: zmq.Socket[Any]) -> None:
        """Serve a ``ROUTER`` (replies go back along each message's envelope)."""
        pump: SocketPump

        def on_message(parts: list[bytes]) -> None:
            if not 2 <= len(parts) <= MAX_ENVELOPE + 1:
                self.dropped_messages += 1
                return
            self._start(parts, pump)

        # ROUTER_MANDATORY makes a full queue an error, yet POLLOUT stays set.
        pump = SocketPump(sock, on_message, pollout_means_room=False)
        self.pumps.append(pump)

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
                if not self._closing and len(queue) < self.max_in_flight // 2:
                    pump.resume()
            if self._closing:
                return
            ready.clear()
            await ready.wait()

    def _start(self, parts: list[bytes], pump: SocketPump) -> None:
        # The task removes itself from ``tasks`` when it ends (cheaper than a done callback).
        self.tasks.add(self._create_task(self._serve(parts, pump)))
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        if self.in_flight >= self.max_in_flight:
            self._pause()

    def _pause(self) -> None:
        self._paused = True
        for p in self.pumps:
            p.pause()

    async def _serve(self, parts: list[bytes], pump: SocketPump) -> None:
        try:
            frame = parts[-1]
            try:
                reply = await self.handler(frame)
            except Exception:
                log.exception("frame handler failed")
                reply = error_frame(Status.INTERNAL, "frame handler failed", frame)
            if reply is None:
                return
            if len(reply) > self.max_frame:
                reply = error_frame(
                    Status.RESOURCE_EXHAUSTED,
                    f"reply of {len(reply)} bytes exceeds the maximum frame of {self.max_frame} bytes",
                    frame,
                )
                if reply is None:
                    return
            parts[-1] = reply
            try:
                if not pump.try_send(parts) and not await pump.send(
                    parts, self._loop.time() + self.reply_timeout
                ):
                    self.dropped_replies += 1
                    log.warning("dropped a reply: the client did not make room for %.1fs", self.reply_timeout)
                    return
                self._last_reply = self._loop.time()
            except zmq.ZMQError as exc:
                # EHOSTUNREACH: the client went away; ETERM/ENOTSOCK: closing.
                self.dropped_replies += 1
                if exc.errno != zmq.EHOSTUNREACH and not self._closing:
                    log.warning("could not send a reply: %s", exc)
        finally:
            self.tasks.discard(_current_task())
            self.in_flight -= 1
            if self._paused and self.in_flight < self.max_in_flight and not self._closing:
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
        if self.tasks:
            _done, pending = await asyncio.wait(set(self.tasks), timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
        drained = min(self._last_reply + DRAIN_SECONDS, deadline)
        if drained > loop.time():
            await asyncio.sleep(drained - loop.time())
        for p in (*self.pumps, *self._event_pumps):
            p.close()
