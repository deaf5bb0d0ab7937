"""TCP transport against a bare asyncio length-prefixed echo, server in another process.

``python -m benchmarks.tcp [--loop asyncio|uvloop|both] [--quick]``

For each event loop (the server process runs the same loop as the client), three servers
are measured from this process the same way, each over one persistent connection, taking
turns (see :func:`benchmarks._util.interleaved`):

* ``bare echo`` — a minimal asyncio length-prefixed echo server and a pipelining client
  (FIFO futures): the baseline;
* ``tcp transport`` — :class:`~nanomsg_kernel.transports.tcp.TcpConnection` to a
  :class:`~nanomsg_kernel.transports.tcp.TcpListener` whose handler returns the frame unchanged;
* ``service+client`` — :class:`~nanomsg_kernel.client.Client` calling the ``calc`` service's
  ``Echo`` handler (encode, decode, dispatch, reply) over the TCP transport.

Each carries the same request: an ``Echo`` frame with a fresh correlation id per call (the
echo baseline sends those bytes as its payload). Measured: closed-loop p50/p99 latency and
calls/s (one call at a time), and pipelined calls/s with 64 calls in flight. Ratios are
against the bare echo of the same loop, in the same run.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import struct
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
from nanomsg_kernel.transports.tcp_stream import parse_address

__all__ = ["main", "run"]

CONCURRENCY = 64
TEXT = "hello, nanomsg-kernel"
TARGETS = ("echo", "frames", "service")
LABELS = {"echo": "bare echo", "frames": "tcp transport", "service": "service+client"}
_PREFIX = struct.Struct(">I")


class EchoClient:
    """A bare pipelining client of the length-prefixed echo server: replies come back in
    order, so waiting calls are a FIFO of futures."""

    def __init__(self) -> None:
        self._waiting: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, url: str) -> None:
        """Connect to ``tcp://host:port``."""
        _scheme, host, port = parse_address(url)
        reader, self._writer = await asyncio.open_connection(host, port)
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        unpack, readexactly, waiting = _PREFIX.unpack, reader.readexactly, self._waiting
        try:
            while True:
                body = await readexactly(unpack(await readexactly(4))[0])
                waiting.popleft().set_result(body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def call(self, payload: bytes) -> bytes:
        """Send ``payload`` and wait for it to come back."""
        assert self._writer is not None
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self._writer.write(_PREFIX.pack(len(payload)) + payload)
        return await fut

    async def close(self) -> None:
        """Close the connection."""
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _measure_all(urls: dict[str, str], quick: bool, seconds: float | None) -> dict[str, Any]:
    from nanomsg_kernel.client import Client
    from nanomsg_kernel.transports.tcp import TcpTransport

    body = CalcRoute.codec().encode(Echo(text=TEXT))[HEADER_SIZE:]
    ids = itertools.count(1)

    def frame() -> bytes:
        return pack_header(Kind.REQUEST, int(CalcRoute.ECHO), 1, next(ids), 5000, len(body)) + body

    if seconds is None:
        seconds = 0.6 if quick else 1.5
    msg = Echo(text=TEXT)
    echo = EchoClient()
    await echo.open(urls["echo"])
    try:
        async with TcpTransport().connect(urls["frames"]) as conn, Client(CalcRoute, urls["service"]) as client:
            results: dict[str, Any] = await interleaved(
                {
                    "echo": lambda: echo.call(frame()),
                    "frames": lambda: conn.request(frame(), 5.0),
                    "service": lambda: client.call(msg, timeout=5.0),
                },
                seconds=seconds, rounds=6 if quick or seconds < 1 else 15, concurrency=CONCURRENCY,
                warmup=0.1 if quick else 0.3,
            )
    finally:
        await echo.close()
    results["loop"] = loop_name()
    results["ratios"] = closed_and_pipelined_ratios(results, "echo", ("frames", "service"))
    return results


def _one_loop(loop: str, quick: bool, seconds: float | None) -> dict[str, Any]:
    procs = spawn_all({target: ("benchmarks._tcp_server", target, "--loop", loop) for target in TARGETS})
    try:
        urls = {target: line for target, (_proc, line) in procs.items()}
        return run_loop(_measure_all(urls, quick, seconds), prefer_uvloop=loop == "uvloop")
    finally:
        for proc, _line in procs.values():
            stop(proc)


def run(quick: bool = False, loops: tuple[str, ...] = ("asyncio", "uvloop"),
        seconds: float | None = None) -> dict[str, Any]:
    """Measure every target on each of ``loops`` (uvloop is left out when not installed);
    ``seconds`` of each kind of load per target (default 0.6 quick, 1.5 full).

    Returns ``{loop: {"echo"|"frames"|"service": {p50_us, p99_us, mean_us, calls_per_s,
    pipelined_calls_per_s}, "ratios": {"frames"|"service": {pipelined_throughput,
    closed_p50, closed_throughput}}}}``.
    """
    out: dict[str, Any] = {}
    for loop in loops:
        if loop == "uvloop" and not uvloop_available():
            out[loop] = {"skipped": "uvloop is not installed (pip install nanomsg-kernel[uvloop])"}
            continue
        out[loop] = _one_loop(loop, quick, seconds)
    return out


def report(results: dict[str, Any]) -> None:
    """Print the figures of :func:`run` as tables."""
    rows = []
    for loop, res in results.items():
        if "skipped" in res:
            print(f"{loop}: {res['skipped']}")
            continue
        for target in TARGETS:
            r = res[target]
            rows.append([loop, LABELS[target], r["p50_us"], r["p99_us"], r["calls_per_s"], r["pipelined_calls_per_s"]])
    print(f"closed loop: one call at a time; pipelined: {CONCURRENCY} calls in flight; one connection")
    print_table(rows, ["loop", "target", "p50 us", "p99 us", "closed calls/s", f"pipelined({CONCURRENCY}) calls/s"])
    print()
    rows = []
    for loop, res in results.items():
        for target, r in res.get("ratios", {}).items():
            rows.append([loop, f"{LABELS[target]} / bare echo", f"{r['pipelined_throughput']:.0%}",
                         f"{r['closed_p50']:.2f}x", f"{r['closed_throughput']:.0%}"])
    print_table(rows, ["loop", "ratio", "pipelined calls/s", "closed p50", "closed calls/s"])
    print("aim: tcp transport pipelined calls/s >= 80% of bare echo, closed-loop p50 <= 1.3x; "
          "service+client pipelined calls/s >= 90% of bare echo")


def main() -> None:
    """Command line entry point."""
    assert __doc__ is not None
    quick, loops = loop_arguments(__doc__)
    report(run(quick, loops))

if __name__ == "__main__":
    main()
