"""FailureLog: the built-in interceptor that logs calls that failed unexpectedly.

A handler that raises :class:`~nanomsg_kernel.errors.ServiceError` answers a status on
purpose: nothing is logged. Any other exception is logged once, with its traceback, on the
service's logger (through ``ctx.logger``, so the record carries the service, the contract
and the correlation id): ``handler failed`` for a request, ``subscriber failed`` for an
event. Cancellations are not failures.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from nanomsg_kernel.errors import ServiceError, Status
from nanomsg_kernel.interceptors import ServerInterceptor

if TYPE_CHECKING:
    from nanomsg_kernel.context import Context

__all__ = ["FailureLog"]


class FailureLog(ServerInterceptor):
    """Logs each call that ended with an exception other than a ``ServiceError``."""

    errors_only = True

    def __repr__(self) -> str:
        return "FailureLog()"

    def after(self, msg: Any, ctx: Context, status: Status, seconds: float, error: BaseException | None) -> None:
        """Log ``error`` with its traceback, unless the call ended as intended."""
        if error is None or isinstance(error, ServiceError | asyncio.CancelledError):
            return
        what = "subscriber failed" if ctx.contract.startswith("event:") else "handler failed"
        ctx.logger.error(what, exc_info=error)
