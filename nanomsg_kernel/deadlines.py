"""Deadline timers shared by many calls: one loop timer per few milliseconds of deadlines.

A timer of its own per call (``asyncio.timeout()``, or even a bare ``loop.call_at``) costs
about as much as the rest of a small call's work on the server. So calls whose deadlines
fall in the same :data:`GRAIN` join one :class:`Bucket`, which fires once, at the end of
its grain: a deadline is enforced up to :data:`GRAIN` late, never early. Timeouts shorter
than :data:`SHARED_MIN` get a bucket of their own, which fires exactly at the deadline.

Two kinds of wheel, one each per event loop:

* :func:`task_deadlines` — cancels the tasks of handlers still running at their deadline
  (what :meth:`Service.dispatch <nanomsg_kernel.service.Service.dispatch>` uses); the task
  learns that the cancellation was the deadline's from :attr:`Bucket.fired` and
  :meth:`asyncio.Task.uncancel`, as ``asyncio.timeout()`` does.
* :func:`reply_deadlines` — fails the futures of replies not received by their deadline
  with :class:`~nanomsg_kernel.errors.DeadlineExceeded` (what
  :class:`~nanomsg_kernel.transports.base.PendingReplies` uses).

A call adds itself to a bucket (``bucket[item] = value``) and removes itself when it ends
(``del bucket[item]``); an empty bucket's timer still fires, and finds nothing to do.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable
from typing import Any

from nanomsg_kernel.errors import DeadlineExceeded

__all__ = ["GRAIN", "SHARED_MIN", "Bucket", "DeadlineWheel", "reply_deadlines", "task_deadlines"]

GRAIN = 0.005
"""Deadlines in the same 5 ms share one timer (which fires at the end of the 5 ms)."""
SHARED_MIN = 0.05
"""Shorter timeouts get a timer of their own, exact to the loop's clock."""


class Bucket(dict[Any, Any]):
    """The calls that share one deadline timer: item (task or future) -> value."""

    __slots__ = ("fired", "shared", "when")

    def __init__(self, when: float = 0.0, shared: bool = True) -> None:
        super().__init__()
        self.fired = False
        """True once the timer fired (every item still in the bucket then was expired)."""
        self.when = when
        """The loop time at which the timer fires."""
        self.shared = shared
        """True for the bucket of a :data:`GRAIN` of deadlines (False: one exact deadline)."""

    def takes(self, deadline: float, timeout: float) -> bool:
        """True if a call due at ``deadline``, ``timeout`` seconds away, may join this bucket:
        the same as :meth:`DeadlineWheel.bucket` would give it (a shared bucket whose timer
        fires within :data:`GRAIN` after ``deadline``, never before). A caller that keeps the
        last bucket it used skips the wheel while its deadlines stay in the same grain.

        (A timer that already ran fired at or after ``when``, and a deadline at least
        :data:`SHARED_MIN` away from a time after that is past ``when``: such a bucket is
        never taken, even when it was empty and so never marked :attr:`fired`.)"""
        return (self.shared and timeout >= SHARED_MIN and not self.fired
                and self.when - GRAIN < deadline <= self.when)


Expire = Callable[[Bucket], None]


class DeadlineWheel:
    """Buckets of deadlines on one event loop, each expired by ``expire`` when its timer fires.

    Args:
        loop: the loop whose clock the deadlines are in (``loop.time()``); held weakly.
        expire: called once per bucket when it fires (after :attr:`Bucket.fired` is set).
    """

    __slots__ = ("_buckets", "_expire", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, expire: Expire) -> None:
        self._loop = weakref.ref(loop)
        self._expire = expire
        self._buckets: dict[int, Bucket] = {}

    def __len__(self) -> int:
        """Buckets whose timer has not fired yet."""
        return len(self._buckets)

    @property
    def waiting(self) -> int:
        """Calls in buckets whose timer has not fired yet."""
        return sum(len(b) for b in self._buckets.values())

    def bucket(self, deadline: float, timeout: float) -> Bucket:
        """The bucket that expires ``deadline`` (a ``loop.time()``, ``timeout`` seconds away)."""
        shared = timeout >= SHARED_MIN
        if shared:
            key = math.ceil(deadline / GRAIN)
            when = key * GRAIN
        else:
            key = -math.ceil(deadline * 1e6)  # the same microsecond: the same timer
            when = deadline
        found = self._buckets.get(key)
        if found is None:
            loop = self._loop()
            if loop is None:
                raise RuntimeError("the event loop of these deadlines is gone")
            found = self._buckets[key] = Bucket(when, shared)
            loop.call_at(when, self._fire, key)
        return found

    def _fire(self, key: int) -> None:
        bucket = self._buckets.pop(key, None)
        if bucket is not None and bucket:
            bucket.fired = True
            self._expire(bucket)


def _cancel_tasks(bucket: Bucket) -> None:
    for task in bucket.values():
        task.cancel()


def _fail_futures(bucket: Bucket) -> None:
    for fut, timeout in bucket.items():
        if not fut.done():
            fut.set_exception(DeadlineExceeded(f"no reply within {timeout:.3f}s"))


_Wheels = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DeadlineWheel]
_task_wheels: _Wheels = weakref.WeakKeyDictionary()
_reply_wheels: _Wheels = weakref.WeakKeyDictionary()
_last_task: tuple[asyncio.AbstractEventLoop | None, DeadlineWheel | None] = (None, None)
_last_reply: tuple[asyncio.AbstractEventLoop | None, DeadlineWheel | None] = (None, None)


def task_deadlines(loop: asyncio.AbstractEventLoop) -> DeadlineWheel:
    """The wheel of ``loop`` whose buckets cancel tasks (item: what the task awaits, one
    per call even when calls nest in one task; value: the task)."""
    global _last_task
    last_loop, wheel = _last_task
    if last_loop is not loop or wheel is None:
        wheel = _task_wheels.get(loop)
        if wheel is None:
            wheel = _task_wheels[loop] = DeadlineWheel(loop, _cancel_tasks)
        _last_task = (loop, wheel)
    return wheel


def reply_deadlines(loop: asyncio.AbstractEventLoop) -> DeadlineWheel:
    """The wheel of ``loop`` whose buckets fail their futures with ``DeadlineExceeded``
    (item: future, value: the timeout in seconds, for the message)."""
    global _last_reply
    last_loop, wheel = _last_reply
    if last_loop is not loop or wheel is None:
        wheel = _reply_wheels.get(loop)
        if wheel is None:
            wheel = _reply_wheels[loop] = DeadlineWheel(loop, _fail_futures)
        _last_reply = (loop, wheel)
    return wheel
