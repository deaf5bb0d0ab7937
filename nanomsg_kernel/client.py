"""The client: calls a service at a URL over any transport.

::

    async with CalcRoute.connect("tcp://127.0.0.1:7000") as client:
        done = await client.call(CalcWork(a=6, b=3, op=WorkType.DIV), timeout=1.0)
        await client.publish(CalcDone(work=1, result=2))

The timeout travels with the request (the header's ``timeout_ms``), so the server drops
work whose caller has given up. Errors: :class:`RemoteError` (the service answered with an
error status), :class:`DeadlineExceeded` (no reply in time), :class:`Unavailable` (the
service cannot be reached or the connection dropped). Delivery is at most once per call:
the client never retries on its own.
"""

from __future__ import annotations

import itertools
import math
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from nanomsg_kernel.errors import DeadlineExceeded, EncodeError
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, MAX_U32, Kind

if TYPE_CHECKING:
    from nanomsg_kernel.codec import Codec
    from nanomsg_kernel.routing import RoutingEnum
    from transports.base import Connection

__all__ = ["Client"]

_REQUEST, _EVENT = Kind.REQUEST, Kind.EVENT


class Client:
    """A connection to one service URL (or several, where the transport spreads calls).

    Args:
        routes: the kernel's routing enum, or ``None`` to accept contracts of any kernel
            (each message is encoded with its own kernel's codec).
        url: where the service listens; the scheme picks the transport.
        timeout: default per-call timeout in seconds (``None``: wait as long as it takes).
        max_body_size: largest body sent or accepted.
        **options: passed to the transport's ``connect``.
    """

    def __init__(
        self,
        routes: type[RoutingEnum] | None,
        url: str,
        *,
        timeout: float | None = None,
        max_body_size: int = DEFAULT_MAX_BODY,
        **options: Any,
    ) -> None:
        from transports.base import get_transport

        self.routes = routes
        self.url = url
        self.timeout = timeout
        self.max_body_size = max_body_size
        self._codec: Codec | None = routes.codec(max_body_size=max_body_size) if routes is not None else None
        self._conn: Connection = get_transport(url).connect(url, max_body_size=max_body_size, **options)
        self._ids = itertools.count(1)
        self._connected = False

    def __repr__(self) -> str:
        return f"<Client {self.url!r}>"

    @property
    def connection(self) -> Connection:
        """The transport connection underneath."""
        return self._conn

    async def connect(self) -> None:
        """Connect now (calls also connect on first use)."""
        await self._conn.connect()
        self._connected = True

    async def close(self) -> None:
        """Close the connection; calls still waiting fail with ``Unavailable``."""
        self._connected = False
        await self._conn.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _codec_for(self, msg: Any) -> Codec:
        if self._codec is not None:
            return self._codec
        route = getattr(type(msg), "route", None)
        if route is None:
            raise EncodeError(f"{type(msg).__name__} is not a contract")
        codec: Codec = type(route).codec(max_body_size=self.max_body_size)
        return codec

    async def call(self, msg: Any, *, timeout: float | None = None) -> Any:
        """Send ``msg`` as a request and return the decoded reply.

        Raises:
            RemoteError: the service answered with an error status.
            DeadlineExceeded: no reply within ``timeout`` (or the client's default).
            Unavailable: the service cannot be reached.
            EncodeError: ``msg`` is not a valid contract of the kernel.
        """
        if not self._connected:
            await self.connect()
        codec = self._codec_for(msg)
        if timeout is None:
            timeout = self.timeout
        if timeout is None:
            frame = codec.encode(msg, kind=_REQUEST, correlation_id=next(self._ids))
            return codec.decode(await self._conn.request(frame, None))
        if timeout <= 0:
            raise DeadlineExceeded("timeout must be positive (the deadline has passed)")
        ms = min(MAX_U32, max(1, math.ceil(timeout * 1000)))
        frame = codec.encode(msg, kind=_REQUEST, correlation_id=next(self._ids), timeout_ms=ms)
        return codec.decode(await self._conn.request(frame, timeout))

    async def publish(self, event: Any) -> None:
        """Send ``event`` one-way (kind ``EVENT``); the service's subscribers receive it."""
        if not self._connected:
            await self.connect()
        await self._conn.send(self._codec_for(event).encode(event, kind=_EVENT))
