"""Start a coroutine at once, from a loop callback, and give it a task only if it suspends.

Most request handlers finish without ever waiting: they decode, compute, encode. Run in a
task of their own, each of them still costs a task object, a trip through the loop's ready
queue and a second loop iteration before its reply can leave. :func:`start_eagerly` runs
the coroutine's first step immediately instead, and creates a task for the rest only when
the coroutine actually suspends (Python 3.12's ``eager_start``, for a coroutine started
from a callback).

What the coroutine sees does not change:

* ``asyncio.current_task()`` is never ``None`` inside it. During the first step it returns
  a :class:`StartingTask`, which stands for the task the coroutine will get if it
  suspends: ``cancel()``, ``cancelling()`` and ``uncancel()`` reach that task once it
  exists, so ``asyncio.timeout()``, ``asyncio.TaskGroup`` and the services' deadlines
  work whether they are entered before or after the first suspension.
* It runs in a copy of the caller's :mod:`contextvars` context, as a task would; the task
  that takes over continues in that same copy.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["StartingTask", "adopt", "continuation", "first_step", "start_eagerly"]

_enter_task: Callable[[asyncio.AbstractEventLoop, Any], None] = asyncio.tasks._enter_task
_leave_task: Callable[[asyncio.AbstractEventLoop, Any], None] = asyncio.tasks._leave_task
_current_task: Callable[[asyncio.AbstractEventLoop], Any] = asyncio.current_task
_copy_context = contextvars.copy_context


class StartingTask:
    """What ``asyncio.current_task()`` returns during an eagerly started coroutine's first step.

    It forwards cancellation to the task that continues the coroutine once that exists; a
    cancellation asked for before then is applied to that task when it is created (the
    coroutine sees ``CancelledError`` at its first suspension, as in a task). If the
    coroutine finishes without suspending, no task is ever made and this object just
    reports itself done.
    """

    __slots__ = ("_cancel_msg", "_cancels", "_coro", "_done", "_loop", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> None:
        self._loop = loop
        self._coro = coro
        self._task: asyncio.Task[Any] | None = None
        self._cancels = 0
        self._cancel_msg: Any = None
        self._done = False

    @property
    def task(self) -> asyncio.Task[Any] | None:
        """The task that took over the coroutine (``None`` until it first suspended)."""
        return self._task

    def cancel(self, msg: Any = None) -> bool:
        """Cancel the coroutine (at its first suspension if it has not reached one yet)."""
        if self._task is not None:
            return self._task.cancel(msg)
        if self._done:
            return False
        self._cancels += 1
        self._cancel_msg = msg
        return True

    def cancelling(self) -> int:
        """How many cancellations are pending (as :meth:`asyncio.Task.cancelling`)."""
        return self._task.cancelling() if self._task is not None else self._cancels

    def uncancel(self) -> int:
        """Take back one pending cancellation (as :meth:`asyncio.Task.uncancel`)."""
        if self._task is not None:
            return self._task.uncancel()
        if self._cancels > 0:
            self._cancels -= 1
        return self._cancels

    def done(self) -> bool:
        """True once the coroutine finished (or its task did)."""
        return self._task.done() if self._task is not None else self._done

    def cancelled(self) -> bool:
        """True if the task that took over the coroutine was cancelled."""
        return self._task is not None and self._task.cancelled()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the coroutine runs on."""
        return self._loop

    def get_coro(self) -> Coroutine[Any, Any, Any]:
        """The coroutine."""
        return self._coro

    def get_name(self) -> str:
        """The task's name once it has one; a fixed name before."""
        return self._task.get_name() if self._task is not None else "eager-start"

    def __getattr__(self, name: str) -> Any:
        task = object.__getattribute__(self, "_task")
        if task is not None:
            return getattr(task, name)
        raise AttributeError(
            f"{name!r} is not available on an eagerly started coroutine before its first suspension"
        )

    def __repr__(self) -> str:
        state = "done" if self._done else "running" if self._task is None else repr(self._task)
        return f"<StartingTask {state}>"


class _Rest:
    """The rest of a coroutine whose first step ran outside a task, as the task's coroutine.

    The first ``send`` hands the task what the first step yielded (the future it waits
    for); after that, ``send`` and ``throw`` go straight to the coroutine. A class rather
    than a generator, so that a cancellation thrown in before the first ``send`` still
    reaches the coroutine.
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


def continuation(coro: Coroutine[Any, Any, Any], step: Any) -> Coroutine[Any, Any, Any]:
    """An awaitable for the rest of ``coro``, whose first step (run by hand) yielded ``step``."""
    return _Rest(coro, step)


def first_step(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], context: contextvars.Context,
) -> tuple[StartingTask, Any]:
    """Run ``coro``'s first step in ``context`` as :func:`start_eagerly` does, and return
    its :class:`StartingTask` and what the step yielded; the coroutine suspended there, and
    its task must be made (``continuation(coro, step)`` in ``context``) and given to
    :func:`adopt`.

    Raises:
        StopIteration: the coroutine finished in its first step (``.value`` is its result).
        BaseException: whatever else the first step raised.
    """
    starting = StartingTask(loop, coro)
    caller = _current_task(loop)
    if caller is not None:
        _leave_task(loop, caller)
    _enter_task(loop, starting)
    try:
        return starting, context.run(coro.send, None)
    except BaseException:
        starting._done = True
        raise
    finally:
        _leave_task(loop, starting)
        if caller is not None:
            _enter_task(loop, caller)


def adopt(starting: StartingTask, task: asyncio.Task[Any]) -> None:
    """Make ``task`` the one ``starting`` stood for (cancellations asked for already reach it)."""
    starting._task = task
    for _ in range(starting._cancels):
        task.cancel(starting._cancel_msg)


def start_eagerly(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any],
    name: str | None = None,
    on_task: Callable[[asyncio.Task[Any]], None] | None = None,
) -> asyncio.Task[Any] | None:
    """Run ``coro``'s first step now; return ``None`` if it finished, else its new task.

    Called from a callback of ``loop`` or from inside one of its tasks: for the duration of
    the step, ``current_task()`` is the coroutine's :class:`StartingTask`, and the caller's
    task (if any) is current again afterwards, as with a task of its own. An exception the
    first step raises propagates to the caller; the coroutine's return value is dropped
    (wrap the coroutine to keep it). ``on_task`` is called with the task, if one is made,
    before anything else can run.
    """
    context = _copy_context()
    try:
        starting, step = first_step(loop, coro, context)
    except StopIteration:
        return None
    task = loop.create_task(continuation(coro, step), name=name, context=context)
    if on_task is not None:
        on_task(task)
    adopt(starting, task)
    return task
