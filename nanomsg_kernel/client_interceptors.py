"""The client side of interceptors: :class:`ClientInterceptor` and the :class:`ClientCall`
it sees (see :mod:`nanomsg_kernel.interceptors`)."""

from __future__ import annotations

from typing import Any, ClassVar

from nanomsg_kernel.chain import Proceed
from nanomsg_kernel.errors import Status

__all__ = ["ClientCall", "ClientInterceptor"]


class ClientCall:
    """What a client interceptor knows about the call it wraps.

    Attributes:
        url: the URL the client calls.
        service: the name of the binding the call goes through, or ``None`` for a plain client.
        contract: the request's contract name.
        timeout: seconds the caller waits (``None``: no limit); ``before`` may shorten it.
        metadata: what is sent with the request as its metadata; interceptors may add to it.
    """

    __slots__ = ("contract", "metadata", "service", "timeout", "url")

    def __init__(self, url: str, service: str | None, contract: str, timeout: float | None,
                 metadata: dict[str, str | bytes]) -> None:
        self.url = url
        self.service = service
        self.contract = contract
        self.timeout = timeout
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"ClientCall(url={self.url!r}, service={self.service!r}, contract={self.contract!r})"



class ClientInterceptor:
    """Base class of an interceptor around each call a client makes (methods as for
    :class:`ServerInterceptor`, with a :class:`ClientCall` in place of the context)."""

    errors_only: ClassVar[bool] = False
    """``True``: :meth:`after` is called only for calls that end with an error (not for
    ``OK``), which saves the call of the hook on every successful call."""

    def before(self, msg: Any, call: ClientCall) -> None:
        """Called before the request is sent; raise ``ServiceError`` to fail the call with its status."""

    def after(self, msg: Any, call: ClientCall, status: Status, seconds: float, error: BaseException | None) -> None:
        """Called when the call has ended (``error`` is ``None`` for ``OK``)."""

    async def around(self, msg: Any, call: ClientCall, proceed: Proceed) -> Any:
        """Wrap the rest of the chain: ``await proceed(msg)`` sends the request and returns the reply."""
        return await proceed(msg)
