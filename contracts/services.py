"""The example services of the calculator kernel: ``calc`` and a ``gateway`` bound to it."""

from __future__ import annotations

import operator
from collections.abc import Callable

from nanomsg_kernel import Context, Service, ServiceError, Status, evolve
from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType

__all__ = ["OPS", "calc", "gateway"]

OPS: dict[WorkType, Callable[[int, int], int]] = {
    WorkType.SUM: operator.add,
    WorkType.DIFF: operator.sub,
    WorkType.MULT: operator.mul,
    WorkType.DIV: operator.floordiv,
}

calc = Service("calc", CalcRoute)
"""Does the arithmetic."""

gateway = Service("gateway", CalcRoute)
"""Takes requests from outside and forwards the work to ``calc`` through its binding."""

done_events: list[CalcDone] = []
"""Events ``calc`` has received (kept short: the last 100)."""


@calc.handler(CalcWork)
async def calc_work(work: CalcWork) -> CalcWork:
    """Compute ``a op b``."""
    if work.op is WorkType.DIV and work.b == 0:
        raise ServiceError(Status.BAD_REQUEST, "division by zero")
    return evolve(work, result=OPS[work.op](work.a, work.b))


@calc.handler(Echo, inline=True)
def echo(msg: Echo, ctx: Context) -> Echo:
    """Answer with the text upper-cased."""
    return evolve(msg, reply=msg.text.upper())


@calc.subscribe(CalcDone)
def remember_done(event: CalcDone) -> None:
    """Keep the latest finished calculations."""
    done_events.append(event)
    del done_events[:-100]


@gateway.handler(CalcWork)
async def forward_work(work: CalcWork, ctx: Context) -> CalcWork:
    """Forward to ``calc`` (in-process or remote, depending on the binding), then announce it."""
    done: CalcWork = await ctx.bindings.calc.call(work)
    if done.result is not None:
        await ctx.bindings.calc.publish(CalcDone(work=work.a, result=done.result))
    return done


@gateway.handler(Echo)
async def forward_echo(msg: Echo, ctx: Context) -> Echo:
    """Forward to ``calc``."""
    reply: Echo = await ctx.bindings.calc.call(msg)
    return reply
