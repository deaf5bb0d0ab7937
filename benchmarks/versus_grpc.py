"""Our network transports against gRPC Python serving the same request/response.

``python -m benchmarks.versus_grpc [--loop asyncio|uvloop|both] [--quick]``

The same call three ways, each server in its own child process, the clients taking turns in
this process (see :func:`benchmarks._util.interleaved`) on one event loop:

* ``grpc`` — a ``grpc.aio`` stub calling ``CallEcho`` of ``benchmarks/proto/echo.proto``
  (the server upper-cases the text, like ``calc``'s ``Echo``) over one channel;
* ``tcp`` — :class:`~nanomsg_kernel.client.Client` calling the ``calc`` service's ``Echo``
  over ``tcp://``;
* ``zmq`` — the same over ``zmq+tcp://``.

Closed loop: one call at a time (p50/p99 latency, calls/s); pipelined: 64 calls in flight
on the one channel/connection (``grpc.aio`` tasks for gRPC, like ours), calls/s and each
call's p50 under that load. Ratios are ours over
gRPC's, same run. Needs ``pip install grpcio grpcio-tools``.
"""

from __future__ import annotations

from typing import Any

from benchmarks._util import (
    closed_and_pipelined_ratios,
    interleaved,
    loop_arguments,
    print_table,
    spawn_all,
    stop,
)
from benchmarks.grpc_stubs import load, missing
from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.transports.loop import loop_name, uvloop_available
from nanomsg_kernel.transports.loop import run as run_loop

__all__ = ["CONCURRENCY", "TARGETS", "main", "run"]

CONCURRENCY = 64
TEXT = "hello, nanomsg-kernel"
TARGETS = ("grpc", "tcp", "zmq")
LABELS = {"grpc": "gRPC Python (grpc.aio)", "tcp": "service+client tcp://", "zmq": "service+client zmq+tcp://"}


async def _measure(urls: dict[str, str], seconds: float, rounds: int, warmup: float) -> dict[str, Any]:
    import grpc

    from benchmarks._grpc_server import OPTIONS
    from nanomsg_kernel.client import Client

    pb2, pb2_grpc = load()
    request = pb2.Echo(text=TEXT)
    msg = Echo(text=TEXT)
    async with (
        grpc.aio.insecure_channel(urls["grpc"], options=OPTIONS) as channel,
        Client(CalcRoute, urls["tcp"]) as tcp_client,
        Client(CalcRoute, urls["zmq"]) as zmq_client,
    ):
        stub = pb2_grpc.BenchStub(channel)
        reply = await stub.CallEcho(request, timeout=10.0)
        if reply.reply != TEXT.upper():
            raise RuntimeError(f"the gRPC server answered {reply!r}")
        results: dict[str, Any] = await interleaved(
            {
                "grpc": lambda: stub.CallEcho(request, timeout=5.0),
                "tcp": lambda: tcp_client.call(msg, timeout=5.0),
                "zmq": lambda: zmq_client.call(msg, timeout=5.0),
            },
            seconds=seconds, rounds=rounds, concurrency=CONCURRENCY, warmup=warmup, pipelined_latency=True,
        )
    results["loop"] = loop_name()
    results["ratios"] = closed_and_pipelined_ratios(results, "grpc", ("tcp", "zmq"))
    return results


def _one_loop(loop: str, seconds: float, rounds: int, warmup: float) -> dict[str, Any]:
    procs = spawn_all({
        "grpc": ("benchmarks._grpc_server", "--loop", loop),
        "tcp": ("benchmarks._serve", "nanomsg_kernel.contracts.services:calc", "tcp://127.0.0.1:0", "--loop", loop),
        "zmq": ("benchmarks._serve", "nanomsg_kernel.contracts.services:calc", "zmq+tcp://127.0.0.1:0", "--loop", loop),
    })
    try:
        urls = {target: line for target, (_proc, line) in procs.items()}
        return run_loop(_measure(urls, seconds, rounds, warmup), prefer_uvloop=loop == "uvloop")
    finally:
        for proc, _line in procs.values():
            stop(proc)


def run(quick: bool = False, loops: tuple[str, ...] = ("asyncio", "uvloop"),
        seconds: float | None = None) -> dict[str, Any]:
    """Measure gRPC and our two network transports on each of ``loops`` (both sides run the
    same loop); ``seconds`` of each kind of load per target (default 0.6 quick, 2.0 full).

    Returns ``{"skipped": reason}`` when grpcio is missing, else ``{loop: {"grpc"|"tcp"|"zmq":
    {p50_us, p99_us, mean_us, calls_per_s, pipelined_calls_per_s, pipelined_p50_us, pipelined_p99_us}, "ratios": {"tcp"|"zmq":
    {closed_throughput, pipelined_throughput, closed_p50}}}}`` (ratios: ours / gRPC).
    """
    reason = missing()
    if reason is not None:
        return {"skipped": reason}
    if seconds is None:
        seconds = 0.6 if quick else 2.0
    rounds = 3 if quick or seconds < 1 else 8
    out: dict[str, Any] = {}
    for loop in loops:
        if loop == "uvloop" and not uvloop_available():
            out[loop] = {"skipped": "uvloop is not installed (pip install nanomsg-kernel[uvloop])"}
            continue
        out[loop] = _one_loop(loop, seconds, rounds, min(0.3, seconds / 2))
    return out


def report(results: dict[str, Any]) -> None:
    """Print the figures of :func:`run` as a table."""
    if "skipped" in results:
        print(results["skipped"])
        return
    rows = []
    for loop, res in results.items():
        if "skipped" in res:
            print(f"{loop}: {res['skipped']}")
            continue
        for target in TARGETS:
            r, rel = res[target], res["ratios"].get(target)
            rows.append([loop, LABELS[target], r["calls_per_s"], f"{rel['closed_throughput']:.1f}x" if rel else "-",
                         r["p50_us"], r["pipelined_calls_per_s"],
                         f"{rel['pipelined_throughput']:.1f}x" if rel else "-", r["pipelined_p50_us"]])
    print(f"closed loop: one call at a time; pipelined: {CONCURRENCY} calls in flight on one channel/connection")
    print_table(rows, ["loop", "target", "closed calls/s", "vs gRPC", "closed p50 us",
                       f"pipelined({CONCURRENCY}) calls/s", "vs gRPC", "pipelined p50 us"])
    print("aim: each of our transports >= 5x gRPC's closed-loop calls/s and >= 10x its pipelined calls/s")


def main() -> None:
    """Command line entry point."""
    assert __doc__ is not None
    quick, loops = loop_arguments(__doc__)
    report(run(quick, loops))

if __name__ == "__main__":
    main()
