"""The ``burn`` service of the benchmark kernel, importable as ``nanomsg_kernel.contracts.bench_services:burn``.

Run it on its own (prints the bound URL, then serves until killed)::

    python -m nanomsg_kernel.contracts.bench_services zmq+tcp://127.0.0.1:0 [workers]
"""

from __future__ import annotations

import asyncio
import os
import sys

from nanomsg_kernel import Service, evolve
from nanomsg_kernel.contracts.bench import BenchRoute, Burn, Tick, Ticks, Who

__all__ = ["burn", "main", "sum_of_squares", "ticks_received"]

burn = Service("burn", BenchRoute)
"""Spends CPU on request, reports its process id, counts ticks."""

_ticks = 0


def sum_of_squares(n: int) -> int:
    """The sum of ``i * i`` for ``i`` below ``n``, the slow way (CPU-bound on purpose)."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def ticks_received() -> int:
    """Ticks this process has received so far."""
    return _ticks


@burn.handler(Burn, inline=True)
def do_burn(msg: Burn) -> Burn:
    """Compute on the event loop: one call keeps one core busy."""
    return evolve(msg, result=sum_of_squares(msg.n))


@burn.handler(Who, inline=True)
def who(msg: Who) -> Who:
    """Answer with this process's id."""
    return evolve(msg, pid=os.getpid())


@burn.subscribe(Tick, inline=True)
def count_tick(event: Tick) -> None:
    """Count a tick."""
    global _ticks
    _ticks += 1


@burn.handler(Ticks, inline=True)
def ticks(msg: Ticks) -> Ticks:
    """Answer with the number of ticks this process has received, and its id."""
    return evolve(msg, count=_ticks, pid=os.getpid())


async def _serve(url: str, workers: int) -> None:
    # Under ``python -m`` this file runs as ``__main__``; workers import the real module.
    from nanomsg_kernel.contracts.bench_services import burn as service

    async with service.serve(url, workers=workers) as listener:
        print(listener.url, flush=True)
        await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    """Serve ``burn`` at ``argv[0]`` with ``argv[1]`` worker processes (default 0)."""
    if not 1 <= len(argv) <= 2:
        raise SystemExit("usage: python -m nanomsg_kernel.contracts.bench_services URL [workers]")
    asyncio.run(_serve(argv[0], int(argv[1]) if len(argv) == 2 else 0))


if __name__ == "__main__":
    main(sys.argv[1:])
