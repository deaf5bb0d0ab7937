"""Warnings a peer can trigger, logged at most once per interval with a count.

A client that does not read, or a flood of connections, can make a server drop thousands of
replies or refuse thousands of peers a second; one log line each would let the peer fill the
disk and slow the server. :class:`RateLimitedLog` writes the first occurrence at once and
then at most one line per ``interval`` seconds, saying how many occurred since the last line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Log one kind of warning at most once per ``interval`` seconds, with a count.

    Args:
        log: the logger to write to.
        what: the warning's text (``%``-free); the count is appended.
        interval: seconds between two lines.
        clock: the time source (monotonic seconds).
    """

    __slots__ = ("_clock", "_interval", "_last", "_log", "_pending", "_what", "total")

    def __init__(self, log: logging.Logger, what: str, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._what = what
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self._pending = 0
        self.total = 0
        """Occurrences so far (logged or not)."""

    def __call__(self, detail: str = "") -> None:
        """Count one occurrence; log it (with those not logged yet) unless a line was
        written less than ``interval`` seconds ago."""
        self.total += 1
        self._pending += 1
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            return
        count, self._pending, self._last = self._pending, 0, now
        suffix = f": {detail}" if detail else ""
        if count == 1:
            self._log.warning("%s%s", self._what, suffix)
        else:
            self._log.warning("%s (%d times since the last report)%s", self._what, count, suffix)
