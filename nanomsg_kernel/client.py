"""The client: calls a service at a URL over any transport.

::

    async with Client(CalcRoute, "tcp://127.0.0.1:7000") as client:
        done = await client.call(CalcWork(a=6, b=3, op=WorkType.DIV), timeout=1.0)
        await client.publish(CalcDone(work=1, result=2))

The timeout travels with the request (the header's ``timeout_ms``), so the server drops
work whose caller has given up. A call that is cancelled, or whose timeout passes before the
reply arrives, sends a ``CANCEL`` frame: the service cancels the handler it started and
frees its place among the requests in flight. Errors: :class:`RemoteError` (the service answered with an
error status), :class:`DeadlineExceeded` (no reply in time), :class:`Unavailable` (the
service cannot be reached or the connection dropped). Delivery is at most once per call:
the client never retries on its own.

Where the deadline passed or what was unavailable does not matter to a caller: an error
frame with status ``TIMEOUT`` (the service gave up at the deadline, or a service it called
did) raises :class:`DeadlineExceeded`, one with ``UNAVAILABLE`` raises
:class:`Unavailable`, exactly as when the client itself gives up or cannot connect. The
error frame, as a :class:`RemoteError`, is the exception's ``__cause__``
(:func:`caller_error`).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from nanomsg_kernel.chain import Chain, status_of
from nanomsg_kernel.client_interceptors import ClientCall, ClientInterceptor
from nanomsg_kernel.errors import (
    DeadlineExceeded,
    EncodeError,
    RemoteError,
    ServiceError,
    Status,
    Unavailable,
)
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, MAX_U32, Kind
from nanomsg_kernel.lifecycle import AsyncResource

if TYPE_CHECKING:
    from nanomsg_kernel.codec import Codec
    from nanomsg_kernel.contract import Request
    from nanomsg_kernel.metadata import Metadata
    from nanomsg_kernel.routing import RoutingEnum
    from nanomsg_kernel.transports.base import Connection

__all__ = ["Client", "caller_error", "first_correlation_id"]

M = TypeVar("M")
R = TypeVar("R")

_REQUEST, _EVENT = Kind.REQUEST, Kind.EVENT
_TIMEOUT, _UNAVAILABLE, _OK = Status.TIMEOUT, Status.UNAVAILABLE, Status.OK
_clock = time.perf_counter


def first_correlation_id() -> int:
    """Where a client's correlation ids start: a random number from 1 to 2**63, so that ids
    from different clients and processes do not meet (logs join across hops), and the
    ids that follow it, one per call, stay within the header's 64 bits."""
    return secrets.randbits(63) + 1


def caller_error(exc: RemoteError) -> ServiceError:
    """The error a caller sees for an error reply: :class:`DeadlineExceeded` for status
    ``TIMEOUT``, :class:`Unavailable` for ``UNAVAILABLE`` (each with ``exc`` as its
    ``__cause__``), ``exc`` itself for any other status."""
    status = exc.status
    if status is _TIMEOUT:
        mapped: ServiceError = DeadlineExceeded(exc.message or "deadline exceeded", exc.details)
    elif status is _UNAVAILABLE:
        mapped = Unavailable(exc.message or "service unavailable", exc.details)
    else:
        return exc
    mapped.__cause__ = exc
    return mapped


