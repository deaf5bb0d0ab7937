"""How a call's cost grows with the message size, per transport.

``python -m benchmarks.sizes [--loop asyncio|uvloop] [--quick]``

The ``blob`` service (:mod:`benchmarks.payload`: the reply carries the request's body back)
called with 100 B, 10 KiB and 1 MiB bodies over ``inproc://`` (served in this process),
``tcp://`` and ``zmq+tcp://`` (each served by a child process), and gRPC Python's
``CallBlob`` (``benchmarks/proto/echo.proto``, child process; left out when grpcio is not
installed). Measured per size: closed-loop p50 and calls/s (one call at a time), pipelined
calls/s with 64 calls in flight, and the payload moved per second one way.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from benchmarks._util import closed_loop, pipelined, print_table, spawn_all, stop
from benchmarks.grpc_stubs import load, missing
from benchmarks.payload import Blob, BlobRoute, blob
from nanomsg_kernel.transports.loop import loop_name, uvloop_available
from nanomsg_kernel.transports.loop import run as run_loop

__all__ = ["CONCURRENCY", "SIZES", "TRANSPORTS", "main", "run"]

CONCURRENCY = 64
SIZES = {"100 B": 100, "10 KiB": 10 * 1024, "1 MiB": 1024 * 1024}
TRANSPORTS = ("inproc", "tcp", "zmq+tcp", "grpc")
SPEC = "benchmarks.payload:blob"


async def _measure_one(call: Callable[[], Awaitable[Any]], size: int, seconds: float) -> dict[str, float]:
    closed = await closed_loop(call, seconds=seconds, warmup=min(0.1, seconds / 2))
    piped = await pipelined(call, concurrency=CONCURRENCY, seconds=seconds, warmup=min(0.1, seconds / 2))
    return {
        "p50_us": closed["p50_us"],
        "p99_us": closed["p99_us"],
        "calls_per_s": closed["calls_per_s"],
        "pipelined_calls_per_s": piped["calls_per_s"],
        "pipelined_mib_per_s": piped["calls_per_s"] * size / 2**20,
    }


@contextlib.asynccontextmanager
async def _caller(transport: str, url: str, body: bytes) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    """An ``async`` function of no argument making one call with ``body`` over ``transport``."""
    if transport == "grpc":
        import grpc

        from benchmarks._grpc_server import OPTIONS

        pb2, pb2_grpc = load()
        request = pb2.Blob(body=body)
        async with grpc.aio.insecure_channel(url, options=OPTIONS) as channel:
            stub = pb2_grpc.BenchStub(channel)
            if (await stub.CallBlob(request, timeout=10.0)).body != body:
                raise RuntimeError("the gRPC server changed the body")
            yield lambda: stub.CallBlob(request, timeout=30.0)
        return
    from nanomsg_kernel.client import Client

    msg = Blob(body=body)
    async with Client(BlobRoute, url) as client:
        if (await client.call(msg, timeout=10.0)).body != body:
            raise RuntimeError(f"the {transport} server changed the body")
        yield lambda: client.call(msg, timeout=30.0)


async def _measure_all(urls: dict[str, str], seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {"loop": loop_name()}
    async with blob.serve("inproc://bench-blob"):
        for transport, url in urls.items():
            results[transport] = {}
            for label, size in SIZES.items():
                body = bytes(range(256)) * (size // 256) + bytes(size % 256)
                async with _caller(transport, url, body) as call:
                    # the largest bodies get longer windows: a few hundred calls/s
                    span = seconds * 2 if size >= 2**20 else seconds
                    results[transport][label] = await _measure_one(call, size, span)
    for transport in urls:
        base = results[transport]["100 B"]["p50_us"]
        for figures in results[transport].values():
            figures["p50_vs_100b"] = figures["p50_us"] / base
    return results


def run(quick: bool = False, loop: str = "uvloop", seconds: float | None = None) -> dict[str, Any]:
    """Measure every transport at every size on ``loop`` (asyncio when uvloop is missing);
    ``seconds`` of each kind of load per point (default 0.15 quick, 0.5 full).

    Returns ``{"loop": name, "grpc_skipped"?: reason, transport: {size label: {p50_us,
    p99_us, calls_per_s, pipelined_calls_per_s, pipelined_mib_per_s, p50_vs_100b}}}``.
    """
    if seconds is None:
        seconds = 0.15 if quick else 0.5
    if loop == "uvloop" and not uvloop_available():
        loop = "asyncio"
    reason = missing()
    commands = {
        "tcp": ("benchmarks._serve", SPEC, "tcp://127.0.0.1:0", "--loop", loop),
        "zmq+tcp": ("benchmarks._serve", SPEC, "zmq+tcp://127.0.0.1:0", "--loop", loop),
    }
    if reason is None:
        commands["grpc"] = ("benchmarks._grpc_server", "--loop", loop)
    procs = spawn_all(commands)
    try:
        urls = {"inproc": "inproc://bench-blob", **{t: line for t, (_proc, line) in procs.items()}}
        results = run_loop(_measure_all(urls, seconds), prefer_uvloop=loop == "uvloop")
    finally:
        for proc, _line in procs.values():
            stop(proc)
    if reason is not None:
        results["grpc_skipped"] = reason
    return results


def report(results: dict[str, Any]) -> None:
    """Print the figures of :func:`run` as a table."""
    rows = []
    for transport in TRANSPORTS:
        for label, r in results.get(transport, {}).items():
            rows.append([transport, label, r["p50_us"], f"{r['p50_vs_100b']:.1f}x", r["calls_per_s"],
                         r["pipelined_calls_per_s"], r["pipelined_mib_per_s"]])
    print(f"loop: {results['loop']}; closed loop: one call at a time; pipelined: {CONCURRENCY} calls in flight")
    print_table(rows, ["transport", "body", "closed p50 us", "p50 vs 100 B", "closed calls/s",
                       f"pipelined({CONCURRENCY}) calls/s", "pipelined MiB/s"])
    if "grpc_skipped" in results:
        print(results["grpc_skipped"])


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--quick", action="store_true", help="short runs (figures are noisier)")
    args = parser.parse_args()
    report(run(args.quick, args.loop))


if __name__ == "__main__":
    main()
