"""One peer of a server, as the server core sees it: a connection, or one return address."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Caller"]


class Caller:
    """One peer of a server, as the core sees it: a connection, or one return address.

    A transport subclasses it and implements :meth:`finished`. The core keeps in it the calls
    that continue in tasks (by correlation id, for ``CANCEL``) and how many of its calls are
    in flight (:attr:`in_flight`, for a per-connection limit).
    """

    __slots__ = ("by_id", "in_flight", "queued", "tasks")

    def __init__(self) -> None:
        self.in_flight = 0
        """Calls of this caller started and not yet finished."""
        self.queued = 0
        """Frames of this caller waiting for a place (in a :class:`Waiting`)."""
        self.by_id: dict[int, asyncio.Task[Any]] = {}
        """Requests running in a task, by correlation id."""
        self.tasks: set[asyncio.Task[Any]] = set()
        """Every call of this caller running in a task (requests and events)."""

    def finished(self, request: bytes, reply: bytes | None) -> None:
        """A call of this caller that continued in a task ended, with ``reply`` to send
        (``None``: nothing to send: an event, or a cancelled call). Called after the counts
        were lowered, so a transport can start reading again here."""
        raise NotImplementedError("The 'finished' method must be implemented.")
