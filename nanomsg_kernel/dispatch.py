"""A service's dispatch: a request object to its handler, through the interceptors, and back.

:class:`Dispatcher` is the part of a :class:`~nanomsg_kernel.service.Service` that calls
handlers with objects: :meth:`Dispatcher.dispatch` (what an in-process binding calls, and
what the frame path calls once a frame is decoded), the delivery of events to subscribers
(:meth:`Dispatcher.publish_local`), the interceptor chain around both, the service's health
and the mapping of errors. Errors are mapped the same way on every path: a
:class:`~nanomsg_kernel.errors.ServiceError` keeps its status and message, any other
exception becomes ``INTERNAL`` with a generic message (the traceback is logged by the
failure log; ``expose_errors=True``, for development, sends the exception's text too), and a
contract without handler is ``CONTRACT_NOT_SUPPORTED``. Callers receive them as
:class:`~nanomsg_kernel.errors.RemoteError`.

A handler's first step runs in the caller's task: one that ends in it (most do) answers with
no deadline armed; one that waits is awaited within the request's deadline
(:mod:`nanomsg_kernel.deadlines`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from nanomsg_kernel.builtin import BUILTIN_ROUTES, HealthStatus
from nanomsg_kernel.builtin_answers import answer
from nanomsg_kernel.chain import Chain, status_of
from nanomsg_kernel.context import Context
from nanomsg_kernel.deadlines import task_deadlines
from nanomsg_kernel.eager import continuation
from nanomsg_kernel.errors import ContractError, RemoteError, ServiceError, Status
from nanomsg_kernel.interceptors import ServerInterceptor
from nanomsg_kernel.metadata import EMPTY_METADATA, Metadata

if TYPE_CHECKING:
    from nanomsg_kernel.binding import Bindings
    from nanomsg_kernel.body import Entry
    from nanomsg_kernel.handler_threads import HandlerThreads
    from nanomsg_kernel.routing import RoutingEnum

__all__ = ["Dispatcher", "Handler"]

_clock = time.perf_counter
_current_task = asyncio.current_task
_get_running_loop = asyncio.get_running_loop


class Handler:
    """A registered handler: the function and how to call it."""

    __slots__ = ("contract", "event_name", "fn", "inline", "is_async", "name", "takes_ctx")

    def __init__(self, contract: type, fn: Callable[..., Any], inline: bool) -> None:
        self.contract = contract
        self.fn = fn
        self.name = contract.__name__
        self.event_name = f"event:{self.name}"
        """The metrics name of a subscriber of this contract."""
        self.is_async = inspect.iscoroutinefunction(fn)
        self.inline = inline
        try:
            params = [
                p for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        except (TypeError, ValueError):
            params = []
        if not 1 <= len(params) <= 2:
            raise ContractError(
                f"handler {getattr(fn, '__qualname__', fn)!r} for {self.name} must take "
                f"(message) or (message, ctx)"
            )
        self.takes_ctx = len(params) == 2


class Dispatcher:
    """Handlers called with contract objects, through the interceptors: the base of
    :class:`~nanomsg_kernel.service.Service`, which sets every attribute below."""

    name: str
    """The service's name."""
    routes: type[RoutingEnum]
    """The kernel's routing enum."""
    reflection: bool
    """Whether listeners answer the built-in ``Describe`` unless told otherwise."""
    expose_errors: bool
    """Whether ``INTERNAL`` replies carry the exception's text (development only)."""
    bindings: Bindings
    """The bindings a handler reaches through ``ctx.bindings``."""
    logger: logging.Logger
    """The service's logger (handlers log through ``ctx.logger``)."""
    threads: HandlerThreads
    """The pool that runs this service's sync handlers."""
    _handlers: dict[type, Handler]
    _subscribers: dict[type, list[Handler]]
    _reply_types: dict[type, Entry]
    _chain: Chain[Context] | None
    _health: HealthStatus

    @property
    def interceptors(self) -> tuple[ServerInterceptor, ...]:
        """The chain around every call this service serves, outermost first. By default its
        :attr:`Service.metrics <nanomsg_kernel.service.Service.metrics>` and a
        :class:`~nanomsg_kernel.failure_log.FailureLog`; assign a new
        sequence to reorder or remove them (an empty chain costs nothing per call)."""
        return () if self._chain is None else self._chain.interceptors

    @interceptors.setter
    def interceptors(self, chain: Iterable[ServerInterceptor]) -> None:
        compiled: Chain[Context] = Chain(chain, ServerInterceptor)
        self._chain = compiled if compiled.interceptors else None

    def add_interceptor(self, interceptor: ServerInterceptor, *, first: bool = False) -> None:
        """Add ``interceptor`` to the end of the chain (innermost), or with ``first=True``
        to its start (outermost)."""
        self.interceptors = (interceptor, *self.interceptors) if first else (*self.interceptors, interceptor)

    @property
    def health(self) -> HealthStatus:
        """What the built-in ``HealthCheck`` answers: ``SERVING`` from the start (a service
        answers when it is served); a :class:`~nanomsg_kernel.node.Node` makes it
        ``NOT_SERVING`` until its listeners are up, ``SERVING`` then, ``DRAINING`` while it
        closes and ``NOT_SERVING`` once closed. :meth:`set_health` changes it at any time."""
        return self._health

    def set_health(self, status: HealthStatus) -> None:
        """Report ``status`` from now on (e.g. ``NOT_SERVING`` while a database it needs is
        down); the next health check answers it."""
        self._health = HealthStatus(status)

    @property
    def handled(self) -> tuple[type, ...]:
        """Contracts with a handler."""
        return tuple(self._handlers)

    @property
    def subscribed(self) -> tuple[type, ...]:
        """Contracts with at least one subscriber."""
        return tuple(self._subscribers)

    # -- dispatch --------------------------------------------------------------------------

    def _context(self, h: Handler, correlation_id: int, deadline: float | None, metadata: Metadata = EMPTY_METADATA,
                 peer: Any = None) -> Context:
        """The context of a subscriber's call (its ``contract`` is the subscriber's metrics name)."""
        return Context(self.name, h.event_name, correlation_id, deadline, self.bindings, self.logger, metadata, peer)

    async def _run(self, h: Handler, ctx: Context, msg: Any) -> Any:
        """Run subscriber ``h`` on ``msg`` (in the service's threads if it is sync and not inline)."""
        args = (msg, ctx) if h.takes_ctx else (msg,)
        if h.is_async:
            return await h.fn(*args)
        if h.inline:
            return h.fn(*args)
        return await self.threads.run(h.fn, *args)

    def dispatch(self, msg: Any, *, deadline: float | None = None, correlation_id: int = 0,
                 metadata: Metadata = EMPTY_METADATA, peer: Any = None) -> Coroutine[Any, Any, Any]:
        """Handle a request object and return the reply object (the in-process path).

        Args:
            deadline: ``loop.time()`` after which the caller no longer waits; the handler is
                cancelled then (up to :data:`~nanomsg_kernel.deadlines.GRAIN` later), and
                work whose deadline already passed is not started.
            metadata: the request's metadata, as the handler reads it (``ctx.metadata``):
                a read-only mapping (:meth:`~nanomsg_kernel.codec.Codec.check_metadata`).
            peer: who calls (``ctx.peer``): a :class:`~nanomsg_kernel.peer.Peer`.

        Returns the coroutine to await (a plain function that hands back the call's own
        coroutine, one frame fewer than an ``async def``); with a ``deadline`` it is called
        from a running event loop.

        Raises:
            RemoteError: with the status the call ended with (the same as over a network).
        """
        if deadline is None:
            return self._call(msg, correlation_id, None, 0.0, None, metadata, peer)
        loop = _get_running_loop()
        return self._call(msg, correlation_id, deadline, deadline - loop.time(), loop, metadata, peer)

    async def _call(
        self, msg: Any, correlation_id: int, deadline: float | None, left: float,
        loop: asyncio.AbstractEventLoop | None, metadata: Metadata = EMPTY_METADATA, peer: Any = None,
    ) -> Any:
        """:meth:`dispatch`, given the time ``left`` until ``deadline`` on ``loop`` (both
        ``None`` without a deadline): what :meth:`handle_frame` and :meth:`start_frame` call.
        Runs the interceptors around the handler; raises :class:`RemoteError`."""
        chain = self._chain
        h = self._handlers.get(type(msg))
        if h is None and getattr(type(msg), "route", None) in BUILTIN_ROUTES:  # answered before any interceptor
            try:
                return answer(self, msg, reflection=self.reflection)
            except ServiceError as exc:
                raise self._failure(msg, exc) from exc
        if chain is None:
            try:
                if h is None:
                    raise self._unsupported(msg)
                ctx = Context(self.name, h.name, correlation_id, deadline, self.bindings, self.logger, metadata,
                              peer) if h.takes_ctx else None
                return await self._handle(h, msg, ctx, deadline, left, loop)
            except Exception as exc:
                raise self._failure(msg, exc) from exc
        ctx = Context(self.name, type(msg).__name__ if h is None else h.name, correlation_id, deadline,
                      self.bindings, self.logger, metadata, peer)
        if chain.nested:
            try:
                return await chain.run(msg, ctx, functools.partial(self._proceed, ctx, deadline, left, loop),
                                       deadline)
            except Exception as exc:
                raise self._failure(msg, exc) from exc
        started = _clock() if chain.afters else 0.0
        if chain.befores:
            error = chain.enter(msg, ctx, started, deadline)
            if error is not None:
                raise self._failure(msg, error) from error
        try:
            if h is None:
                raise self._unsupported(msg)
            if h.is_async and (deadline is None or left > 0):  # the common case, without _handle's frame
                work = h.fn(msg, ctx) if h.takes_ctx else h.fn(msg)
                if deadline is None:
                    reply = await work
                else:  # its first step now: one that ends in it (most do) needs no deadline
                    try:
                        step = work.send(None)
                    except StopIteration as stop:
                        reply = stop.value
                    else:
                        assert loop is not None
                        reply = await self._within(continuation(work, step), deadline, left, loop)
                if type(reply) not in self._reply_types:
                    raise self._bad_reply(msg, reply)
            else:
                reply = await self._handle(h, msg, ctx if h.takes_ctx else None, deadline, left, loop)
        except (Exception, asyncio.CancelledError) as exc:
            error = chain.finish(msg, ctx, status_of(exc, deadline), started, exc, deadline)
            if isinstance(exc, asyncio.CancelledError):
                raise
            assert error is not None
            raise self._failure(msg, error) from error
        if chain.afters_ok:
            error = chain.finish_ok(msg, ctx, started, deadline)
            if error is not None:
                raise self._failure(msg, error) from error
        return reply

    async def _proceed(
        self, ctx: Context, deadline: float | None, left: float, loop: asyncio.AbstractEventLoop | None, msg: Any,
    ) -> Any:
        """The innermost step of a chain with ``around`` interceptors: the handler of ``msg``."""
        h = self._handlers.get(type(msg))
        if h is None:
            raise self._unsupported(msg)
        return await self._handle(h, msg, ctx if h.takes_ctx else None, deadline, left, loop)

    def _unsupported(self, msg: Any) -> ServiceError:
        return ServiceError(Status.CONTRACT_NOT_SUPPORTED, f"{self.name} has no handler for {type(msg).__name__}")

    async def _handle(
        self, h: Handler, msg: Any, ctx: Context | None, deadline: float | None, left: float,
        loop: asyncio.AbstractEventLoop | None,
    ) -> Any:
        """Run handler ``h`` on ``msg`` (with ``ctx`` if it takes one) within ``deadline``;
        returns its reply (checked to be a contract of the kernel) or raises."""
        args: tuple[Any, ...] = (msg,) if ctx is None else (msg, ctx)
        if deadline is None:
            if h.is_async:
                reply = await h.fn(*args)
            elif h.inline:
                reply = h.fn(*args)
            else:
                reply = await self.threads.run(h.fn, *args)
        else:
            assert loop is not None
            if left <= 0:
                raise ServiceError(Status.TIMEOUT, "deadline passed before the call started")
            work: Any = None
            if h.is_async:
                # The handler's first step runs now, by hand, in this task: a handler
                # that finishes in it (most do) needs no deadline at all.
                work = h.fn(*args)
                try:
                    step = work.send(None)
                except StopIteration as stop:
                    reply, work = stop.value, None
                else:
                    work = continuation(work, step)
            elif h.inline:
                reply = h.fn(*args)
            else:
                work = self.threads.run(h.fn, *args)
            if work is not None:
                reply = await self._within(work, deadline, left, loop)
        if type(reply) not in self._reply_types:
            raise self._bad_reply(msg, reply)
        return reply

    @staticmethod
    async def _within(work: Any, deadline: float, left: float, loop: asyncio.AbstractEventLoop) -> Any:
        """Await ``work`` (a handler that did not end in its first step) in this task until
        ``deadline``; past it the task is cancelled and this raises ``TIMEOUT``."""
        # One timer shared by the calls whose deadlines fall in the same few ms cancels the
        # task of each still running then (an asyncio.timeout() scope per call costs far
        # more); as with asyncio.timeout(), the task's cancellation count tells the
        # deadline's cancellation from any other.
        task = _current_task(loop)
        assert task is not None
        cancelling = task.cancelling()
        bucket = task_deadlines(loop).bucket(deadline, left)
        bucket[work] = task
        try:
            reply = await work
        except asyncio.CancelledError:
            if bucket.fired and task.uncancel() <= cancelling:
                raise ServiceError(Status.TIMEOUT, "deadline exceeded while handling") from None
            raise
        else:
            if bucket.fired:
                task.uncancel()  # the handler absorbed the deadline's cancellation
        finally:
            del bucket[work]
        return reply

    @staticmethod
    def _bad_reply(msg: Any, reply: Any) -> ServiceError:
        return ServiceError(
            Status.INTERNAL, f"handler for {type(msg).__name__} returned {type(reply).__name__}, not a contract"
        )

    def _failure(self, msg: Any, exc: BaseException) -> RemoteError:
        """The :class:`RemoteError` a call that raised ``exc`` answers (interceptors have
        already seen ``exc``: the failure log among them)."""
        if isinstance(exc, ServiceError):
            return RemoteError(exc.status, exc.message, exc.details)
        if self.expose_errors:
            return RemoteError(Status.INTERNAL, f"{type(exc).__name__}: {exc}"[:1000])
        name = type(msg).__name__
        return RemoteError(Status.INTERNAL, f"internal error in {self.name} handling {name} (details in the service's log)")

    async def publish_local(self, event: Any, *, metadata: Metadata = EMPTY_METADATA, peer: Any = None) -> None:
        """Deliver an event to this service's subscribers (in-process), each through the
        interceptors; errors are counted and logged by them, never raised. ``metadata`` and
        ``peer`` are what the subscribers read as ``ctx.metadata`` and ``ctx.peer``."""
        subs = self._subscribers.get(type(event))
        if not subs:
            return
        for h in subs:
            if h.inline and (self._chain is None or not self._chain.nested):
                self._notify(h, event, metadata, peer)
                continue
            ctx = self._context(h, 0, None, metadata, peer)
            chain = self._chain
            with contextlib.suppress(Exception):
                if chain is None:
                    await self._run(h, ctx, event)
                else:
                    await chain.run(event, ctx, functools.partial(self._run, h, ctx))

    def _notify(self, h: Handler, event: Any, metadata: Metadata, peer: Any) -> None:
        """Run an inline subscriber on ``event`` with the interceptors' ``before`` and ``after``
        hooks (errors are theirs to count and log)."""
        chain = self._chain
        ctx = self._context(h, 0, None, metadata, peer)
        if chain is None:
            with contextlib.suppress(Exception):
                h.fn(event, ctx) if h.takes_ctx else h.fn(event)
            return
        started = _clock() if chain.afters else 0.0
        if chain.befores and chain.enter(event, ctx, started) is not None:
            return
        try:
            h.fn(event, ctx) if h.takes_ctx else h.fn(event)
        except Exception as exc:
            chain.finish(event, ctx, status_of(exc), started, exc)
        else:
            if chain.afters_ok:
                chain.finish_ok(event, ctx, started)
