"""Replies on their way to clients that read slowly or not at all: bounded in bytes.

A ``ROUTER`` queues at most ``hwm`` messages for each client, whatever their size, and
nothing tells the server when a client has read them. What a client that does not read can
make the server keep is bounded here, in bytes:

* a reply of :data:`TRACK_FROM` bytes or more is handed to ZeroMQ without a copy and
  *tracked*: its bytes count against its client until libzmq has written it to the kernel;
* a reply ZeroMQ has no room for (``EAGAIN``: the client's queue is at its high-water mark)
  is *held* here; it counts its size plus :data:`HELD_OVERHEAD` until it is sent or dropped;
* one client may have ``per_client`` bytes counted, all of them together ``total``. A reply
  that would go over either is dropped at once, unless its client has nothing counted (so
  one reply of any size the listener allows always gets through). A dropped reply is counted
  (``dropped_replies``, ``dropped_reply_bytes``) and logged through
  :func:`~nanomsg_kernel.ratelimit.rate_limited` (one line per interval, with a count); its
  caller meets its deadline.

Smaller replies that ZeroMQ took are bounded by the high-water mark: at most ``hwm`` of them,
each under :data:`TRACK_FROM` bytes, per client.

Held replies are sent when the socket signals a change (libzmq wakes the socket's descriptor
when a client's queue drains: :meth:`HeldReplies.retry` runs on every wake-up of the socket's
:class:`~nanomsg_kernel.transports.zmq_socket.SocketPump`) and, as a safety net for a signal consumed by
another operation on the socket, every :data:`RECHECK` seconds while any are held: one send
attempt per waiting client, not a timer per reply. A held reply is dropped after
``reply_timeout`` seconds; a client that went away (``EHOSTUNREACH``) loses its held replies
at once. Replies are matched by correlation id, so a later reply may overtake a held one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

import zmq

from nanomsg_kernel.ratelimit import rate_limited
from nanomsg_kernel.transports.zmq_socket import SocketPump, raw_send

__all__ = ["HELD_OVERHEAD", "RECHECK", "TRACK_FROM", "HeldReplies"]

log = logging.getLogger("nanomsg_kernel.transports.zmq")
peer_log = rate_limited(log)
"""For what a client can cause: one line per interval and kind, with a count."""

TRACK_FROM = 64 * 1024
"""Replies this large or larger are sent without a copy and counted until libzmq has written
them (pyzmq's own threshold for sending without a copy)."""

HELD_OVERHEAD = 256
"""Bytes a held reply costs besides its own (its list, tuple and envelope objects)."""

RECHECK = 0.1
"""Seconds between two looks at held replies when the socket signals nothing."""

_NB = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_Again = zmq.Again
_ZMQError = zmq.ZMQError
_EHOSTUNREACH = zmq.EHOSTUNREACH

Key = Any
"""A client's routing envelope: its routing id, or the tuple of envelope parts."""


def client_key(parts: list[bytes]) -> Key:
    """The client a reply ``[envelope..., reply]`` goes to."""
    return parts[0] if len(parts) == 2 else tuple(parts[:-1])


class _Client:
    """What is counted against one client."""

    __slots__ = ("bytes", "held", "tracked")

    def __init__(self) -> None:
        self.bytes = 0
        self.held: collections.deque[tuple[list[bytes], float, int]] = collections.deque()
        """Replies waiting for room: parts, loop time to drop at, bytes counted."""
        self.tracked: collections.deque[tuple[zmq.MessageTracker, int]] = collections.deque()
        """Large replies ZeroMQ took and has not written yet, oldest first."""

    def prune(self) -> int:
        """Forget the tracked replies libzmq has written; the bytes freed."""
        freed = 0
        tracked = self.tracked
        while tracked and tracked[0][0].done:
            freed += tracked.popleft()[1]
        self.bytes -= freed
        return freed


class Counters:
    """Replies dropped by one server (shared by its sockets)."""

    __slots__ = ("dropped_replies", "dropped_reply_bytes")

    def __init__(self) -> None:
        self.dropped_replies = 0
        self.dropped_reply_bytes = 0


class HeldReplies:
    """The replies on their way to the clients of one ``ROUTER``, bounded in bytes.

    Args:
        pump: the socket's pump (whose wake-ups call :meth:`retry`).
        counters: where drops are counted.
        per_client: bytes one client may have counted.
        total: bytes all clients together may have counted.
        reply_timeout: seconds a reply may wait for room.
    """

    def __init__(self, pump: SocketPump, counters: Counters, *, per_client: int, total: int,
                 reply_timeout: float) -> None:
        self.pump = pump
        self.counters = counters
        self.per_client = per_client
        self.total = total
        self.reply_timeout = reply_timeout
        self.clients: dict[Key, _Client] = {}
        self.waiting: dict[Key, _Client] = {}
        """The clients with held replies."""
        self.bytes = 0
        """Bytes counted now, over every client."""
        self.peak_bytes = 0
        """The most bytes ever counted at once."""
        self.count = 0
        """Replies held now."""
        self._timer: asyncio.TimerHandle | None = None
        self._empty: asyncio.Future[None] | None = None
        self._loop = pump.loop

    # -- sending --------------------------------------------------------------------------

    def send_large(self, parts: list[bytes]) -> bool | None:
        """Send a reply of :data:`TRACK_FROM` bytes or more, tracked.

        True if ZeroMQ took it, False if it is held, None if it was dropped."""
        key = client_key(parts)
        client = self.clients.get(key)
        if client is not None and client.tracked:
            self.bytes -= client.prune()
        size = len(parts[-1])
        if client is not None and client.held:  # the queue is full: no use trying
            return self.hold(parts, key)
        if not self._admit(client, size + HELD_OVERHEAD):  # (what it costs if it is held)
            self._drop_over_budget(size)
            return None
        done = self._send_tracked(parts, key, client)
        if done is False:
            return self.hold(parts, key, admitted=True)
        return done

    def _send_tracked(self, parts: list[bytes], key: Key, client: _Client | None, held_cost: int = 0) -> bool | None:
        """Send a large reply without a copy and count it until libzmq has written it;
        ``held_cost``: what it was counted for while held (now replaced)."""
        sock = self.pump.sock
        try:
            for part in parts[:-1]:
                raw_send(sock, part, _MORE)
            tracker = raw_send(sock, parts[-1], _NB, False, True)
        except _Again:
            return False
        except _ZMQError as exc:
            self.gone(parts, exc)
            return None
        if client is None:
            client = self.clients[key] = _Client()
        size = len(parts[-1])
        client.tracked.append((tracker, size))
        if held_cost:
            client.held.popleft()
            self.count -= 1
        client.bytes += size - held_cost
        self._add(size - held_cost)
        return True

    def hold(self, parts: list[bytes], key: Key | None = None, *, admitted: bool = False) -> bool | None:
        """Keep a reply ZeroMQ had no room for: False (held), or None if over the budget
        (dropped and counted)."""
        if key is None:
            key = client_key(parts)
        client = self.clients.get(key)
        cost = len(parts[-1]) + HELD_OVERHEAD
        if not admitted and not self._admit(client, cost):
            self._drop_over_budget(len(parts[-1]))
            return None
        if client is None:
            client = self.clients[key] = _Client()
        client.held.append((parts, self._loop.time() + self.reply_timeout, cost))
        client.bytes += cost
        self.waiting[key] = client
        self.count += 1
        self._add(cost)
        if self._timer is None:
            self._timer = self._loop.call_later(min(RECHECK, self.reply_timeout), self._on_timer)
        return False

    def gone(self, parts: list[bytes], exc: zmq.ZMQError) -> None:
        """A reply ZeroMQ refused for another reason than room: counted as dropped."""
        self.counters.dropped_replies += 1
        self.counters.dropped_reply_bytes += len(parts[-1])
        if exc.errno != _EHOSTUNREACH and exc.errno not in (zmq.ETERM, zmq.ENOTSOCK):
            peer_log.warning("could not send a reply: %s", exc)

    def _admit(self, client: _Client | None, cost: int) -> bool:
        if client is None or client.bytes == 0:
            return True
        if client.bytes + cost > self.per_client:
            return False
        if self.bytes + cost > self.total:
            self._prune_all()
            return self.bytes + cost <= self.total
        return True

    def _add(self, cost: int) -> None:
        self.bytes += cost
        if self.bytes > self.peak_bytes:
            self.peak_bytes = self.bytes

    def _count_drop(self, size: int) -> None:
        self.counters.dropped_replies += 1
        self.counters.dropped_reply_bytes += size

    def _drop_over_budget(self, size: int) -> None:
        self._count_drop(size)
        peer_log.warning(
            "dropped a reply of %d bytes: its client holds too many bytes unread (%d bytes counted now; "
            "limits: %d per client, %d in all; %d replies dropped so far)",
            size, self.bytes, self.per_client, self.total, self.counters.dropped_replies,
        )

    def _prune_all(self) -> None:
        for key, client in list(self.clients.items()):
            if client.tracked:
                self.bytes -= client.prune()
            if not client.tracked and not client.held:
                del self.clients[key]

    # -- retrying -------------------------------------------------------------------------

    def retry(self) -> None:
        """Send the held replies ZeroMQ has room for now; drop those whose time is up."""
        if not self.waiting:
            return
        now = self._loop.time()
        sent = failed = False
        for key, client in list(self.waiting.items()):
            held = client.held
            while held:
                parts, _drop_at, cost = held[0]
                if len(parts[-1]) >= TRACK_FROM:
                    done = self._send_tracked(parts, key, client, cost)  # (takes it off ``held``)
                    if done:
                        sent = True
                        continue
                else:
                    done = self._resend(parts)
                if done is False:
                    failed = True
                    while held and held[0][1] <= now:  # oldest first: their time is up
                        late, _drop_at, late_cost = held.popleft()
                        self._forget(client, late_cost)
                        self._count_drop(len(late[-1]))
                        peer_log.warning("dropped a reply: the client did not make room for %gs", self.reply_timeout)
                    break
                held.popleft()
                self._forget(client, cost)
                sent = sent or bool(done)
            if not held:
                del self.waiting[key]
                if not client.tracked:
                    self.clients.pop(key, None)
        if sent:
            self.pump.kick()
        if failed:
            self.pump.recheck()
        if not self.waiting and self._empty is not None and not self._empty.done():
            self._empty.set_result(None)

    def _resend(self, parts: list[bytes]) -> bool | None:
        sock = self.pump.sock
        try:
            for part in parts[:-1]:
                raw_send(sock, part, _MORE)
            raw_send(sock, parts[-1], _NB)
        except _Again:
            return False
        except _ZMQError as exc:
            self.gone(parts, exc)
            return None
        return True

    def _forget(self, client: _Client, cost: int) -> None:
        client.bytes -= cost
        self.bytes -= cost
        self.count -= 1

    def _on_timer(self) -> None:
        self._timer = None
        self.retry()
        if self.waiting:
            now = self._loop.time()
            first = min(client.held[0][1] for client in self.waiting.values())
            self._timer = self._loop.call_later(max(0.0, min(RECHECK, first - now)), self._on_timer)

    async def wait_empty(self, deadline: float) -> None:
        """Wait until no reply is held, or until ``deadline`` (loop time)."""
        if not self.waiting:
            return
        if self._empty is None or self._empty.done():
            self._empty = self._loop.create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._empty), max(0.0, deadline - self._loop.time()))

    def drop_all(self) -> None:
        """Give up on every held reply (counted as dropped)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for client in self.waiting.values():
            while client.held:
                parts, _drop_at, cost = client.held.popleft()
                self._forget(client, cost)
                self.counters.dropped_replies += 1
                self.counters.dropped_reply_bytes += len(parts[-1])
        self.waiting.clear()
