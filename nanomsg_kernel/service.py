"""Services: handlers mapped per contract, one dispatch for in-process and remote calls.

::

    calc = Service("calc", CalcRoute)

    @calc.handler(CalcWork)
    async def calc_work(work: CalcWork) -> CalcWork: ...

    @calc.handler(Echo)
    def echo(msg: Echo, ctx: Context) -> Echo: ...      # sync: runs in the service's threads

    async with calc.serve("tcp://127.0.0.1:0") as listener: ...

:meth:`Service.dispatch` takes a contract object and returns the reply object; it is what an
in-process binding calls (the dispatch, with the interceptors and the mapping of errors, is
:class:`~nanomsg_kernel.dispatch.Dispatcher`, the base of :class:`Service`).
:meth:`Service.handle_frame` decodes a frame, calls the same dispatch, and encodes the reply
or an error frame: it is what every transport calls. :meth:`Service.start_frame` is its
synchronous start, for transports that read frames in a loop callback: one plain call that
answers when an inline handler returns, and a real asyncio task for an async handler (an
eager one where the interpreter has them, so that a handler that does not wait still answers
at once). Errors are mapped the same way on every path (see :mod:`nanomsg_kernel.dispatch`):
callers receive them as :class:`RemoteError`, or as an error frame over a transport.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from nanomsg_kernel.binding import Bindings
from nanomsg_kernel.builtin import BUILTIN_ROUTES, HealthStatus
from nanomsg_kernel.builtin_answers import answer_frame
from nanomsg_kernel.chain import status_of
from nanomsg_kernel.client_interceptors import ClientInterceptor
from nanomsg_kernel.codec import Codec
from nanomsg_kernel.context import Context
from nanomsg_kernel.contract import contract_info
from nanomsg_kernel.dispatch import Dispatcher, Handler
from nanomsg_kernel.errors import ConfigError, ContractError, DecodeError, EncodeError, RemoteError, Status
from nanomsg_kernel.failure_log import FailureLog
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, HEADER_SIZE, Kind, peek_correlation_id, refusal
from nanomsg_kernel.handler_threads import HandlerThreads
from nanomsg_kernel.interceptors import ServerInterceptor
from nanomsg_kernel.metadata import EMPTY_METADATA, Metadata
from nanomsg_kernel.metrics import ServiceMetrics
from nanomsg_kernel.ratelimit import rate_limited

if TYPE_CHECKING:
    from nanomsg_kernel.routing import RoutingEnum
    from nanomsg_kernel.transports.base import Listener

__all__ = ["Handler", "Service"]

F = TypeVar("F", bound=Callable[..., Any])
_EVENT, _REQUEST, _CANCEL = int(Kind.EVENT), int(Kind.REQUEST), int(Kind.CANCEL)
_KIND_RESPONSE = Kind.RESPONSE
_OK = Status.OK
_clock = time.perf_counter
_get_running_loop = asyncio.get_running_loop
_copy_context = contextvars.copy_context


class Service(Dispatcher):
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
        reflection: answer the built-in ``Describe`` (the kernel's schema and the contracts
            handled) on every listener; ``serve(url, reflection=...)`` overrides it for one.
            The built-in ``HealthCheck`` is always answered (:mod:`nanomsg_kernel.builtin`).
        interceptors: added to the service's chain after the built-in ones (its
            :attr:`metrics`, then a :class:`~nanomsg_kernel.failure_log.FailureLog`); see
            :attr:`interceptors`. The built-in contracts are answered before the chain.
    """

    def __init__(
        self, name: str, routes: type[RoutingEnum], *, max_body_size: int = DEFAULT_MAX_BODY,
        max_workers: int | None = None, expose_errors: bool = False, reflection: bool = True,
        interceptors: Iterable[ServerInterceptor] = (),
    ) -> None:
        if not name or not isinstance(name, str):
            raise ConfigError(f"a service needs a name, got {name!r}")
        if max_workers is not None and (type(max_workers) is not int or max_workers < 1):
            raise ConfigError(f"service {name!r}: max_workers must be a positive int, got {max_workers!r}")
        if not isinstance(expose_errors, bool):
            raise ConfigError(f"expose_errors must be true or false, got {expose_errors!r}")
        if not isinstance(reflection, bool):
            raise ConfigError(f"reflection must be true or false, got {reflection!r}")
        self.name = name
        self.reflection = reflection
        self._health = HealthStatus.SERVING
        self.expose_errors = expose_errors
        self.routes = routes
        self.codec: Codec = routes.codec(max_body_size=max_body_size)
        self.bindings = Bindings({})
        self.metrics = ServiceMetrics(name)
        self.logger = logging.getLogger(f"nanomsg_kernel.service.{name}")
        self._handlers = {}
        self._subscribers = {}
        self._module = _caller_module()
        self._reply_types = self.codec._by_class
        self.threads = HandlerThreads(name, max_workers)
        self._chain = None
        self.interceptors = (self.metrics, FailureLog(), *interceptors)
        self.client_interceptors: list[ClientInterceptor] = []
        """Interceptors around the calls this service makes through the bindings a node
        gives it (read when the node wires them)."""

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

    # -- frames ----------------------------------------------------------------------------

    async def handle_frame(self, frame: bytes, caller: Any = None, reflection: bool | None = None) -> bytes | None:
        """Serve one frame: the :data:`~nanomsg_kernel.transports.base.FrameHandler` every
        transport calls (``reflection``: answer ``Describe``, default :attr:`reflection`).

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
            if route in BUILTIN_ROUTES:
                return answer_frame(self, frame, corr, route,
                                    reflection=self.reflection if reflection is None else reflection)
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
        chain = self._chain
        if h.is_async or (chain is not None and chain.nested):
            return self._respond(msg, corr, route, deadline, left, loop, EMPTY_METADATA, caller)
        ctx = Context(self.name, h.name, corr, deadline, self.bindings, self.logger, EMPTY_METADATA, caller) \
            if h.takes_ctx or chain is not None else None
        args = (msg, ctx) if h.takes_ctx else (msg,)
        error: BaseException | None = None
        if chain is None:
            try:
                reply = self._inline(h, msg, args)
            except Exception as exc:
                error = exc
        else:
            assert ctx is not None
            started = _clock() if chain.afters else 0.0
            error = chain.enter(msg, ctx, started, deadline) if chain.befores else None
            if error is None:
                try:
                    reply = self._inline(h, msg, args)
                except Exception as exc:
                    error = chain.finish(msg, ctx, status_of(exc), started, exc)
                else:
                    if chain.afters_ok:
                        error = chain.finish_ok(msg, ctx, started, deadline)
        if error is not None:
            failure = self._failure(msg, error)
            return codec.encode_error(failure.status, failure.message, correlation_id=corr, route=route,
                                      details=failure.details)
        return self._response(reply, corr, route)

    def _inline(self, h: Handler, msg: Any, args: tuple[Any, ...]) -> Any:
        """Run inline handler ``h`` (in a copy of the current context) and check its reply."""
        reply = _copy_context().run(h.fn, *args)
        if type(reply) not in self._reply_types:
            raise self._bad_reply(msg, reply)
        return reply

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

    def serve(self, url: str, *, reflection: bool | None = None, **options: Any) -> Listener:
        """A listener serving this service at ``url`` (use ``async with``).

        The scheme picks the transport (``inproc://``, ``tcp://``, ``zmq+tcp://``,
        ``zmq+ipc://``); ``options`` go to it. ``listener.url`` is the address actually
        bound (with the real port when asked for port 0). ``reflection``: whether this
        listener answers the built-in ``Describe`` (default: the service's
        :attr:`reflection`).
        """
        from nanomsg_kernel.transports.base import get_transport

        if reflection is None or reflection == self.reflection:
            return get_transport(url).listen(url, self.handle_frame, **options)
        if not isinstance(reflection, bool):
            raise ConfigError(f"reflection must be true or false, got {reflection!r}")
        from nanomsg_kernel.listener_view import ListenerView

        return get_transport(url).listen(url, ListenerView(self, reflection=reflection).handle_frame, **options)

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


