"""One listener's view of a service: the same service, its own reflection switch.

``service.serve(url, reflection=False)`` on a service whose :attr:`Service.reflection
<nanomsg_kernel.service.Service.reflection>` is true (or the reverse) serves through a
:class:`ListenerView`: frames of the kernel's contracts go to the service unchanged (its
synchronous start included), and the built-in ``Describe`` is answered as this listener
says. A listener that keeps the service's setting serves the service itself, with no view
in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from nanomsg_kernel.builtin import BUILTIN_ROUTES
from nanomsg_kernel.errors import ConfigError

if TYPE_CHECKING:
    from nanomsg_kernel.codec import Codec

__all__ = ["ListenerView", "Viewed"]


class Viewed(Protocol):
    """What a view needs of a service (a :class:`~nanomsg_kernel.service.Service`)."""

    name: str
    codec: Codec

    @property
    def subscribed(self) -> tuple[type, ...]: ...

    async def handle_frame(self, frame: bytes, caller: Any = None, reflection: bool | None = None) -> bytes | None: ...

    def start_frame(
        self, frame: bytes, loop: asyncio.AbstractEventLoop, caller: Any = None,
    ) -> bytes | Coroutine[Any, Any, bytes | None] | None: ...


class ListenerView:
    """``service`` as one listener serves it, answering ``Describe`` only if ``reflection``."""

    __slots__ = ("reflection", "service")

    def __init__(self, service: Viewed, *, reflection: bool) -> None:
        self.service = service
        self.reflection = reflection

    @property
    def codec(self) -> Codec:
        """The service's codec (transports read its ``max_body_size``)."""
        return self.service.codec

    @property
    def subscribed(self) -> tuple[type, ...]:
        """The contracts the service subscribes to (a ZeroMQ listener subscribes to them)."""
        return self.service.subscribed

    async def handle_frame(self, frame: bytes, caller: Any = None) -> bytes | None:
        """The service's :meth:`~nanomsg_kernel.service.Service.handle_frame`, with this
        listener's reflection switch."""
        return await self.service.handle_frame(frame, caller, self.reflection)

    def start_frame(
        self, frame: bytes, loop: asyncio.AbstractEventLoop, caller: Any = None,
    ) -> bytes | Coroutine[Any, Any, bytes | None] | None:
        """The service's :meth:`~nanomsg_kernel.service.Service.start_frame`; a built-in
        request goes to :meth:`handle_frame`."""
        if int.from_bytes(frame[4:6], "big") in BUILTIN_ROUTES:
            return self.handle_frame(frame, caller)
        return self.service.start_frame(frame, loop, caller)

    def locate(self) -> str:
        """Refused: a worker process imports the service itself, whose reflection setting
        would then apply (``ConfigError``)."""
        raise ConfigError(
            f"service {self.service.name!r}: a listener with workers=N answers Describe as the service does "
            f"(Service(..., reflection={self.reflection})); it cannot differ per listener"
        )
