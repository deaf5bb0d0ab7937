"""The benchmark kernel: a CPU-bound call, a process probe, and a counted event.

Used by ``benchmarks/zmq.py`` and the ZeroMQ worker tests (``workers=N`` must make a
CPU-bound service faster on several cores).
"""

from __future__ import annotations

from nanomsg_kernel import RoutingEnum, contract


class BenchRoute(RoutingEnum):
    """Routes of the benchmark kernel (stable wire ids)."""

    BURN = 1
    WHO = 2
    TICK = 3
    TICKS = 4


@contract(BenchRoute.BURN)
class Burn:
    """Spend CPU: the reply's ``result`` is the sum of ``i * i`` for ``i`` below ``n``."""

    n: int
    result: int | None = None


@contract(BenchRoute.WHO)
class Who:
    """Which process served the call: the reply carries its ``pid``."""

    pid: int | None = None


@contract(BenchRoute.TICK)
class Tick:
    """An event; the service counts the ticks it receives."""

    seq: int


@contract(BenchRoute.TICKS)
class Ticks:
    """How many ticks the serving process has received: the reply's ``count`` and ``pid``."""

    count: int | None = None
    pid: int | None = None