class Client(AsyncResource):
    """A connection to one service URL (or several, where the transport spreads calls).

    Args:
        routes: the kernel's routing enum, or ``None`` to accept contracts of any kernel
            (each message is encoded with its own kernel's codec).
        url: where the service listens; the scheme picks the transport.
        timeout: default per-call timeout in seconds (``None``: wait as long as it takes).
        max_body_size: largest body sent or accepted.
        interceptors: the chain around each :meth:`call`, outermost first (see
            :mod:`nanomsg_kernel.interceptors`); none by default, at no cost per call.
        service: the name the interceptors see as :attr:`ClientCall.service
            <nanomsg_kernel.interceptors.ClientCall.service>` (a binding sets its own name).
        **options: passed to the transport's ``connect``.
    """

    OPEN = "connect"

    def __init__(
        self,
        routes: type[RoutingEnum] | None,
        url: str,
        *,
        timeout: float | None = None,
        max_body_size: int = DEFAULT_MAX_BODY,
        interceptors: Iterable[ClientInterceptor] = (),
        service: str | None = None,
        **options: Any,
    ) -> None:
        from nanomsg_kernel.transports.base import get_transport

        self.routes = routes
        self.url = url
        self.timeout = timeout
        self.max_body_size = max_body_size
        self._codec: Codec | None = routes.codec(max_body_size=max_body_size) if routes is not None else None
        self._conn: Connection = get_transport(url).connect(url, max_body_size=max_body_size, **options)
        self._ids = itertools.count(first_correlation_id())
        self._connected = False
        self._last_timeout_ms: tuple[float, int] = (0.0, 0)
        """The last timeout in seconds and its header value in ms (callers reuse one)."""
        self.service = service
        chain: Chain[ClientCall] = Chain(interceptors, ClientInterceptor)
        self._chain = chain if chain.interceptors else None

    @property
    def interceptors(self) -> tuple[ClientInterceptor, ...]:
        """The chain around each call, outermost first."""
        return () if self._chain is None else self._chain.interceptors

    def __repr__(self) -> str:
        return f"<Client {self.url!r}>"

    @property
    def connection(self) -> Connection:
        """The transport connection underneath."""
        return self._conn

    async def connect(self) -> None:
        """Connect now (the first call or publish also connects, within its timeout).

        Every transport behaves alike: ``connect()`` returns once the service can be
        reached, and raises ``Unavailable`` when it cannot (nothing listens at the URL, the
        connection or its TLS/Curve handshake is refused, or none completes within the
        transport's ``connect_timeout``). Nothing stays open after a failure: the next
        ``connect()`` or call tries again.
        """
        await self._conn.connect()
        self._connected = True

    async def _connect_within(self, timeout: float | None) -> float | None:
        """:meth:`connect` bounded by a call's ``timeout``; returns what is left of it."""
        if timeout is None:
            await self.connect()
            return None
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            async with asyncio.timeout(timeout):
                await self.connect()
        except TimeoutError:
            raise DeadlineExceeded(f"{self.url}: could not connect within {timeout:.3f}s") from None
        return timeout - (loop.time() - start)

    async def close(self) -> None:
        """Close the connection; calls still waiting fail with ``Unavailable``."""
        self._connected = False
        await self._conn.close()

    def _codec_for(self, msg: Any) -> Codec:
        if self._codec is not None:
            return self._codec
        route = getattr(type(msg), "route", None)
        if route is None:
            raise EncodeError(f"{type(msg).__name__} is not a contract")
        codec: Codec = type(route).codec(max_body_size=self.max_body_size)
        return codec

    @overload
    async def call(self, msg: Request[R], *, timeout: float | None = None, metadata: Metadata | None = None) -> R: ...
    @overload
    async def call(self, msg: M, *, timeout: float | None = None, metadata: Metadata | None = None) -> M: ...
    async def call(self, msg: Any, *, timeout: float | None = None, metadata: Metadata | None = None) -> Any:
        """Send ``msg`` as a request and return the decoded reply.

        To a type checker the reply of a contract derived from
        :class:`~nanomsg_kernel.contract.Request` ``[R]`` is an ``R``, and that of any
        other contract is of the request's own type (the reply is an evolved copy of it).

        ``metadata``: ``str`` keys to ``str`` or ``bytes`` values, sent with the request
        (the handler reads them as ``ctx.metadata``); see :mod:`nanomsg_kernel.metadata`.

        Raises:
            RemoteError: the service answered with an error status (but see below).
            DeadlineExceeded: no reply within ``timeout`` (or the client's default), or the
                service answered ``TIMEOUT``.
            Unavailable: the service cannot be reached, or it answered ``UNAVAILABLE``.
            EncodeError: ``msg`` is not a valid contract of the kernel, or ``metadata`` is
                not a map of text to text or bytes within the codec's limits.
        """
        chain = self._chain
        if chain is None:
            return await self._send(msg, timeout, metadata)
        return await self._intercepted(chain, msg, timeout, metadata)

    async def _intercepted(
        self, chain: Chain[ClientCall], msg: Any, timeout: float | None, metadata: Metadata | None,
    ) -> Any:
        """:meth:`call` through the interceptors (they may add to the metadata)."""
        call = ClientCall(self.url, self.service, type(msg).__name__, self.timeout if timeout is None else timeout,
                          dict(metadata) if metadata else {})
        if chain.nested:
            return await chain.run(msg, call, lambda m: self._send(m, call.timeout, call.metadata))
        started = _clock() if chain.afters else 0.0
        if chain.befores:
            error = chain.enter(msg, call, started)
            if error is not None:
                raise error
        try:
            reply = await self._send(msg, call.timeout, call.metadata)
        except (Exception, asyncio.CancelledError) as exc:
            error = chain.finish(msg, call, status_of(exc), started, exc)
            if error is exc or isinstance(exc, asyncio.CancelledError):
                raise
            assert error is not None
            raise error from exc
        if chain.afters:
            error = chain.finish(msg, call, _OK, started, None)
            if error is not None:
                raise error
        return reply

    async def _send(self, msg: Any, timeout: float | None, metadata: Metadata | None) -> Any:
        """Encode ``msg``, send it, wait for the reply and decode it (the call itself)."""
        if timeout is None:
            timeout = self.timeout
        if not self._connected:
            if timeout is not None and timeout <= 0:
                raise DeadlineExceeded("timeout must be positive (the deadline has passed)")
            timeout = await self._connect_within(timeout)
            if timeout is not None and timeout <= 0:
                raise DeadlineExceeded(f"{self.url}: the deadline passed while connecting")
        codec = self._codec if self._codec is not None else self._codec_for(msg)
        cid = next(self._ids)
        if timeout is None:
            frame = codec.encode(msg, kind=_REQUEST, correlation_id=cid, metadata=metadata)
        else:
            if timeout <= 0:
                raise DeadlineExceeded("timeout must be positive (the deadline has passed)")
            last_timeout, ms = self._last_timeout_ms
            if timeout != last_timeout:
                ms = min(MAX_U32, max(1, math.ceil(timeout * 1000)))
                self._last_timeout_ms = (timeout, ms)
            frame = codec.encode(msg, kind=_REQUEST, correlation_id=cid, timeout_ms=ms, metadata=metadata)
        try:
            reply = await self._conn.request(frame, timeout)
        except (asyncio.CancelledError, DeadlineExceeded):
            # The caller gave up: the service cancels the handler this call started.
            self._conn.cancel(cid)
            raise
        try:
            return codec.decode(reply)
        except RemoteError as exc:
            mapped = caller_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def publish(self, event: Any, *, metadata: Metadata | None = None) -> None:
        """Send ``event`` one-way (kind ``EVENT``); the service's subscribers receive it
        (with ``metadata``, as ``ctx.metadata``)."""
        if not self._connected:
            await self.connect()
        await self._conn.send(self._codec_for(event).encode(event, kind=_EVENT, metadata=metadata))
