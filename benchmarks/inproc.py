"""In-process costs: a plain ``await`` of the handler, a call through a binding, and a
round trip over ``inproc://`` (encode, queue, decode, dispatch, encode, decode).

A binding checks the request and the reply as the codec would and shares nothing mutable:
a message of immutable fields (``CalcWork``) is handed over as it is; one holding a list
(``Basket``) is copied through the codec's body, and its row shows what that costs.

Run: ``python -m benchmarks.inproc`` (add ``--quick`` for a shorter run).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from nanomsg_kernel import Client, LocalBinding, RoutingEnum, Service, contract
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType
from nanomsg_kernel.contracts.services import calc, calc_work


class BasketRoute(RoutingEnum):
    """A kernel of one contract that holds a list."""

    BASKET = 1


@contract(BasketRoute.BASKET)
class Basket:
    """Item ids and a total: a binding copies it, since a list is mutable."""

    items: list[int] = attrs.Factory(list)
    total: int | None = None


baskets = Service("baskets", BasketRoute)


@baskets.handler(Basket)
async def add_up(basket: Basket) -> Basket:
    """Answer with the sum of the items."""
    return basket.evolve(total=sum(basket.items))


async def _per_call_ns(fns: dict[str, Callable[[], Awaitable[Any]]], n: int, repeat: int) -> dict[str, float]:
    """ns per call of each of ``fns``: the best of ``repeat`` rounds, the functions taking
    turns within a round, timed on this thread's CPU clock so that other work on the machine
    weighs on neither side of a ratio."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.thread_time()
            for _ in range(n):
                await fn()
            best[name] = min(best[name], time.thread_time() - t0)
    return {name: t / n * 1e9 for name, t in best.items()}


async def _measure(quick: bool) -> dict[str, float]:
    n, repeat = (5_000, 3) if quick else (20_000, 7)
    work = CalcWork(a=6, b=3, op=WorkType.DIV)
    binding = LocalBinding("calc", calc)
    basket = Basket(items=[1, 2, 3, 4, 5])
    basket_binding = LocalBinding("baskets", baskets)
    out = await _per_call_ns(
        {
            "plain_await_ns": lambda: calc_work(work),
            "binding_ns": lambda: binding.call(work),
            "plain_await_list_ns": lambda: add_up(basket),
            "binding_list_ns": lambda: basket_binding.call(basket),
        },
        n, repeat,
    )
    url = "inproc://bench-calc"
    async with calc.serve(url), Client(CalcRoute, url) as client:
        out.update(await _per_call_ns({"inproc_ns": lambda: client.call(work)}, n // 5, repeat))
    out["binding_overhead_ns"] = out["binding_ns"] - out["plain_await_ns"]
    out["binding_list_overhead_ns"] = out["binding_list_ns"] - out["plain_await_list_ns"]
    out["ratio_binding_vs_plain"] = out["binding_ns"] / out["plain_await_ns"]
    out["ratio_inproc_vs_plain"] = out["inproc_ns"] / out["plain_await_ns"]
    return out


def run(quick: bool = False) -> dict[str, float]:
    """Measure and return ns/call figures and ratios."""
    return asyncio.run(_measure(quick))


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    r = run(parser.parse_args().quick)
    print(f"{'path':24s}{'ns/call':>10s}{'x plain':>10s}")
    print(f"{'plain await':24s}{r['plain_await_ns']:10.0f}{1:10.2f}")
    print(f"{'binding call':24s}{r['binding_ns']:10.0f}{r['ratio_binding_vs_plain']:10.2f}")
    print(f"{'inproc:// round trip':24s}{r['inproc_ns']:10.0f}{r['ratio_inproc_vs_plain']:10.2f}")
    print(f"{'plain await, list':24s}{r['plain_await_list_ns']:10.0f}{1:10.2f}")
    print(f"{'binding call, list':24s}{r['binding_list_ns']:10.0f}"
          f"{r['binding_list_ns'] / r['plain_await_list_ns']:10.2f}")
    print(f"binding overhead over a plain await: {r['binding_overhead_ns'] / 1000:.2f} µs (aim <= 2 µs)")
    print(f"... for a message holding a list (copied): {r['binding_list_overhead_ns'] / 1000:.2f} µs")
    print(f"inproc:// round trip: {r['inproc_ns'] / 1000:.1f} µs (aim < 25 µs)")


if __name__ == "__main__":
    main()
