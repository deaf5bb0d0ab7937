"""Timing helpers shared by the benchmarks: load generators, percentiles, tables, servers
in a child process.

A benchmark measures a ``call`` (an ``async`` function of no argument doing one round
trip) two ways:

* :func:`closed_loop` — one call at a time: latency percentiles and calls/s;
* :func:`pipelined` — ``concurrency`` callers at once on the same target: calls/s;

and :func:`interleaved` compares several targets both ways, taking turns so that they all
see the same machine conditions. Everything runs for a fixed time after a warm-up, so a
benchmark's duration does not depend on the machine's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ROOT",
    "closed_loop",
    "count_calls",
    "interleaved",
    "latency_samples",
    "percentile",
    "pipelined",
    "print_table",
    "ratio",
    "spawn",
    "spawn_all",
    "stop",
    "summarize_latencies",
]

ROOT = Path(__file__).resolve().parent.parent
"""The project's root (where ``python -m benchmarks.x`` runs)."""

Call = Callable[[], Awaitable[Any]]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


async def latency_samples(call: Call, *, seconds: float) -> tuple[list[float], float]:
    """Call ``call`` one at a time for ``seconds``; return each call's duration (seconds)
    and the time taken in all."""
    clock = time.perf_counter
    samples: list[float] = []
    append = samples.append
    start = t = clock()
    end = start + seconds
    while t < end:
        await call()
        now = clock()
        append(now - t)
        t = now
    return samples, t - start


def summarize_latencies(samples: list[float], elapsed: float) -> dict[str, float]:
    """``p50_us``, ``p99_us``, ``mean_us`` and ``calls_per_s`` of sequential call durations."""
    ordered = sorted(samples)
    return {
        "p50_us": percentile(ordered, 50) * 1e6,
        "p99_us": percentile(ordered, 99) * 1e6,
        "mean_us": elapsed / len(ordered) * 1e6,
        "calls_per_s": len(ordered) / elapsed,
    }


async def closed_loop(call: Call, *, seconds: float, warmup: float = 0.2) -> dict[str, float]:
    """Call ``call`` one at a time for ``seconds`` (after ``warmup``): latency percentiles
    (``p50_us``, ``p99_us``, ``mean_us``) and ``calls_per_s``."""
    await latency_samples(call, seconds=warmup)
    return summarize_latencies(*await latency_samples(call, seconds=seconds))


async def count_calls(call: Call, *, concurrency: int, seconds: float, warmup: float = 0.2,
                      samples: list[float] | None = None) -> tuple[int, float]:
    """Run ``concurrency`` tasks that each call ``call`` in a loop; return the calls completed
    in a window of ``seconds`` that opens after ``warmup``, and the window's exact length.
    With ``samples``, also append the duration of each call completed in the window."""
    clock = time.perf_counter
    counting = False
    stop_at = clock() + warmup + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while clock() < stop_at:
            await call()
            if counting:
                done += 1

    async def timed_worker() -> None:
        nonlocal done
        assert samples is not None
        append = samples.append
        while clock() < stop_at:
            t = clock()
            await call()
            if counting:
                done += 1
                append(clock() - t)

    async def window() -> tuple[int, float]:
        nonlocal counting
        await asyncio.sleep(warmup)
        counting = True
        started, first = clock(), done
        await asyncio.sleep(seconds)
        counting = False
        return done - first, clock() - started

    each = worker if samples is None else timed_worker
    workers = [asyncio.ensure_future(each()) for _ in range(concurrency)]
    result = await window()
    await asyncio.gather(*workers)
    return result


async def pipelined(call: Call, *, concurrency: int, seconds: float, warmup: float = 0.2) -> dict[str, float]:
    """``concurrency`` callers at once for ``seconds`` (after ``warmup``): ``calls_per_s``."""
    count, elapsed = await count_calls(call, concurrency=concurrency, seconds=seconds, warmup=warmup)
    return {"calls_per_s": count / elapsed, "concurrency": float(concurrency)}


