"""Interceptors: plain objects in an explicit chain, around each call a service serves
(:class:`ServerInterceptor`) and each call a client makes (:class:`ClientInterceptor`).

::

    class RequireToken(ServerInterceptor):
        def before(self, msg: Any, ctx: Context) -> None:       # sync, before the handler
            if ctx.metadata.get("token") != "s3cret":
                raise ServiceError(Status.PERMISSION_DENIED, "no valid token")

    class Timing(ServerInterceptor):
        async def around(self, msg: Any, ctx: Context, proceed: Proceed) -> Any:
            reply = await proceed(msg)                           # the rest of the chain
            return reply

    calc.add_interceptor(RequireToken())

An interceptor overrides any of three methods; those it leaves alone cost nothing:

- ``before(msg, ctx)``, sync: runs before the rest of the chain. Raising
  :class:`~nanomsg_kernel.errors.ServiceError` short-circuits the call: the caller gets its
  status, and neither the handler nor the interceptors after this one run.
- ``after(msg, ctx, status, seconds, error)``, sync: runs when the rest of the chain has
  ended, with the status the call ended with, the seconds since the chain started, and the
  exception (``None`` for ``OK``). An exception it raises replaces the outcome.
- ``around(msg, ctx, proceed)``, async: wraps the rest of the chain. ``await proceed(msg)``
  runs it (with this or another message) and returns the reply; an interceptor may change
  the reply, raise ``ServiceError`` instead, or answer without calling ``proceed``.

The order is the chain's: the first interceptor is the outermost (its ``before`` runs first,
its ``after`` last). A client's interceptors see a :class:`ClientCall` instead of a
:class:`~nanomsg_kernel.context.Context`; their ``before`` may set ``call.metadata`` and
``call.timeout`` for the request about to be sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from nanomsg_kernel.chain import Proceed, status_of
from nanomsg_kernel.client_interceptors import ClientCall, ClientInterceptor
from nanomsg_kernel.errors import Status

if TYPE_CHECKING:
    from nanomsg_kernel.context import Context

__all__ = ["ClientCall", "ClientInterceptor", "Proceed", "ServerInterceptor", "status_of"]


class ServerInterceptor:
    """Base class of an interceptor around each call a service serves (and each event its
    subscribers receive: then ``ctx.contract`` is ``"event:<Contract>"``)."""

    errors_only: ClassVar[bool] = False
    """``True``: :meth:`after` is called only for calls that end with an error (not for
    ``OK``), which saves the call of the hook on every successful call."""

    def before(self, msg: Any, ctx: Context) -> None:
        """Called before the rest of the chain; raise ``ServiceError`` to answer with its status."""

    def after(self, msg: Any, ctx: Context, status: Status, seconds: float, error: BaseException | None) -> None:
        """Called when the rest of the chain has ended (``error`` is ``None`` for ``OK``)."""

    async def around(self, msg: Any, ctx: Context, proceed: Proceed) -> Any:
        """Wrap the rest of the chain: ``await proceed(msg)`` runs it and returns the reply."""
        return await proceed(msg)
