"""The calculator kernel: the routing enum and contracts of the example ``calc`` service."""

from __future__ import annotations

import enum

from nanomsg_kernel import RoutingEnum, contract, field


class CalcRoute(RoutingEnum):
    """Routes of the calculator kernel (stable wire ids)."""

    CALC_WORK = 1
    ECHO = 2
    CALC_DONE = 3


class WorkType(enum.IntEnum):
    """The operation a :class:`CalcWork` asks for."""

    SUM = 1
    DIFF = 2
    MULT = 3
    DIV = 4


@contract(CalcRoute.CALC_WORK, version=2)
class CalcWork:
    """Apply ``op`` to ``a`` and ``b``; the reply carries ``result``."""

    a: int
    b: int
    op: WorkType
    result: int | None = None
    precision: int = field(default=0, since=2)


@contract(CalcRoute.ECHO)
class Echo:
    """Send ``text``; the reply carries it back in ``reply``."""

    text: str
    reply: str | None = None


@contract(CalcRoute.CALC_DONE)
class CalcDone:
    """Event published when a calculation finished."""

    work: int
    result: int
