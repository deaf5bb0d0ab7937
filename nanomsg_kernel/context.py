"""The per-call :class:`Context` a handler may take as its second argument."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nanomsg_kernel.binding import Bindings, BindingsView

__all__ = ["Context"]


class Context:
    """What a handler knows about the call it is serving.

    Attributes:
        service: the name of the service handling the call.
        correlation_id: the request's correlation id (0 for in-process calls).
        deadline: the ``loop.time()`` by which the caller stops waiting, or ``None``.
        logger: a logger that adds service, contract and correlation id to each record.
    """

    __slots__ = ("_bindings", "contract", "correlation_id", "deadline", "logger", "service")

    def __init__(
        self,
        service: str,
        contract: str,
        correlation_id: int,
        deadline: float | None,
        bindings: Bindings,
        logger: logging.Logger,
    ) -> None:
        self.service = service
        self.contract = contract
        self.correlation_id = correlation_id
        self.deadline = deadline
        self._bindings = bindings
        self.logger = logging.LoggerAdapter(
            logger, {"service": service, "contract": contract, "correlation_id": correlation_id}
        )

    @property
    def bindings(self) -> BindingsView:
        """The services this service is bound to; calls through them inherit the deadline."""
        return self._bindings.view(self.deadline)

    def time_left(self) -> float | None:
        """Seconds until the deadline (may be negative), or ``None`` without a deadline."""
        if self.deadline is None:
            return None
        return self.deadline - asyncio.get_running_loop().time()

    def __repr__(self) -> str:
        return (
            f"Context(service={self.service!r}, contract={self.contract!r}, "
            f"correlation_id={self.correlation_id}, deadline={self.deadline!r})"
        )
