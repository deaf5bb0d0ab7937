"""Threads for sync handlers: a bounded pool per service, closed without waiting forever.

A sync handler (a ``def``, not an ``async def``, registered without ``inline=True``) runs in
a thread of its own service's pool, never in the event loop's default executor: slow sync
handlers of one service then queue behind each other, and never starve another service's
handlers (or the loop's own uses of its default executor, such as ``getaddrinfo``).

Inside such a thread the handler's :class:`~nanomsg_kernel.context.Context` works as it
does on the loop: ``ctx.time_left()`` reads the loop's clock, ``ctx.logger`` logs, and
``ctx.bindings.NAME.call_sync(msg)`` calls a bound service through the loop
(:func:`handler_loop` tells them which loop that is).

Closing (:meth:`HandlerThreads.close`, done by :meth:`Service.close
<nanomsg_kernel.service.Service.close>` and :meth:`Node.close
<nanomsg_kernel.node.Node.close>`) cancels the calls still queued, waits at most ``grace``
seconds for those running, and returns: a thread cannot be interrupted, so a handler still
running then finishes on its own (it is logged), and the process's exit waits for it, as
for any thread. A handler that may run long should watch ``ctx.time_left()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from nanomsg_kernel.errors import ConfigError, ServiceError, Status

__all__ = ["DEFAULT_MAX_WORKERS", "HandlerThreads", "handler_loop"]

DEFAULT_MAX_WORKERS = min(32, (os.cpu_count() or 1) + 4)
"""Threads per service for its sync handlers unless the service says otherwise (the
standard library's default for a thread pool: the CPUs plus 4, at most 32)."""

_local = threading.local()
log = logging.getLogger("nanomsg_kernel.service")


def handler_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop whose call this thread is running a sync handler for, else ``None``
    (on the loop itself, and in threads that are not running a sync handler)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    return loop


def _in_thread(
    loop: asyncio.AbstractEventLoop, context: contextvars.Context, fn: Callable[..., Any], args: tuple[Any, ...]
) -> Any:
    _local.loop = loop
    try:
        return context.run(fn, *args)
    finally:
        _local.loop = None


def _cancel(done: concurrent.futures.Future[Any], result: asyncio.Future[Any]) -> None:
    if result.cancelled():
        done.cancel()  # only a call not started yet stops


def _settle(name: str, result: asyncio.Future[Any], done: concurrent.futures.Future[Any]) -> None:
    if result.done():
        return
    if done.cancelled():
        result.set_exception(ServiceError(Status.UNAVAILABLE, f"service {name} is closing"))
        return
    exc = done.exception()
    if exc is None:
        result.set_result(done.result())
    else:
        result.set_exception(exc)


class HandlerThreads:
    """The thread pool of one service's sync handlers (made on first use).

    Args:
        name: the service's name (the threads are named after it).
        max_workers: threads at most; further calls wait for one (default
            :data:`DEFAULT_MAX_WORKERS`).
    """

    def __init__(self, name: str, max_workers: int | None = None) -> None:
        if max_workers is None:
            max_workers = DEFAULT_MAX_WORKERS
        if type(max_workers) is not int or max_workers < 1:
            raise ConfigError(f"max_workers must be a positive int, got {max_workers!r}")
        self.name = name
        self.max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._calls: set[concurrent.futures.Future[Any]] = set()

    def __repr__(self) -> str:
        return f"<HandlerThreads {self.name!r}: {len(self._calls)} calls, at most {self.max_workers} threads>"

    @property
    def calls(self) -> int:
        """Calls queued or running now."""
        return len(self._calls)

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Start ``fn(*args)`` in a thread of the pool, in a copy of the current context;
        the future is its result. Cancelling the future cancels the call if it has not
        started (a running thread cannot be stopped); a call that :meth:`close` cancelled
        fails with :class:`~nanomsg_kernel.errors.ServiceError` ``UNAVAILABLE``."""
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None:
            pool = self._pool = concurrent.futures.ThreadPoolExecutor(
                self.max_workers, thread_name_prefix=f"nanomsg_kernel {self.name}"
            )
        done = pool.submit(_in_thread, loop, contextvars.copy_context(), fn, args)
        self._calls.add(done)
        result = loop.create_future()
        result.add_done_callback(functools.partial(_cancel, done))
        done.add_done_callback(functools.partial(self._done, loop, result))
        return result

    def _done(
        self, loop: asyncio.AbstractEventLoop, result: asyncio.Future[Any], done: concurrent.futures.Future[Any],
    ) -> None:
        """``done`` (in its thread, or where it was cancelled) -> ``result`` (on its loop)."""
        self._calls.discard(done)
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(_settle, self.name, result, done)

    async def close(self, grace: float = 5.0) -> None:
        """Cancel the calls not started, wait up to ``grace`` seconds for those running,
        and let the pool go (the next call makes a new one). Never waits longer."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.shutdown(wait=False, cancel_futures=True)
        running = [c for c in self._calls if not c.done()]
        if running and grace > 0:
            loop = asyncio.get_running_loop()
            waiters = [asyncio.wrap_future(c, loop=loop) for c in running]
            _done, late = await asyncio.wait(waiters, timeout=grace)
            for w in late:
                w.cancel()  # stop watching (a running thread cannot be cancelled)
        left = sum(not c.done() for c in running)
        if left:
            log.warning(
                "service %s: %d sync handler(s) still running after %.1fs; their threads finish on their own",
                self.name, left, grace, extra={"service": self.name},
            )
