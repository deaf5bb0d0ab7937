"""Services: handlers mapped per contract, one dispatch for in-process and remote calls.

::

    calc = Service("calc", CalcRoute)

    @calc.handler(CalcWork)
    async def calc_work(work: CalcWork) -> CalcWork: ...

    @calc.handler(Echo)
    def echo(msg: Echo, ctx: Context) -> Echo: ...      # sync: runs in the service's threads

    async with calc.serve("tcp://127.0.0.1:0") as listener: ...

:meth:`Service.dispatch` takes a contract object and returns the reply object; it is what an
in-process binding calls. :meth:`Service.handle_frame` decodes a frame, calls the same
dispatch, and encodes the reply or an error frame: it is what every transport calls.
:meth:`Service.start_frame` is its synchronous start, for transports that read frames in a
loop callback: one plain call that answers when an inline handler returns, and a real
asyncio task for an async handler (an eager one where the interpreter has them, so that a
handler that does not wait still answers at once). Errors are mapped the same way on every
path: a :class:`ServiceError` keeps its status and message, any other exception becomes
``INTERNAL`` with a generic message (the traceback is logged here; ``expose_errors=True``,
for development, sends the exception's text too), and a contract without handler is
``CONTRACT_NOT_SUPPORTED``. Callers receive them as :class:`RemoteError`.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from nanomsg_kernel.binding import Bindings
from nanomsg_kernel.codec import Codec
from nanomsg_kernel.context import Context
from nanomsg_kernel.contract import contract_info
from nanomsg_kernel.deadlines import GRAIN, task_deadlines
from nanomsg_kernel.eager import continuation
from nanomsg_kernel.errors import (
    ConfigError,
    ContractError,
    DecodeError,
    EncodeError,
    RemoteError,
    ServiceError,
    Status,
)
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, HEADER_SIZE, Kind, peek_correlation_id, refusal
from nanomsg_kernel.handler_threads import HandlerThreads
from nanomsg_kernel.metadata import EMPTY_METADATA, Metadata
from nanomsg_kernel.metrics import ServiceMetrics
from nanomsg_kernel.ratelimit import rate_limited

if TYPE_CHECKING:
    from nanomsg_kernel.routing import RoutingEnum
    from nanomsg_kernel.transports.base import Listener

__all__ = ["Handler", "Service"]

F = TypeVar("F", bound=Callable[..., Any])
_RESPONSE, _EVENT, _REQUEST, _CANCEL = int(Kind.RESPONSE), int(Kind.EVENT), int(Kind.REQUEST), int(Kind.CANCEL)
_KIND_RESPONSE = Kind.RESPONSE
_clock = time.perf_counter
_current_task = asyncio.current_task
_get_running_loop = asyncio.get_running_loop
_copy_context = contextvars.copy_context


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


class Service:
    """A named service of one kernel: handlers, subscribers, bindings and metrics.

    Args:
        name: the service's name (used in logs, metrics and node configs).
        routes: the kernel's routing enum; only its contracts can be handled.
        max_body_size: largest frame body accepted or sent by this service.
        max_workers: threads of this service's own pool for its sync handlers (default
            :data:`~nanomsg_kernel.handler_threads.DEFAULT_MAX_WORKERS`); more calls at once
            wait for a thread. See :mod:`nanomsg_kernel.handler_threads`.
        expose_errors: send the text of a handler's unexpected exception to the caller in
            its ``INTERNAL`` reply. For development only: the text may hold secrets (a
            password in a connection string). Off by default: the caller gets a generic
            message and the server's log has the exception.
    """

    def __init__(
        self, name: str, routes: type[RoutingEnum], *, max_body_size: int = DEFAULT_MAX_BODY,
        max_workers: int | None = None, expose_errors: bool = False,
    ) -> None:
        if not name or not isinstance(name, str):
            raise ConfigError(f"a service needs a name, got {name!r}")
        if max_workers is not None and (type(max_workers) is not int or max_workers < 1):
            raise ConfigError(f"service {name!r}: max_workers must be a positive int, got {max_workers!r}")
        if not isinstance(expose_errors, bool):
            raise ConfigError(f"expose_errors must be true or false, got {expose_errors!r}")
        self.name = name
        self.expose_errors = expose_errors
        """Whether ``INTERNAL`` replies carry the exception's text (development only)."""
        self.routes = routes
        self.codec: Codec = routes.codec(max_body_size=max_body_size)
        self.bindings = Bindings({})
        self.metrics = ServiceMetrics(name)
        self.logger = logging.getLogger(f"nanomsg_kernel.service.{name}")
        self._handlers: dict[type, Handler] = {}
        self._subscribers: dict[type, list[Handler]] = {}
        self._module = _caller_module()
        self._event_tasks: set[asyncio.Task[None]] = set()
        self._reply_types = self.codec._by_class
        self.threads = HandlerThreads(name, max_workers)
        """The pool that runs this service's sync handlers."""

    def __repr__(self) -> str:
        return f"<Service {self.name!r} of {self.routes.__name__}: {len(self._handlers)} handlers>"

    # -- registration ----------------------------------------------------------------------

    def _check_contract(self, contract: type) -> None:
        info = contract_info(contract) if isinstance(contract, type) else None
        if info is None or info.route is None or type(info.route) is not self.routes:
            raise ContractError(
                f"{getattr(contract, '__name__', contract)!r} is not a contract of {self.routes.__name__}"
            )

    def add_handler(self, contract: type, fn: Callable[..., Any], *, inline: bool = False) -> Handler:
        """Register ``fn`` as the handler of ``contract`` (one handler per contract).

        ``fn(msg)`` or ``fn(msg, ctx)``, async or sync; a sync handler runs in a worker
        thread unless ``inline=True`` (then it runs on the event loop and must not block).
        """
        self._check_contract(contract)
        if contract in self._handlers:
            raise ContractError(f"{self.name}: {contract.__name__} already has a handler")
        h = self._handlers[contract] = Handler(contract, fn, inline)
        return h

    def handler(self, contract: type, *, inline: bool = False) -> Callable[[F], F]:
        """Decorator form of :meth:`add_handler`."""

        def register(fn: F) -> F:
            self.add_handler(contract, fn, inline=inline)
            return fn

        return register

    def add_subscriber(self, contract: type, fn: Callable[..., Any], *, inline: bool = False) -> Handler:
        """Register an event handler for ``contract`` (any number per contract)."""
        self._check_contract(contract)
        h = Handler(contract, fn, inline)
        self._subscribers.setdefault(contract, []).append(h)
        return h

    def subscribe(self, contract: type, *, inline: bool = False) -> Callable[[F], F]:
        """Decorator form of :meth:`add_subscriber`."""

        def register(fn: F) -> F:
            self.add_subscriber(contract, fn, inline=inline)
            return fn

        return register

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
        return Context(self.name, h.name, correlation_id, deadline, self.bindings, self.logger, metadata, peer)

    async def _run(self, h: Handler, msg: Any, correlation_id: int, deadline: float | None,
                   metadata: Metadata = EMPTY_METADATA, peer: Any = None) -> Any:
        args = (msg, self._context(h, correlation_id, deadline, metadata, peer)) if h.takes_ctx else (msg,)
        if h.is_async:
            return await h.fn(*args)
        if h.inline:
            return h.fn(*args)
        return await self.threads.run(h.fn, *args)

    async def dispatch(self, msg: Any, *, deadline: float | None = None, correlation_id: int = 0,
                       metadata: Metadata = EMPTY_METADATA, peer: Any = None) -> Any:
        """Handle a request object and return the reply object (the in-process path).

        Args:
            deadline: ``loop.time()`` after which the caller no longer waits; the handler is
                cancelled then (up to :data:`~nanomsg_kernel.deadlines.GRAIN` later), and
                work whose deadline already passed is not started.
            metadata: the request's metadata, as the handler reads it (``ctx.metadata``):
                a read-only mapping (:meth:`~nanomsg_kernel.codec.Codec.check_metadata`).
            peer: who calls (``ctx.peer``): a :class:`~nanomsg_kernel.peer.Peer`.

        Raises:
            RemoteError: with the status the call ended with (the same as over a network).
        """
        if deadline is None:
            return await self._call(msg, correlation_id, None, 0.0, None, metadata, peer)
        loop = _get_running_loop()
        return await self._call(msg, correlation_id, deadline, deadline - loop.time(), loop, metadata, peer)

    async def _call(
        self, msg: Any, correlation_id: int, deadline: float | None, left: float,
        loop: asyncio.AbstractEventLoop | None, metadata: Metadata = EMPTY_METADATA, peer: Any = None,
    ) -> Any:
        """:meth:`dispatch`, given the time ``left`` until ``deadline`` on ``loop`` (both
        ``None`` without a deadline): what :meth:`handle_frame` and :meth:`start_frame` call."""
        started = _clock()
        h = self._handlers.get(type(msg))
        work: Any = None
        try:
            if h is None:
                raise ServiceError(Status.CONTRACT_NOT_SUPPORTED, f"{self.name} has no handler for {type(msg).__name__}")
            if h.takes_ctx:
                args: tuple[Any, ...] = (
                    msg, Context(self.name, h.name, correlation_id, deadline, self.bindings, self.logger, metadata,
                                 peer)
                )
            else:
                args = (msg,)
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
                    # One timer shared by the calls whose deadlines fall in the same few ms
                    # cancels the task of each still running then (an asyncio.timeout() scope
                    # per call costs far more); as with asyncio.timeout(), the task's
                    # cancellation count tells the deadline's cancellation from any other.
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
            if type(reply) not in self._reply_types:
                raise ServiceError(
                    Status.INTERNAL, f"handler for {type(msg).__name__} returned {type(reply).__name__}, not a contract"
                )
        except Exception as exc:
            raise self._failure(msg, correlation_id, exc, started) from exc
        except asyncio.CancelledError:
            # The caller gave up (its CANCEL frame, or its own task was cancelled), or the
            # server is closing: counted, and the cancellation goes on. A caller that gave up
            # at the deadline (its CANCEL came just before the deadline's own timer) timed out.
            late = deadline is not None and loop is not None and loop.time() >= deadline - GRAIN
            self.metrics.observe(type(msg).__name__, Status.TIMEOUT if late else Status.CANCELLED,
                                 _clock() - started)
            raise
        self.metrics.observe_ok(type(msg).__name__, _clock() - started)
        return reply

    def _failure(self, msg: Any, correlation_id: int, exc: Exception, started: float) -> RemoteError:
        """The :class:`RemoteError` a handler's exception becomes (counted; logged unless it is
        a :class:`ServiceError`). Called from the ``except`` block that caught ``exc``."""
        name = type(msg).__name__
        if isinstance(exc, ServiceError):
            self.metrics.observe(name, exc.status, _clock() - started)
            return RemoteError(exc.status, exc.message, exc.details)
        self.metrics.observe(name, Status.INTERNAL, _clock() - started)
        self.logger.exception(
            "handler failed", extra={"service": self.name, "contract": name, "correlation_id": correlation_id},
        )
        if self.expose_errors:
            return RemoteError(Status.INTERNAL, f"{type(exc).__name__}: {exc}"[:1000])
        return RemoteError(Status.INTERNAL, f"internal error in {self.name} handling {name} (details in the service's log)")

    async def publish_local(self, event: Any, *, metadata: Metadata = EMPTY_METADATA, peer: Any = None) -> None:
        """Deliver an event to this service's subscribers (in-process); errors are logged.
        ``metadata`` and ``peer`` are what the subscribers read as ``ctx.metadata`` and
        ``ctx.peer``."""
        subs = self._subscribers.get(type(event))
        if not subs:
            return
        for h in subs:
            if h.inline:
                self._notify(h, event, metadata, peer)
                continue
            started = _clock()
            try:
                await self._run(h, event, 0, None, metadata, peer)
            except Exception:
                self._subscriber_failed(h, started)
            else:
                self.metrics.observe(h.event_name, Status.OK, _clock() - started)

    def _notify(self, h: Handler, event: Any, metadata: Metadata, peer: Any) -> None:
        """Run an inline subscriber on ``event`` (errors are logged and counted)."""
        started = _clock()
        try:
            if h.takes_ctx:
                h.fn(event, self._context(h, 0, None, metadata, peer))
            else:
                h.fn(event)
        except Exception:
            self._subscriber_failed(h, started)
        else:
            self.metrics.observe(h.event_name, Status.OK, _clock() - started)

    def _subscriber_failed(self, h: Handler, started: float) -> None:
        """Count and log the exception a subscriber raised (call from its ``except`` block)."""
        self.metrics.observe(h.event_name, Status.INTERNAL, _clock() - started)
        self.logger.exception("subscriber failed", extra={"service": self.name, "contract": h.name})

    async def handle_frame(self, frame: bytes, caller: Any = None) -> bytes | None:
        """Serve one frame: the :data:`~nanomsg_kernel.transports.base.FrameHandler` every
        transport calls.

        Returns the reply frame (a response or an error frame with the request's correlation
        id), or ``None`` for events, ``CANCEL`` frames (a transport's server core handles
        them) and frames that cannot be answered. A bad header gets the status of
        :func:`~nanomsg_kernel.frame.refusal`, as from every transport. ``caller`` is the
        transport's caller, asked for ``ctx.peer`` when a handler reads it.
        """
        codec = self.codec
        try:
            kind, route, _cver, flags, corr, timeout_ms = codec._check(frame)
        except DecodeError as exc:
            cid = peek_correlation_id(frame)
            why = refusal(frame, codec.max_body_size)
            status, message = (why.status, why.message) if why is not None else (exc.status, str(exc))
            self.metrics.observe("<bad frame>", status, 0.0)
            if cid is None:
                return None
            return codec.encode_error(status, message, correlation_id=cid)
        metadata = EMPTY_METADATA
        body: bytes | memoryview
        if flags and kind != _CANCEL:
            try:
                metadata, body = codec.split(frame, flags)
            except DecodeError as exc:
                if kind == _EVENT:
                    self.metrics.observe("<bad event>", exc.status, 0.0)
                    rate_limited(self.logger).warning("dropped an event with bad metadata: %s", exc)
                    return None
                self.metrics.observe("<bad metadata>", exc.status, 0.0)
                return codec.encode_error(exc.status, str(exc), correlation_id=corr, route=route)
        else:
            body = frame[HEADER_SIZE:] if len(frame) < 4096 else memoryview(frame)[HEADER_SIZE:]
        if kind == _EVENT:
            try:
                event = codec._body(route, body)
            except DecodeError as exc:
                self.metrics.observe("<bad event>", exc.status, 0.0)
                rate_limited(self.logger).warning("dropped undecodable event: %s", exc)
                return None
            await self.publish_local(event, metadata=metadata, peer=caller)
            return None
        if kind == _CANCEL:
            return None
        if kind != _REQUEST:
            return codec.encode_error(Status.BAD_REQUEST, f"a service takes requests, not {Kind(kind).name}",
                                      correlation_id=corr, route=route)
        if route not in codec._by_route:
            return codec.encode_error(Status.CONTRACT_NOT_SUPPORTED, f"unknown route {route} for {self.routes.__name__}",
                                      correlation_id=corr, route=route)
        try:
            msg = codec._body(route, body)
        except DecodeError as exc:
            self.metrics.observe("<bad body>", exc.status, 0.0)
            return codec.encode_error(exc.status, str(exc), correlation_id=corr, route=route)
        if timeout_ms:
            loop = _get_running_loop()
            left = timeout_ms / 1000
            return await self._respond(msg, corr, route, loop.time() + left, left, loop, metadata, caller)
        return await self._respond(msg, corr, route, None, 0.0, None, metadata, caller)

    def start_frame(
        self, frame: bytes, loop: asyncio.AbstractEventLoop, caller: Any = None,
    ) -> bytes | Coroutine[Any, Any, bytes | None] | None:
        """Serve ``frame`` as far as it goes without a task: :meth:`handle_frame` for a
        server that starts handlers itself (the transports' server core).

        An inline handler is one plain call: its reply frame is returned (``None`` for a
        frame without reply). Otherwise returns the coroutine that serves the frame, whose
        result is the reply: the caller runs it in a real task
        (:func:`~nanomsg_kernel.eager.start_task`: eager on Python 3.12 and later, so that a
        handler that does not wait has answered when the task is made). The request's
        deadline is taken from the moment the frame arrived. Never raises for a bad frame
        (it is answered, as by :meth:`handle_frame`). ``caller``: as for :meth:`handle_frame`.
        """
        codec = self.codec
        try:
            request = codec.decode_request(frame)
        except DecodeError:
            request = None  # handle_frame answers it
        if request is None:  # (also a request with metadata)
            return self.handle_frame(frame, caller)
        msg, corr, timeout_ms, route = request
        h = self._handlers.get(type(msg))
        if h is None or not (h.is_async or h.inline):  # no handler, or one in a thread
            return self.handle_frame(frame, caller)
        if timeout_ms:
            left = timeout_ms / 1000
            deadline: float | None = loop.time() + left
        else:
            left, deadline = 0.0, None
        if h.is_async:
            return self._respond(msg, corr, route, deadline, left, loop, EMPTY_METADATA, caller)
        started = _clock()
        if h.takes_ctx:
            args: tuple[Any, ...] = (
                msg, Context(self.name, h.name, corr, deadline, self.bindings, self.logger, EMPTY_METADATA, caller)
            )
        else:
            args = (msg,)
        try:
            reply = _copy_context().run(h.fn, *args)
            if type(reply) not in self._reply_types:
                raise ServiceError(
                    Status.INTERNAL, f"handler for {type(msg).__name__} returned {type(reply).__name__}, not a contract"
                )
        except Exception as exc:
            error = self._failure(msg, corr, exc, started)
            return codec.encode_error(error.status, error.message, correlation_id=corr, route=route,
                                      details=error.details)
        self.metrics.observe_ok(h.name, _clock() - started)
        return self._response(reply, corr, route)

    async def _respond(
        self, msg: Any, corr: int, route: int, deadline: float | None, left: float,
        loop: asyncio.AbstractEventLoop | None, metadata: Metadata, caller: Any,
    ) -> bytes:
        """Call the handler of ``msg`` and return the reply frame (or the error frame)."""
        try:
            reply = await self._call(msg, corr, deadline, left, loop, metadata, caller)
        except RemoteError as exc:
            return self.codec.encode_error(exc.status, exc.message, correlation_id=corr, route=route,
                                           details=exc.details)
        return self._response(reply, corr, route)

    def _response(self, reply: Any, corr: int, route: int) -> bytes:
        """The response frame of ``reply`` (an ``INTERNAL`` error frame if it cannot be encoded)."""
        try:
            return self.codec.encode(reply, kind=_KIND_RESPONSE, correlation_id=corr)
        except EncodeError as exc:
            self.logger.error("reply could not be encoded: %s", exc)
            return self.codec.encode_error(Status.INTERNAL, f"reply could not be encoded: {exc}",
                                           correlation_id=corr, route=route)

    # -- serving ---------------------------------------------------------------------------

    def serve(self, url: str, **options: Any) -> Listener:
        """A listener serving this service at ``url`` (use ``async with``).

        The scheme picks the transport (``inproc://``, ``tcp://``, ``zmq+tcp://``,
        ``zmq+ipc://``); ``options`` go to it. ``listener.url`` is the address actually
        bound (with the real port when asked for port 0).
        """
        from nanomsg_kernel.transports.base import get_transport

        return get_transport(url).listen(url, self.handle_frame, **options)

    async def close(self, grace: float = 5.0) -> None:
        """Release the threads of the sync handlers: calls still queued are cancelled, those
        running get up to ``grace`` seconds, then are left to finish on their own (a thread
        cannot be interrupted). The service can serve again afterwards (a new pool is made).
        A :class:`~nanomsg_kernel.node.Node` does this when it closes."""
        await self.threads.close(grace)

    def locate(self) -> str:
        """``"module:attribute"`` from which this service object can be imported."""
        module = sys.modules.get(self._module)
        if module is not None:
            for attr, value in vars(module).items():
                if value is self:
                    return f"{self._module}:{attr}"
        raise ConfigError(
            f"service {self.name!r} is not a module-level attribute of {self._module!r}; "
            "worker processes need to import it"
        )


def _caller_module() -> str:
    frame = sys._getframe(2)
    return str(frame.f_globals.get("__name__", "__main__"))


