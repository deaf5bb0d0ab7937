"""CPU time per call, client and server in one process and one thread: ``inproc://``,
``tcp://`` and ``zmq+tcp://``, one call at a time and 64 at once.

Timed on the thread's CPU clock (best of the rounds), so that other work on the machine
weighs little; the loopback's own cost is in the figures (system calls), and ZeroMQ's I/O
threads are not. Use it to compare two versions of the code on one machine, alternating
runs. Run: ``python -m benchmarks.percall`` (``--quick`` for a shorter run).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType
from nanomsg_kernel.contracts.services import calc

URLS = {"inproc": "inproc://bench-percall", "tcp": "tcp://127.0.0.1:0", "zmq+tcp": "zmq+tcp://127.0.0.1:0"}


async def _per_call_us(url: str, n: int, concurrency: int, rounds: int) -> float:
    work = CalcWork(a=6, b=3, op=WorkType.DIV)
    async with calc.serve(url) as listener, Client(CalcRoute, listener.url) as client:
        for _ in range(200):
            await client.call(work, timeout=5)

        async def worker(calls: int) -> None:
            for _ in range(calls):
                await client.call(work, timeout=5)

        best = float("inf")
        for _ in range(rounds):
            t0 = time.thread_time()
            await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
            best = min(best, time.thread_time() - t0)
    return best / n * 1e6


async def _measure(quick: bool) -> dict[str, float]:
    rounds = 2 if quick else 3
    out: dict[str, float] = {}
    for name, url in URLS.items():
        for concurrency in (1, 64):
            n = (640 if quick else 3200) if concurrency == 64 else (320 if quick else 1600)
            out[f"{name} x{concurrency}"] = await _per_call_us(url, n, concurrency, rounds)
    return out


def run(quick: bool = False) -> dict[str, float]:
    """µs of CPU per call for each path and concurrency."""
    return asyncio.run(_measure(quick))


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    r = run(parser.parse_args().quick)
    print(f"Python {sys.version.split()[0]}, µs of CPU per call (client and server)")
    for key, us in r.items():
        print(f"{key:16s}{us:8.1f}")


if __name__ == "__main__":
    main()
