"""A server's Python work per request, without a socket: for counting instructions.

:func:`batch` hands :data:`BATCH` ``CalcWork`` request frames (5 s deadline) to the
:class:`~nanomsg_kernel.transports.server_core.ServerCore` of the ``calc`` service (default
interceptors) as a transport does for one read, then runs one turn of the event loop, so
that handlers started in tasks (Python 3.11) end too; every reply is checked to have come.
Importing the module sets it all up (uvloop when installed). Count it with callgrind::

    instr --python python -n 200 --setup 'from benchmarks.server_step import batch' 'batch()'

and divide by :data:`BATCH`. ``python -m benchmarks.server_step`` runs it once as a check.
"""

from __future__ import annotations

import asyncio

from nanomsg_kernel.contracts.calc import CalcWork, WorkType
from nanomsg_kernel.contracts.services import calc
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.server_core import Caller, ServerCore

__all__ = ["BATCH", "batch"]

BATCH = 32
"""Requests per :func:`batch` (the ZeroMQ server's ``REQUEST_BATCH``)."""

try:
    import uvloop

    loop = uvloop.new_event_loop()
except ImportError:  # pragma: no cover - uvloop is in the test and bench extras
    loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
replies: list[bytes | None] = []


class _Collect(Caller):
    """A caller that keeps the replies of calls that ended in tasks."""

    __slots__ = ()

    def finished(self, request: bytes, reply: bytes | None) -> None:
        replies.append(reply)


async def _core() -> ServerCore:
    return ServerCore(calc.handle_frame, name="bench", max_body_size=1 << 20)


core = loop.run_until_complete(_core())
caller = _Collect()
frames = [calc.codec.encode(CalcWork(a=6, b=3, op=WorkType.MULT), kind=Kind.REQUEST, correlation_id=i,
                            timeout_ms=5000) for i in range(1, BATCH + 1)]


def batch() -> None:
    """Serve :data:`BATCH` requests and one loop turn; raises if a reply is missing."""
    start = core.start
    for frame in frames:
        reply = start(frame, caller)
        if reply is not None:
            replies.append(reply)
    loop.call_soon(loop.stop)
    loop.run_forever()
    if len(replies) != BATCH:
        raise RuntimeError(f"{len(replies)} replies to {BATCH} requests")
    replies.clear()


if __name__ == "__main__":
    batch()
    print(f"{BATCH} requests served")
