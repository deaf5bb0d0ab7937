"""What starting a handler in a real asyncio task costs, against running its coroutine by
hand, in one process: a handler that does not wait (most do not), started from a loop
callback the way a transport's server core starts it.

* ``by hand`` — ``coro.send(None)`` until ``StopIteration``: no task at all (the floor; what
  the earlier eager start outside any task did, minus its bookkeeping);
* ``start_task`` — :func:`nanomsg_kernel.eager.start_task`: an eager task on Python 3.12+
  (done when it returns), a plain task on 3.11 (its step runs one loop iteration later,
  which is counted: a round waits for the last task). The task ends the call itself, as the
  server core's do.

Run: ``python -m benchmarks.tasks`` (``--quick`` for a shorter run) on each interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from nanomsg_kernel.eager import EAGER, start_task


async def _handler(x: int) -> int:
    return x + 1


def _by_hand(i: int) -> bool:
    coro = _handler(i)
    try:
        coro.send(None)
    except StopIteration:
        return True
    raise AssertionError("the handler waited")  # pragma: no cover


async def _from_callbacks(n: int, tasks: bool) -> None:
    """Start ``n`` handlers, each from a loop callback of its own; return once all ended."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    left = n

    def one() -> None:
        nonlocal left
        left -= 1
        if not left:
            done.set_result(None)

    async def served(i: int) -> None:  # as the server core's task: it ends the call itself
        await _handler(i)
        one()

    def start(i: int) -> None:
        if tasks:
            start_task(loop, served(i))
        else:
            _by_hand(i)
            one()

    for i in range(n):
        loop.call_soon(start, i)
    await done


async def _measure(quick: bool) -> dict[str, float]:
    n, repeat = (20_000, 3) if quick else (100_000, 7)
    best_hand = best_task = float("inf")
    for _ in range(repeat):
        t0 = time.thread_time()
        await _from_callbacks(n, tasks=False)
        best_hand = min(best_hand, time.thread_time() - t0)
        t0 = time.thread_time()
        await _from_callbacks(n, tasks=True)
        best_task = min(best_task, time.thread_time() - t0)
    hand, task = best_hand / n * 1e9, best_task / n * 1e9
    return {"by_hand_ns": hand, "start_task_ns": task, "task_cost_ns": task - hand, "eager": float(EAGER)}


def run(quick: bool = False) -> dict[str, float]:
    """ns per handler started each way, and the difference."""
    return asyncio.run(_measure(quick))


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    r = run(parser.parse_args().quick)
    kind = "eager task" if r["eager"] else "plain task"
    print(f"Python {sys.version.split()[0]}: {kind}")
    print(f"{'by hand':24s}{r['by_hand_ns']:10.0f} ns")
    print(f"{'start_task':24s}{r['start_task_ns']:10.0f} ns")
    print(f"a real task costs {r['task_cost_ns'] / 1000:.2f} µs more per handler that does not wait")


if __name__ == "__main__":
    main()