async def interleaved(
    calls: dict[str, Call], *, seconds: float, rounds: int = 5, concurrency: int = 64, warmup: float = 0.2,
    pipelined_latency: bool = False,
) -> dict[str, dict[str, float]]:
    """Measure several targets closed-loop and pipelined, taking turns.

    Each target gets ``seconds`` of each kind of load, cut into ``rounds`` slices that
    alternate with the other targets' (in a rotating order), so that a change of machine
    conditions during the run touches every target alike. Returns, per target, the fields
    of :func:`closed_loop` plus ``pipelined_calls_per_s`` (and, with ``pipelined_latency``,
    ``pipelined_p50_us`` and ``pipelined_p99_us``: each call's duration under that load).
    """
    names = list(calls)
    for name in names:
        await latency_samples(calls[name], seconds=warmup)
    samples: dict[str, list[float]] = {n: [] for n in names}
    spent = dict.fromkeys(names, 0.0)
    counts = dict.fromkeys(names, 0)
    windows = dict.fromkeys(names, 0.0)
    piped: dict[str, list[float]] | None = {n: [] for n in names} if pipelined_latency else None
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            got, elapsed = await latency_samples(calls[name], seconds=seconds / rounds)
            samples[name] += got
            spent[name] += elapsed
        for name in order:
            n, elapsed = await count_calls(calls[name], concurrency=concurrency, seconds=seconds / rounds,
                                           warmup=min(warmup, 0.05), samples=None if piped is None else piped[name])
            counts[name] += n
            windows[name] += elapsed
    out = {
        n: {**summarize_latencies(samples[n], spent[n]), "pipelined_calls_per_s": counts[n] / windows[n]}
        for n in names
    }
    for name, durations in (piped or {}).items():
        durations.sort()
        out[name]["pipelined_p50_us"] = percentile(durations, 50) * 1e6
        out[name]["pipelined_p99_us"] = percentile(durations, 99) * 1e6
    return out


def ratio(ours: float, baseline: float) -> float:
    """``ours / baseline`` (NaN when the baseline is 0)."""
    return ours / baseline if baseline else float("nan")


def closed_and_pipelined_ratios(
    results: dict[str, Any], baseline: str, targets: Sequence[str]
) -> dict[str, dict[str, float]]:
    """For each of ``targets``: its closed-loop calls/s, pipelined calls/s and closed-loop p50
    divided by those of ``results[baseline]`` (as measured by :func:`interleaved`)."""
    base = results[baseline]
    return {
        target: {
            "closed_throughput": ratio(results[target]["calls_per_s"], base["calls_per_s"]),
            "pipelined_throughput": ratio(results[target]["pipelined_calls_per_s"], base["pipelined_calls_per_s"]),
            "closed_p50": ratio(results[target]["p50_us"], base["p50_us"]),
        }
        for target in targets
    }


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    """Print rows as an aligned text table (floats with thousands separators)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 10 else f"{v:,.0f}"
        return str(v)

    cells = [list(map(str, header))] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, r in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _start(module: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _first_line(proc: subprocess.Popen[str], what: str, deadline: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
    line = proc.stdout.readline().strip() if ready else ""
    if not line:
        raise RuntimeError(f"{what} did not start in time (exit status {proc.poll()})")
    return line


def spawn(module: str, *args: str, ready_timeout: float = 30.0) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m module args`` in the project root; return the process and the
    first line it prints (e.g. the address it listens on). The child should exit when its
    standard input closes (see :func:`stop`)."""
    return spawn_all({"": (module, *args)}, ready_timeout=ready_timeout)[""]


def spawn_all(commands: dict[str, tuple[str, ...]], ready_timeout: float = 30.0
              ) -> dict[str, tuple[subprocess.Popen[str], str]]:
    """Like :func:`spawn` for several ``(module, *args)`` at once: all start together (their
    imports overlap), then each one's first line is read. If one fails, all are stopped."""
    procs = {name: _start(*command) for name, command in commands.items()}
    deadline = time.monotonic() + ready_timeout
    try:
        return {name: (proc, _first_line(proc, " ".join(commands[name]), deadline)) for name, proc in procs.items()}
    except BaseException:
        for proc in procs.values():
            stop(proc)
        raise


def stop(proc: subprocess.Popen[str], timeout: float = 5.0) -> None:
    """Close the child's standard input (its signal to exit), wait, kill if it lingers."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def loop_arguments(doc: str) -> tuple[bool, tuple[str, ...]]:
    """Parse ``--loop asyncio|uvloop|both`` and ``--quick`` for a benchmark's command line
    (``doc``: its module docstring); returns ``(quick, loops)``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="short runs (figures are noisier)")
    args = parser.parse_args()
    return args.quick, ("asyncio", "uvloop") if args.loop == "both" else (args.loop,)
