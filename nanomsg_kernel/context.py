"""The per-call :class:`Context` a handler may take as its second argument."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from nanomsg_kernel.handler_threads import handler_loop
from nanomsg_kernel.metadata import EMPTY_METADATA, Metadata
from nanomsg_kernel.peer import UNKNOWN_PEER, Peer

if TYPE_CHECKING:
    from nanomsg_kernel.binding import Bindings, BindingsView

__all__ = ["CallLogger", "Context"]

_get_running_loop = asyncio.get_running_loop


class CallLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that adds the call's fields to each record and keeps the caller's ``extra``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        """Merge the call's fields under the record's own ``extra`` (the caller's keys win)."""
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


class Context:
    """What a handler knows about the call it is serving.

    Attributes:
        service: the name of the service handling the call.
        correlation_id: the request's correlation id (0 for in-process calls).
        deadline: the ``loop.time()`` by which the caller stops waiting, or ``None``.
        logger: a logger that adds service, contract and correlation id to each record.
        metadata: the request's metadata, read-only (empty when it carried none).
    """

    __slots__ = ("_adapter", "_base_logger", "_bindings", "_peer", "contract", "correlation_id", "deadline",
                 "metadata", "service")

    def __init__(
        self,
        service: str,
        contract: str,
        correlation_id: int,
        deadline: float | None,
        bindings: Bindings,
        logger: logging.Logger,
        metadata: Metadata = EMPTY_METADATA,
        peer: Any = None,
    ) -> None:
        self.service = service
        self.contract = contract
        self.correlation_id = correlation_id
        self.deadline = deadline
        self._bindings = bindings
        self._base_logger = logger
        self._adapter: CallLogger | None = None
        self.metadata = metadata
        self._peer = peer

    @property
    def peer(self) -> Peer:
        """Who is calling (:class:`~nanomsg_kernel.peer.Peer`): its address, TLS certificate
        names, CurveZMQ key or calling service, as far as the call's path tells."""
        peer = self._peer
        if peer is None:
            return UNKNOWN_PEER
        if type(peer) is not Peer:  # the transport's caller: asked once, when first wanted
            peer = self._peer = peer.peer()
        return peer  # type: ignore[no-any-return]

    @property
    def logger(self) -> CallLogger:
        """A logger that adds ``service``, ``contract`` and ``correlation_id`` to each record."""
        if self._adapter is None:
            self._adapter = CallLogger(
                self._base_logger,
                {"service": self.service, "contract": self.contract, "correlation_id": self.correlation_id},
            )
        return self._adapter

    @property
    def bindings(self) -> BindingsView:
        """The services this service is bound to; calls through them inherit the deadline."""
        return self._bindings.view(self.deadline)

    def time_left(self) -> float | None:
        """Seconds until the deadline (may be negative), or ``None`` without a deadline.

        Works on the event loop and in a sync handler's thread (which reads the clock of
        the loop the call came from).
        """
        if self.deadline is None:
            return None
        try:
            loop = _get_running_loop()
        except RuntimeError:
            found = handler_loop()
            if found is None:
                raise RuntimeError(
                    "Context.time_left() needs the event loop of the call: use it in the handler, "
                    "on the loop or in the sync handler's own thread"
                ) from None
            loop = found
        return self.deadline - loop.time()

    def __repr__(self) -> str:
        return (
            f"Context(service={self.service!r}, contract={self.contract!r}, "
            f"correlation_id={self.correlation_id}, deadline={self.deadline!r})"
        )
