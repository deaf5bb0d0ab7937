"""Rate-limited logging for what a peer can cause: one line per interval, with a count.

A peer can make a server log as often as it can send: undecodable events, refused frames,
dropped replies, refused connections. Each such site logs through a
:class:`RateLimitedLogger`, which lets the first record of a kind through at once and
counts the next ones; when the interval ends, one line says what the last one was and how
many were suppressed. A flood of any size thus writes one line per interval per kind::

    log = rate_limited("nanomsg_kernel.transports.tcp")
    log.warning("%s: refused a frame (%s); closing the connection", name, exc)

    ... refused a frame (bad magic); closing the connection
    ... refused a frame (bad magic); closing the connection [+4999 suppressed in 10.0s]

A *kind* is the message's format string (never its arguments), so the limiter's memory is
bounded by the number of logging sites, whatever the peers send. The summary line of an
interval is written when the interval ends (by a timer on the running event loop) or, off
the loop, with the next record of its kind. Each record of a summary line carries the count
as ``record.suppressed`` (0 on a first line), for structured logs.

Where several kinds of log lines share a logger, they are limited separately.
:data:`DEFAULT_INTERVAL` is the interval of every limiter made by :func:`rate_limited`; set
a limiter's :attr:`RateLimitedLogger.interval` to change it (``0`` lets every record through).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["DEFAULT_INTERVAL", "RateLimitedLogger", "limiters", "rate_limited"]

DEFAULT_INTERVAL = 10.0
"""Seconds between two lines of the same kind (what :func:`rate_limited` gives a limiter)."""


class _Kind:
    """What a limiter knows about one kind of line: its window and what it suppressed."""

    __slots__ = ("armed", "last", "level", "suppressed", "window_end", "window_start")

    def __init__(self, now: float, interval: float, level: int) -> None:
        self.window_start = now
        self.window_end = now + interval
        self.suppressed = 0
        self.level = level
        self.last: tuple[tuple[Any, ...], Mapping[str, Any] | None] = ((), None)
        self.armed = False


class RateLimitedLogger:
    """A logger's peer-triggered lines, limited to one per :attr:`interval` per kind.

    Args:
        logger: the logger to write to.
        interval: seconds between two lines of the same kind (``0``: no limit).
        clock: a monotonic clock in seconds (the event loop's timer is armed by its delay).
    """

    def __init__(
        self, logger: logging.Logger, interval: float = DEFAULT_INTERVAL, *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        """Seconds between two lines of the same kind; ``0`` lets every line through."""
        self._clock = clock
        self._kinds: dict[str, _Kind] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RateLimitedLogger {self.logger.name!r} every {self.interval:g}s>"

    def suppressed(self, msg: str) -> int:
        """Lines of kind ``msg`` (a format string) suppressed since its last line."""
        kind = self._kinds.get(msg)
        return 0 if kind is None else kind.suppressed

    def debug(self, msg: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        """Log at ``DEBUG`` (rate-limited)."""
        self.log(logging.DEBUG, msg, *args, extra=extra)

    def info(self, msg: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        """Log at ``INFO`` (rate-limited)."""
        self.log(logging.INFO, msg, *args, extra=extra)

    def warning(self, msg: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        """Log at ``WARNING`` (rate-limited)."""
        self.log(logging.WARNING, msg, *args, extra=extra)

    def error(self, msg: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        """Log at ``ERROR`` (rate-limited)."""
        self.log(logging.ERROR, msg, *args, extra=extra)

    def log(self, level: int, msg: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        """Log ``msg % args`` unless a line of this kind (``msg``) was written less than
        :attr:`interval` ago; then count it, for the interval's summary line."""
        if not self.logger.isEnabledFor(level):
            return
        now = self._clock()
        with self._lock:
            kind = self._kinds.get(msg)
            if kind is not None and now < kind.window_end:
                kind.suppressed += 1
                kind.level = max(kind.level, level)
                kind.last = (args, extra)
                if kind.armed:
                    return
                kind.armed = True
                delay = kind.window_end - now
                count = -1
            else:
                count, since = (0, now) if kind is None else (kind.suppressed, kind.window_start)
                self._kinds[msg] = _Kind(now, self.interval, level)
        if count < 0:
            self._arm(msg, delay)
        else:
            self._write(level, msg, args, extra, count, now - since)

    def reset(self) -> None:
        """Forget every kind: the next line of each is written at once (nothing pending is)."""
        with self._lock:
            self._kinds.clear()

    def flush(self) -> None:
        """Write the summary line of every kind with suppressed lines now."""
        for msg in list(self._kinds):
            self._summary(msg)

    def _arm(self, msg: str, delay: float) -> None:
        """Write ``msg``'s summary when its interval ends, if an event loop runs here."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            kind = self._kinds.get(msg)
            if kind is not None:
                kind.armed = False  # the next record of the kind writes the summary
            return
        loop.call_later(max(0.0, delay), self._summary, msg)

    def _summary(self, msg: str) -> None:
        """Write ``msg``'s summary line, if it suppressed any, and start a new interval."""
        now = self._clock()
        with self._lock:
            kind = self._kinds.get(msg)
            if kind is None:
                return
            kind.armed = False
            if not kind.suppressed:
                return
            count, level, (args, extra), since = kind.suppressed, kind.level, kind.last, kind.window_start
            self._kinds[msg] = _Kind(now, self.interval, level)
        self._write(level, msg, args, extra, count, now - since)

    def _write(
        self, level: int, msg: str, args: tuple[Any, ...], extra: Mapping[str, Any] | None, count: int,
        span: float,
    ) -> None:
        fields = {**(extra or {}), "suppressed": count}
        if count:
            msg = f"{msg} [+{count} suppressed in {span:.1f}s]"
        self.logger.log(level, msg, *args, extra=fields)


_LIMITERS: dict[str, RateLimitedLogger] = {}
_LIMITERS_LOCK = threading.Lock()


def rate_limited(logger: logging.Logger | str) -> RateLimitedLogger:
    """The :class:`RateLimitedLogger` of ``logger`` (a logger or its name): one per logger
    name, made on first use with :data:`DEFAULT_INTERVAL`."""
    name = logger if isinstance(logger, str) else logger.name
    with _LIMITERS_LOCK:
        found = _LIMITERS.get(name)
        if found is None:
            found = _LIMITERS[name] = RateLimitedLogger(
                logger if isinstance(logger, logging.Logger) else logging.getLogger(name)
            )
    return found


def limiters() -> list[RateLimitedLogger]:
    """Every limiter :func:`rate_limited` made so far (e.g. to ``reset()`` them between tests)."""
    with _LIMITERS_LOCK:
        return list(_LIMITERS.values())
