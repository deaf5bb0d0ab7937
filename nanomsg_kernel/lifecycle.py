"""``async with`` for the objects that open and close: listeners, connections, clients, nodes."""

from __future__ import annotations

from types import TracebackType
from typing import Any, ClassVar, Self

__all__ = ["AsyncResource"]


class AsyncResource:
    """A mixin: ``async with obj:`` awaits ``obj.start()`` (or the method ``OPEN`` names) on
    entry and ``obj.close()`` on exit, whatever ends the block."""

    OPEN: ClassVar[str] = "start"
    """The name of the coroutine method that opens the object (``"start"`` or ``"connect"``)."""

    async def close(self) -> Any:
        """Close the object (subclasses define what that means)."""
        raise NotImplementedError(f"{type(self).__name__} must define close()")

    async def __aenter__(self) -> Self:
        await getattr(self, self.OPEN)()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
