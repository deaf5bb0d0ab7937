"""Event loops: use uvloop when it is installed and wanted, asyncio's own loop otherwise.

uvloop (``pip install nanomsg-kernel[uvloop]``) makes the loop's own work cheaper, which
shows most on sockets (``python -m benchmarks.tcp`` measures both loops)::

    from nanomsg_kernel.transports.loop import run

    run(main(), prefer_uvloop=True)   # uvloop if installed, else asyncio
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "loop_name", "new_event_loop", "run", "uvloop_available"]

T = TypeVar("T")


def uvloop_available() -> bool:
    """Whether uvloop can be imported."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_factory(prefer_uvloop: bool = True) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function making new event loops: uvloop's if preferred and installed."""
    if prefer_uvloop and uvloop_available():
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return asyncio.new_event_loop


def new_event_loop(prefer_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's if preferred and installed, else asyncio's."""
    return loop_factory(prefer_uvloop)()


def run(main: Coroutine[Any, Any, T], *, prefer_uvloop: bool = True) -> T:
    """Run ``main`` to completion in a new loop (like :func:`asyncio.run`), uvloop if preferred
    and installed."""
    with asyncio.Runner(loop_factory=loop_factory(prefer_uvloop)) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``"uvloop"`` or ``"asyncio"``: which implementation ``loop`` (default: the running one) is."""
    if loop is None:
        loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
