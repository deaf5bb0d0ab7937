"""nats:// against raw nats-py request/reply of the same payloads, servers in other processes.

``python -m benchmarks.nats [--loop asyncio|uvloop|both] [--quick]``

A nats-server of the benchmark's own runs on loopback (:mod:`nanomsg_kernel.app.nats_local`;
``nats-server`` must be on PATH). For each event loop (the server processes run the same
loop as the client), these targets are measured from this process the same way, taking
turns (:func:`benchmarks._util.interleaved`):

* ``raw nats-py`` — ``nc.request(subject, payload)`` to a plain nats-py subscription that
  publishes each payload back (the baseline);
* ``nats transport`` — :class:`~nanomsg_kernel.transports.nats_client.NatsConnection`
  sending the same frames to that same raw echo (what the client side of the transport adds);
* ``service+client`` — :class:`~nanomsg_kernel.client.Client` calling the ``calc`` service's
  ``Echo`` handler served by :class:`~nanomsg_kernel.transports.nats_server.NatsListener`
  (encode, decode, dispatch, reply);
* ``service+client, 2 instances`` and ``4 instances`` — the same with 2 and 4 processes
  serving the subject (one queue group);
* ``FastStream`` — ``broker.request`` to a FastStream ``bytes`` echo, default settings but
  no log line per message, when ``faststream[nats]`` is installed (else left out, with a
  message).

The payload is an ``Echo`` frame with a fresh correlation id per call (the raw and
FastStream baselines send those bytes). Measured: closed-loop p50/p99 latency and calls/s,
and pipelined calls/s with 64 calls in flight. Ratios are against raw nats-py, same loop,
same run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
from typing import Any

from benchmarks._util import (
    closed_and_pipelined_ratios,
    interleaved,
    loop_arguments,
    print_table,
    spawn_all,
    stop,
)
from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.frame import HEADER_SIZE, Kind, pack_header
from nanomsg_kernel.transports.loop import loop_name, uvloop_available
from nanomsg_kernel.transports.loop import run as run_loop

__all__ = ["main", "run"]

CONCURRENCY = 64
TEXT = "hello, nanomsg-kernel"
SERVICE = "nanomsg_kernel.contracts.services:calc"
LABELS = {"raw": "raw nats-py", "frames": "nats transport", "service": "service+client",
          "service_x2": "service+client, 2 instances", "service_x4": "service+client, 4 instances",
          "faststream": "FastStream"}
TARGETS = tuple(LABELS)


def faststream_missing() -> str | None:
    """Why the FastStream row cannot run (``None`` when it can)."""
    if importlib.util.find_spec("faststream") is None or importlib.util.find_spec("faststream.nats") is None:
        return "faststream is not installed (pip install 'faststream[nats]')"
    return None


async def _measure_all(server: str, loop: str, quick: bool, seconds: float | None) -> dict[str, Any]:
    import nats

    from nanomsg_kernel.client import Client
    from nanomsg_kernel.transports.nats import NatsTransport

    commands: dict[str, tuple[str, ...]] = {
        "raw": ("benchmarks._nats_server", "raw", server, "bench.raw", "--loop", loop),
        "service": ("benchmarks._serve", SERVICE, f"nats://{server}/bench.one", "--loop", loop),
    }
    for n in (2, 4):
        for i in range(n):
            commands[f"service_x{n}.{i}"] = ("benchmarks._serve", SERVICE, f"nats://{server}/bench.x{n}", "--loop",
                                             loop)
    skipped = faststream_missing()
    if skipped is None:
        commands["faststream"] = ("benchmarks._nats_server", "faststream", server, "bench.fs", "--loop", loop)
    procs = spawn_all(commands)
    body = CalcRoute.codec().encode(Echo(text=TEXT))[HEADER_SIZE:]
    ids = itertools.count(1)

    def frame() -> bytes:
        return pack_header(Kind.REQUEST, int(CalcRoute.ECHO), 1, next(ids), 5000, len(body)) + body

    if seconds is None:
        seconds = 0.6 if quick else 1.5
    msg = Echo(text=TEXT)
    try:
        async with contextlib.AsyncExitStack() as stack:
            nc = await nats.connect(f"nats://{server}")
            stack.push_async_callback(nc.close)
            conn = await stack.enter_async_context(NatsTransport().connect(f"nats://{server}/bench.raw"))
            clients = {name: await stack.enter_async_context(Client(CalcRoute, f"nats://{server}/{subject}"))
                       for name, subject in (("service", "bench.one"), ("service_x2", "bench.x2"),
                                             ("service_x4", "bench.x4"))}
            calls = {
                "raw": lambda: nc.request("bench.raw", frame(), timeout=5.0),
                "frames": lambda: conn.request(frame(), 5.0),
                **{name: (lambda c=client: c.call(msg, timeout=5.0)) for name, client in clients.items()},
            }
            if skipped is None:
                from faststream.nats import NatsBroker

                broker = NatsBroker(f"nats://{server}", logger=None)
                await broker.start()
                stack.push_async_callback(broker.stop)
                calls["faststream"] = lambda: broker.request(frame(), "bench.fs", timeout=5.0)
            results: dict[str, Any] = await interleaved(
                calls, seconds=seconds, rounds=4 if quick or seconds < 1 else 10, concurrency=CONCURRENCY,
                warmup=0.1 if quick else 0.3)
    finally:
        for proc, _line in procs.values():
            stop(proc)
    results["loop"] = loop_name()
    results["ratios"] = closed_and_pipelined_ratios(results, "raw", [t for t in TARGETS[1:] if t in results])
    if skipped is not None:
        results["faststream_skipped"] = skipped
    return results


async def _with_server(loop: str, quick: bool, seconds: float | None) -> dict[str, Any]:
    from nanomsg_kernel.app.nats_local import local_nats_server

    async with local_nats_server() as server:
        return await _measure_all(server, loop, quick, seconds)


def run(quick: bool = False, loops: tuple[str, ...] = ("asyncio", "uvloop"),
        seconds: float | None = None) -> dict[str, Any]:
    """Measure every target on each of ``loops``; ``seconds`` of each kind of load per target
    (default 0.6 quick, 1.5 full).

    Returns ``{loop: {target: {p50_us, p99_us, mean_us, calls_per_s, pipelined_calls_per_s},
    "ratios": {target: {pipelined_throughput, closed_p50, closed_throughput}}}}``, or
    ``{"skipped": why}`` when nats-server or nats-py is missing.
    """
    from nanomsg_kernel.app.nats_local import nats_server_missing

    missing = nats_server_missing()
    if missing is not None:
        return {"skipped": missing}
    out: dict[str, Any] = {}
    for loop in loops:
        if loop == "uvloop" and not uvloop_available():
            out[loop] = {"skipped": "uvloop is not installed (pip install nanomsg-kernel[uvloop])"}
            continue
        out[loop] = run_loop(_with_server(loop, quick, seconds), prefer_uvloop=loop == "uvloop")
    return out


def report(results: dict[str, Any]) -> None:
    """Print the figures of :func:`run` as tables."""
    if "skipped" in results:
        print(f"nats: skipped: {results['skipped']}")
        return
    rows = []
    for loop, res in results.items():
        if "skipped" in res:
            print(f"{loop}: {res['skipped']}")
            continue
        if "faststream_skipped" in res:
            print(f"{loop}: FastStream row left out: {res['faststream_skipped']}")
        for target in TARGETS:
            if target in res:
                r = res[target]
                rows.append([loop, LABELS[target], r["p50_us"], r["p99_us"], r["calls_per_s"],
                             r["pipelined_calls_per_s"]])
    print(f"closed loop: one call at a time; pipelined: {CONCURRENCY} calls in flight")
    print_table(rows, ["loop", "target", "p50 us", "p99 us", "closed calls/s", f"pipelined({CONCURRENCY}) calls/s"])
    print()
    rows = []
    for loop, res in results.items():
        for target, r in res.get("ratios", {}).items():
            rows.append([loop, f"{LABELS[target]} / raw nats-py", f"{r['pipelined_throughput']:.0%}",
                         f"{r['closed_p50']:.2f}x", f"{r['closed_throughput']:.0%}"])
    print_table(rows, ["loop", "ratio", "pipelined calls/s", "closed p50", "closed calls/s"])
    print("aims: service+client pipelined calls/s >= 80% of raw nats-py, closed-loop p50 <= 1.3x; "
          ">= 3x FastStream pipelined")


def main() -> None:
    """Command line entry point."""
    assert __doc__ is not None
    quick, loops = loop_arguments(__doc__)
    report(run(quick, loops))

if __name__ == "__main__":
    main()
