"""Start a handler in a real asyncio task: an eager one where the interpreter has them.

A handler always runs in an :class:`asyncio.Task`, so everything that asks for the current
task works in it as anywhere else: ``asyncio.timeout()``, ``asyncio.TaskGroup``, anyio's
cancel scopes (and so httpx), weak references to the task, ``add_done_callback``.

* Python 3.12 and later: :func:`start_task` makes the task with ``eager_start=True``. The
  coroutine's first step runs at once, in the task, from the caller's step; a handler that
  does not wait (most do not) has finished when :func:`start_task` returns, and its reply
  leaves with no trip through the loop's ready queue.
* Python 3.11: a plain task, whose first step runs at the next loop iteration.

:data:`EAGER` tells which. No private asyncio name is used.

:func:`continuation` lets a coroutine that already runs in its task step another coroutine
by hand and then await the rest of it: a service uses it to run a handler's first step
before arming the request's deadline, which a handler that does not wait never needs.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["EAGER", "continuation", "start_task"]

T = TypeVar("T")

EAGER = sys.version_info >= (3, 12)
"""Whether :func:`start_task` starts tasks eagerly (``asyncio.Task(..., eager_start=True)``)."""


def start_task(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, T],
    *,
    name: str | None = None,
    context: contextvars.Context | None = None,
    eager: bool = True,
) -> asyncio.Task[T]:
    """A task running ``coro`` on ``loop``, started eagerly when ``eager`` and :data:`EAGER`.

    An eager task runs the coroutine's first step before this returns (from a loop callback
    or from inside another task alike); if the coroutine did not wait, the task is already
    done. Either way the task is a real :class:`asyncio.Task`: the coroutine sees it as
    ``asyncio.current_task()``, in a copy of the caller's context (or ``context``).
    """
    if sys.version_info >= (3, 12):
        if eager:
            return asyncio.Task(coro, loop=loop, name=name, context=context, eager_start=True)
    return loop.create_task(coro, name=name, context=context)


class _Rest:
    """The rest of a coroutine whose first step ran by hand, as an awaitable.

    The first ``send`` hands the awaiting task what the first step yielded (the future the
    coroutine waits for); after that, ``send`` and ``throw`` go straight to the coroutine. A
    class rather than a generator, so that a cancellation thrown in before the first ``send``
    still reaches the coroutine.
    """

    __slots__ = ("_coro", "_first", "_step")

    def __init__(self, coro: Coroutine[Any, Any, Any], step: Any) -> None:
        self._coro = coro
        self._step = step
        self._first = True

    def send(self, value: Any) -> Any:
        if self._first:
            self._first = False
            step, self._step = self._step, None
            return step
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._first = False
        self._step = None
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # pragma: no cover - the old three-argument form

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, Any, Any]:
        return self

    def __iter__(self) -> _Rest:
        return self

    def __next__(self) -> Any:
        return self.send(None)


Coroutine.register(_Rest)


def continuation(coro: Coroutine[Any, Any, T], step: Any) -> Coroutine[Any, Any, T]:
    """An awaitable for the rest of ``coro``, whose first step (``coro.send(None)``, run by
    hand inside the task that awaits the result) yielded ``step``."""
    return _Rest(coro, step)
