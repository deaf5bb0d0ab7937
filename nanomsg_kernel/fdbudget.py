"""The process's file descriptors, shared out among its listeners.

A process holds at most ``RLIMIT_NOFILE`` (its soft limit) descriptors. Past it ``accept()``,
``socket()`` and ``open()`` all fail with ``EMFILE``: a listener that let a flood of idle
connections take every descriptor would stop the other listeners and the process's outgoing
calls with it (and asyncio's accept loop retries such a failure many times a second). So
every connection a listener accepts first takes a descriptor from one process-wide
:class:`DescriptorBudget`, and gives it back when it closes; when none is left, the
connection is closed at once. The budget never hands out the last descriptors:

* the **reserve**, ``max(64, limit // 8)``, stays for everything else: outgoing
  connections, ZeroMQ's own sockets and threads, files, logs, the listening sockets;
* the **capacity**, ``limit - reserve``, is what all listeners together may hold;
* a listener's **share**, ``min(1024, capacity // 2)``, is its default ``max_connections``,
  so a flood on one listener leaves at least as much to the others.

=====================  =======  ========  ======================================
soft ``RLIMIT_NOFILE``  reserve  capacity  a listener's default ``max_connections``
=====================  =======  ========  ======================================
256                    64       192       96
1024                   128      896       448
4096                   512      3584      1024
65536                  8192     57344     1024
=====================  =======  ========  ======================================

The limit is read when it is needed, so a process that raises its soft limit (``ulimit -n``,
:func:`resource.setrlimit`) before it creates its listeners gets the larger shares. Without
a limit (no :mod:`resource` module, or ``RLIM_INFINITY``) :data:`UNLIMITED` is assumed.

A listener of any transport uses it the same way::

    budget = process_budget()
    if budget.take():        # a descriptor for this connection
        ...                  # serve it; budget.give_back() when it is closed
    else:
        ...                  # close it now: the process is at its capacity
"""

from __future__ import annotations

import threading

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]

__all__ = [
    "MAX_SHARE",
    "MIN_RESERVE",
    "UNLIMITED",
    "DescriptorBudget",
    "descriptor_capacity",
    "descriptor_limit",
    "descriptor_reserve",
    "listener_share",
    "process_budget",
]

MIN_RESERVE = 64
"""The fewest descriptors the budget keeps back from listeners."""
MAX_SHARE = 1024
"""The largest default ``max_connections`` of one listener, however high the limit."""
UNLIMITED = 1 << 20
"""The limit assumed when the process has none (or it cannot be read)."""


def descriptor_limit() -> int:
    """The process's soft ``RLIMIT_NOFILE`` (:data:`UNLIMITED` if there is none)."""
    if resource is None:  # pragma: no cover - not on Windows
        return UNLIMITED
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0 or soft > UNLIMITED:
        return UNLIMITED
    return int(soft)


def descriptor_reserve(limit: int | None = None) -> int:
    """Descriptors kept back from listeners under ``limit`` (default: the process's)."""
    limit = descriptor_limit() if limit is None else limit
    return min(limit, max(MIN_RESERVE, limit // 8))


def descriptor_capacity(limit: int | None = None) -> int:
    """Descriptors all listeners together may hold under ``limit`` (default: the process's)."""
    limit = descriptor_limit() if limit is None else limit
    return limit - descriptor_reserve(limit)


def listener_share(limit: int | None = None) -> int:
    """One listener's default ``max_connections`` under ``limit`` (default: the process's):
    half the capacity, at most :data:`MAX_SHARE`, at least 1."""
    return max(1, min(MAX_SHARE, descriptor_capacity(limit) // 2))


class DescriptorBudget:
    """Descriptors held by accepted connections, against a capacity.

    Args:
        capacity: the most that may be held at once; ``None`` (the process's budget):
            :func:`descriptor_capacity` of the current limit, read at each :meth:`take`.

    Thread-safe: listeners on event loops in different threads may share one.
    """

    __slots__ = ("_capacity", "_lock", "held", "refused")

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is not None and (not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0):
            raise ValueError(f"capacity must be an int >= 0 or None, got {capacity!r}")
        self._capacity = capacity
        self._lock = threading.Lock()
        self.held = 0
        """Descriptors taken and not yet given back."""
        self.refused = 0
        """How many times :meth:`take` found none left."""

    def __repr__(self) -> str:
        return f"<DescriptorBudget held={self.held} capacity={self.capacity}>"

    @property
    def capacity(self) -> int:
        """The most descriptors that may be held at once."""
        return descriptor_capacity() if self._capacity is None else self._capacity

    @property
    def available(self) -> int:
        """Descriptors that may still be taken."""
        return max(0, self.capacity - self.held)

    def take(self) -> bool:
        """Take one descriptor for a new connection; ``False`` if none is left."""
        capacity = self.capacity
        with self._lock:
            if self.held >= capacity:
                self.refused += 1
                return False
            self.held += 1
            return True

    def give_back(self) -> None:
        """Give back a descriptor taken by :meth:`take` (its connection is closed)."""
        with self._lock:
            if self.held <= 0:
                raise RuntimeError("give_back() without a matching take()")
            self.held -= 1


_process_budget = DescriptorBudget()


def process_budget() -> DescriptorBudget:
    """The budget every listener of this process shares (unless given another)."""
    return _process_budget
