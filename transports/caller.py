"""One peer of a server, as the server core sees it: a connection, or one return address."""

from __future__ import annotations

import asyncio
from typing import Any

from nanomsg_kernel.peer import UNKNOWN_PEER, Peer

__all__ = ["Caller"]


class Caller:
    """One peer of a server, as the core sees it: a connection, or one return address.

    A transport subclasses it and implements :meth:`finished`, and :meth:`describe` when it
    knows who the peer is. The core keeps in it the calls that continue in tasks (by
    correlation id, for ``CANCEL``) and how many of its calls are in flight
    (:attr:`in_flight`, for a per-connection limit).
    """

    __slots__ = ("_peer", "by_id", "in_flight", "queued", "tasks")

    def __init__(self) -> None:
        self.in_flight = 0
        """Calls of this caller started and not yet finished."""
        self.queued = 0
        """Frames of this caller waiting for a place (in a :class:`Waiting`)."""
        self.by_id: dict[int, asyncio.Task[Any]] = {}
        """Requests running in a task, by correlation id."""
        self.tasks: set[asyncio.Task[Any]] = set()
        """Every call of this caller running in a task (requests and events)."""
        self._peer: Peer | None = None

    def peer(self) -> Peer:
        """Who this caller is (:meth:`describe`, asked once): what handlers read as
        ``ctx.peer`` and a listener's ``allow`` list is checked against."""
        peer = self._peer
        if peer is None:
            peer = self._peer = self.describe()
        return peer

    def describe(self) -> Peer:
        """Who this caller is, as far as the transport knows (its address, TLS certificate,
        Curve key); by default nothing is known."""
        return UNKNOWN_PEER

    def finished(self, request: bytes, reply: bytes | None) -> None:
        """A call of this caller that continued in a task ended, with ``reply`` to send
        (``None``: nothing to send: an event, or a cancelled call). Called after the counts
        were lowered, so a transport can start reading again here."""
        raise NotImplementedError("The 'finished' method must be implemented.")
