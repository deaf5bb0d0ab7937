"""ZeroMQ transport against raw pyzmq with the same payload, servers in other processes.

``python -m benchmarks.zmq [--loop asyncio|uvloop|both] [--quick] [--runs N]``

``--runs N`` runs the request-reply part alone N times (fresh server processes each time)
and prints each run's ratios to raw pyzmq and their median: the aim is the median of five.

Request-reply (one DEALER connection to a server process; pipelined = 64 calls in flight,
closed loop = one call at a time), all carrying the same encoded ``CalcWork`` frame:

* ``raw pyzmq`` — blocking ``DEALER`` against a blocking ``ROUTER`` echo: the baseline;
* ``raw pyzmq -> service`` — the same blocking ``DEALER`` sending the same frame to the
  ``calc`` service: the server's whole path (read, decode, dispatch, handler, encode, reply)
  against the raw echo's, with a client that costs next to nothing;
* ``zmq.asyncio`` — a ``zmq.asyncio`` ``DEALER`` against the same echo (the event-loop
  integration this transport does *not* use; shown for the record);
* ``zmq transport`` — :class:`~nanomsg_kernel.transports.zmq_client.ZmqConnection` against the same echo;
* ``transport -> service`` — the same ``ZmqConnection`` sending ready-made ``CalcWork``
  frames to the ``calc`` service: the server's whole path (decode, dispatch, handler,
  encode), the client's without its codec. Set beside the next row, it shows how much of
  the gap is the client's encoding and decoding;
* ``service+client`` — :class:`~nanomsg_kernel.client.Client` calling the ``calc``
  service over ``zmq+tcp://`` (encode, decode, dispatch, reply).

Events, one way: ``N`` events published as fast as the subscriber takes them
(``XPUB_NODROP``), until the subscribing process has counted them all: raw pyzmq
(``XPUB`` -> ``SUB``) against ``client.publish`` -> a service's subscriber.

Workers: calls/s of the CPU-bound ``Burn`` handler (``nanomsg_kernel.contracts.bench_services:burn``)
served with ``workers=1`` and ``workers=2``, 8 calls in flight.

Run with ``-m`` from the project root (run as a file, this module would shadow pyzmq).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import select
import statistics
import subprocess
import sys
import time
from typing import Any

import zmq
import zmq.asyncio

from benchmarks._util import closed_loop, percentile, pipelined, print_table, ratio, spawn, stop
from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.bench import BenchRoute, Burn, Tick
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType
from nanomsg_kernel.frame import HEADER_SIZE, Kind, pack_header
from nanomsg_kernel.transports.loop import loop_name, uvloop_available
from nanomsg_kernel.transports.loop import run as run_loop

__all__ = ["main", "run"]

CONCURRENCY = 64
BURN_N = 100_000
BURN_CONCURRENCY = 8
WORK = CalcWork(a=6, b=7, op=WorkType.MULT)
PAYLOAD = CalcRoute.codec().encode(WORK, correlation_id=1, timeout_ms=5000)
EVENT = BenchRoute.codec().encode(Tick(seq=1), kind=Kind.EVENT)
AIM = 0.6
"""service+client pipelined calls/s against raw pyzmq's, as the median of five runs."""
TARGETS = ("raw", "raw->service", "zmq.asyncio", "transport", "frames->service", "service")
LABELS = {"raw": "raw pyzmq (blocking)", "raw->service": "raw pyzmq -> service", "zmq.asyncio": "zmq.asyncio DEALER",
          "transport": "zmq transport",
          "frames->service": "transport -> service", "service": "service+client"}


# -- server processes --------------------------------------------------------------------------


def _stdin_lines(poller: zmq.Poller, sock: zmq.Socket[Any]) -> Any:
    """Yield ``(socket_ready, line)`` forever: a line when stdin has one ('' at EOF)."""
    while True:
        events = dict(poller.poll())
        if sys.stdin.fileno() in events:
            yield False, sys.stdin.readline()
        if sock in events:
            yield True, ""


def _serve_raw_echo() -> None:
    """A blocking ROUTER echo; exits when stdin closes."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.sndhwm = router.rcvhwm = 100_000
    port = router.bind_to_random_port("tcp://127.0.0.1")
    print(f"tcp://127.0.0.1:{port}", flush=True)
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    recv, send = router.recv_multipart, router.send_multipart
    for ready, line in _stdin_lines(poller, router):
        if not ready and not line:
            break
        while True:
            try:
                msg = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            send(msg)
    router.close(0)
    ctx.term()


def _serve_raw_sub() -> None:
    """A blocking SUB bound to a free port, subscribed to ``Tick`` events; for each line ``N``
    on stdin, prints ``done`` once N more events have arrived."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.subscribe(EVENT[:6])
    port = sub.bind_to_random_port("tcp://127.0.0.1")
    print(f"tcp://127.0.0.1:{port}", flush=True)
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    received = target = 0
    waiting = False
    for ready, line in _stdin_lines(poller, sub):
        if not ready:
            if not line:
                break
            target += int(line)
            waiting = True
        while True:
            try:
                sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            received += 1
        if waiting and received >= target:
            waiting = False
            print("done", flush=True)
    sub.close(0)
    ctx.term()


async def _serve_ours(target: str) -> None:
    """``calc`` (target ``service``) or ``burn`` (``events``: lines ``N`` on stdin wait for N
    more ticks, then print ``done``) over ``zmq+tcp://``."""
    from nanomsg_kernel.contracts import bench_services
    from nanomsg_kernel.contracts.services import calc

    svc = calc if target == "service" else bench_services.burn
    loop = asyncio.get_running_loop()
    target = 0
    async with svc.serve("zmq+tcp://127.0.0.1:0") as listener:
        print(listener.url, flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            target += int(line)  # counted from the start: events may come before the line
            while bench_services.ticks_received() < target:
                await asyncio.sleep(0.0005)
            print("done", flush=True)


# -- request-reply ---------------------------------------------------------------------------


def _raw_pipelined(sock: zmq.Socket[Any], seconds: float) -> float:
    send, recv, clock = sock.send, sock.recv, time.perf_counter
    for _ in range(CONCURRENCY):
        send(PAYLOAD)
    done = 0
    start = clock()
    end = start + seconds
    while True:
        recv()
        done += 1
        if not done & 63 and clock() >= end:
            break
        send(PAYLOAD)
    elapsed = clock() - start
    for _ in range(CONCURRENCY - 1):
        recv()
    return done / elapsed


def _raw_closed(sock: zmq.Socket[Any], seconds: float) -> list[float]:
    send, recv, clock = sock.send, sock.recv, time.perf_counter
    samples: list[float] = []
    end = clock() + seconds
    t = clock()
    while t < end:
        send(PAYLOAD)
        recv()
        now = clock()
        samples.append(now - t)
        t = now
    return samples


class _AsyncioDealer:
    """A ``zmq.asyncio`` DEALER with FIFO reply matching (the echo keeps the order)."""

    def __init__(self, url: str) -> None:
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.sndhwm = self.sock.rcvhwm = 100_000
        self.sock.connect(url)
        self.waiting: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.sock.recv()
            self.waiting.popleft().set_result(msg)

    async def call(self) -> bytes:
        fut = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        await self.sock.send(PAYLOAD)
        return await fut

    async def close(self) -> None:
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)
        self.sock.close(0)
        self.ctx.term()


async def _request_reply(raw_url: str, service_url: str, quick: bool) -> dict[str, Any]:
    from nanomsg_kernel.client import Client
    from nanomsg_kernel.transports.zmq import ZmqTransport

    seconds = 0.5 if quick else 3.0
    rounds = 2 if quick else 6
    body = PAYLOAD[HEADER_SIZE:]
    ids = itertools.count(2)

    def frame() -> bytes:
        return pack_header(Kind.REQUEST, int(CalcRoute.CALC_WORK), 2, next(ids), 5000, len(body)) + body

    ctx = zmq.Context()
    raw = ctx.socket(zmq.DEALER)
    raw.sndhwm = raw.rcvhwm = 100_000
    raw.connect(raw_url)
    raw.send(PAYLOAD)
    raw.recv()
    raw_to_service = ctx.socket(zmq.DEALER)
    raw_to_service.sndhwm = raw_to_service.rcvhwm = 100_000
    raw_to_service.connect(service_url.removeprefix("zmq+").split("?")[0])
    raw_to_service.send(PAYLOAD)
    raw_to_service.recv()
    aio = _AsyncioDealer(raw_url)
    pipelined_rates: dict[str, list[float]] = {t: [] for t in TARGETS}
    closed_samples: dict[str, list[float]] = {t: [] for t in TARGETS}
    try:
        async with (
            ZmqTransport().connect(f"zmq+{raw_url}") as conn,
            ZmqTransport().connect(service_url) as to_service,
            Client(CalcRoute, service_url) as client,
        ):
            calls = {
                "zmq.asyncio": aio.call,
                "transport": lambda: conn.request(frame(), 5.0),
                "frames->service": lambda: to_service.request(frame(), 5.0),
                "service": lambda: client.call(WORK, timeout=5.0),
            }
            for call in calls.values():
                await closed_loop(call, seconds=0.1, warmup=0.1)
            for _ in range(rounds):
                for name, sock in (("raw", raw), ("raw->service", raw_to_service)):
                    pipelined_rates[name].append(_raw_pipelined(sock, seconds / rounds))
                    closed_samples[name] += _raw_closed(sock, seconds / rounds)
                for name, call in calls.items():
                    r = await pipelined(call, concurrency=CONCURRENCY, seconds=seconds / rounds, warmup=0.05)
                    pipelined_rates[name].append(r["calls_per_s"])
                    end = time.perf_counter() + seconds / rounds
                    samples = closed_samples[name]
                    while time.perf_counter() < end:
                        t = time.perf_counter()
                        await call()
                        samples.append(time.perf_counter() - t)
    finally:
        await aio.close()
        raw.close(0)
        raw_to_service.close(0)
        ctx.term()
    results: dict[str, Any] = {}
    for name in TARGETS:
        ordered = sorted(closed_samples[name])
        results[name] = {
            "pipelined_calls_per_s": sum(pipelined_rates[name]) / len(pipelined_rates[name]),
            "p50_us": percentile(ordered, 50) * 1e6,
            "p99_us": percentile(ordered, 99) * 1e6,
        }
    base = results["raw"]
    results["ratios"] = {
        name: {
            "pipelined_throughput": ratio(results[name]["pipelined_calls_per_s"], base["pipelined_calls_per_s"]),
            "closed_p50": ratio(results[name]["p50_us"], base["p50_us"]),
        }
        for name in TARGETS[1:]
    }
    return results


# -- events ----------------------------------------------------------------------------------


def _wait_line(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise RuntimeError("the subscriber process did not answer")
    return proc.stdout.readline().strip()


def _tell(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(text + "\n")
    proc.stdin.flush()


def _raw_events(proc: subprocess.Popen[str], url: str, count: int) -> float:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.xpub_nodrop = 1
    pub.connect(url)
    try:
        pub.recv()  # the subscription
        _tell(proc, "1")
        pub.send(EVENT)
        _wait_line(proc)
        _tell(proc, str(count))
        start = time.perf_counter()
        for _ in range(count):
            pub.send(EVENT)
        _wait_line(proc)
        return count / (time.perf_counter() - start)
    finally:
        pub.close(0)
        ctx.term()


async def _our_events(proc: subprocess.Popen[str], url: str, count: int) -> float:
    async with Client(BenchRoute, url) as client:
        _tell(proc, "1")
        await client.publish(Tick(seq=0))  # waits for the subscription
        _wait_line(proc)
        _tell(proc, str(count))
        start = time.perf_counter()
        for i in range(count):
            await client.publish(Tick(seq=i))
        _wait_line(proc)
        return count / (time.perf_counter() - start)


async def _events(quick: bool, loop: str) -> dict[str, Any]:
    count = 20_000 if quick else 100_000
    raw_proc, raw_url = spawn("benchmarks.zmq", "--serve", "raw-sub")
    ours_proc, ours_url = spawn("benchmarks.zmq", "--serve", "events", "--loop", loop)
    try:
        raw = _raw_events(raw_proc, raw_url, count)
        ours = await _our_events(ours_proc, ours_url, count)
    finally:
        stop(raw_proc)
        stop(ours_proc)
    return {"count": count, "raw_events_per_s": raw, "events_per_s": ours, "ratio": ratio(ours, raw)}


# -- workers ---------------------------------------------------------------------------------


async def _workers(quick: bool) -> dict[str, Any]:
    from nanomsg_kernel.contracts.bench_services import burn, sum_of_squares

    start = time.perf_counter()
    for _ in range(20):
        sum_of_squares(BURN_N)
    cpu_ms = (time.perf_counter() - start) / 20 * 1000
    out: dict[str, Any] = {"burn_n": BURN_N, "handler_cpu_ms": cpu_ms}
    for workers in (1, 2):
        async with (
            burn.serve("zmq+tcp://127.0.0.1:0", workers=workers) as listener,
            Client(BenchRoute, listener.url) as client,
        ):
            r = await pipelined(lambda: client.call(Burn(n=BURN_N), timeout=30.0),
                                concurrency=BURN_CONCURRENCY, seconds=1.0 if quick else 3.0, warmup=0.3)
        out[f"workers={workers}"] = r["calls_per_s"]
    out["ratio"] = ratio(out["workers=2"], out["workers=1"])
    return out


# -- running ---------------------------------------------------------------------------------


def _one_loop(loop: str, quick: bool) -> dict[str, Any]:
    raw_proc, raw_url = spawn("benchmarks.zmq", "--serve", "raw-echo")
    svc_proc, svc_url = spawn("benchmarks.zmq", "--serve", "service", "--loop", loop)
    try:
        results = run_loop(_request_reply(raw_url, svc_url, quick), prefer_uvloop=loop == "uvloop")
    finally:
        stop(raw_proc)
        stop(svc_proc)

    async def rest() -> dict[str, Any]:
        return {"loop": loop_name(), "events": await _events(quick, loop), "workers": await _workers(quick)}

    results.update(run_loop(rest(), prefer_uvloop=loop == "uvloop"))
    return results


def request_reply_runs(runs: int, quick: bool, loop: str) -> list[dict[str, Any]]:
    """The request-reply part alone, ``runs`` times, each with fresh server processes."""
    out = []
    for _ in range(runs):
        raw_proc, raw_url = spawn("benchmarks.zmq", "--serve", "raw-echo")
        svc_proc, svc_url = spawn("benchmarks.zmq", "--serve", "service", "--loop", loop)
        try:
            out.append(run_loop(_request_reply(raw_url, svc_url, quick), prefer_uvloop=loop == "uvloop"))
        finally:
            stop(raw_proc)
            stop(svc_proc)
    return out


def report_runs(results: list[dict[str, Any]]) -> None:
    """Print each run's pipelined ratios to raw pyzmq and their medians."""
    rows = []
    for name in TARGETS[1:]:
        ratios = [r["ratios"][name]["pipelined_throughput"] for r in results]
        rows.append([LABELS[name], "  ".join(f"{x:.2f}" for x in ratios), f"{statistics.median(ratios):.2f}"])
    raws = "  ".join(f"{r['raw']['pipelined_calls_per_s']:,.0f}" for r in results)
    print(f"pipelined({CONCURRENCY}) calls/s as a ratio to raw pyzmq in the same run ({len(results)} runs; "
          f"raw pyzmq made {raws} calls/s)")
    print_table(rows, ["target", "each run", "median"])
    print(f"aim: service+client median >= {AIM:.0%} of raw pyzmq")


def run(quick: bool = False, loops: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Measure on each of ``loops`` (default: uvloop when installed, else asyncio).

    Returns ``{loop: {"raw"|"raw->service"|"zmq.asyncio"|"transport"|"frames->service"|"service": {pipelined_calls_per_s,
    p50_us, p99_us}, "ratios": {target: {pipelined_throughput, closed_p50}}, "events":
    {raw_events_per_s, events_per_s, ratio}, "workers": {"workers=1", "workers=2", ratio}}}``.
    """
    if loops is None:
        loops = ("uvloop",) if uvloop_available() else ("asyncio",)
    out: dict[str, Any] = {}
    for loop in loops:
        if loop == "uvloop" and not uvloop_available():
            out[loop] = {"skipped": "uvloop is not installed (pip install nanomsg-kernel[uvloop])"}
            continue
        out[loop] = _one_loop(loop, quick)
    return out


def report(results: dict[str, Any]) -> None:
    """Print the figures of :func:`run` as tables."""
    for loop, res in results.items():
        if "skipped" in res:
            print(f"{loop}: {res['skipped']}")
            continue
        print(f"== {loop}: request-reply, one DEALER connection, {len(PAYLOAD)}-byte CalcWork frame")
        rows = []
        for name in TARGETS:
            r = res[name]
            rel = res["ratios"].get(name)
            rows.append([LABELS[name], r["pipelined_calls_per_s"], f"{rel['pipelined_throughput']:.0%}" if rel else "-",
                         r["p50_us"], f"{rel['closed_p50']:.2f}x" if rel else "-", r["p99_us"]])
        print_table(rows, ["target", f"pipelined({CONCURRENCY}) calls/s", "vs raw", "closed p50 us", "vs raw",
                           "closed p99 us"])
        ev = res["events"]
        print(f"\nevents, one way ({ev['count']:,} Tick events, publisher waits at the high-water mark)")
        print_table([["raw pyzmq XPUB -> SUB", ev["raw_events_per_s"], "-"],
                     ["client.publish -> service subscriber", ev["events_per_s"], f"{ev['ratio']:.0%}"]],
                    ["path", "events/s", "vs raw"])
        w = res["workers"]
        print(f"\nCPU-bound Burn(n={w['burn_n']:,}) (~{w['handler_cpu_ms']:.2f} ms of CPU per call), "
              f"{BURN_CONCURRENCY} calls in flight")
        print_table([["workers=1", w["workers=1"], "-"], ["workers=2", w["workers=2"], f"{w['ratio']:.2f}x"]],
                    ["service", "calls/s", "vs workers=1"])
        print()
    print(f"aim: service+client pipelined calls/s >= {AIM:.0%} of raw pyzmq (as the median of five runs: --runs 5); "
          "workers=2 clearly above workers=1")


def main() -> None:
    """Command line entry point (also runs the server halves, with ``--serve``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default=None)
    parser.add_argument("--quick", action="store_true", help="short runs (figures are noisier)")
    parser.add_argument("--runs", type=int, default=0, metavar="N",
                        help="the request-reply part alone, N times, with each run's ratios and their median")
    parser.add_argument("--serve", choices=["raw-echo", "raw-sub", "service", "events"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "raw-echo":
        _serve_raw_echo()
    elif args.serve == "raw-sub":
        _serve_raw_sub()
    elif args.serve is not None:
        run_loop(_serve_ours(args.serve), prefer_uvloop=args.loop == "uvloop")
    elif args.runs > 0:
        loop = args.loop if args.loop in ("asyncio", "uvloop") else "uvloop" if uvloop_available() else "asyncio"
        print(f"== {loop}: request-reply, {args.runs} runs")
        report_runs(request_reply_runs(args.runs, args.quick, loop))
    else:
        loops = None if args.loop is None else ("asyncio", "uvloop") if args.loop == "both" else (args.loop,)
        report(run(args.quick, loops))


if __name__ == "__main__":
    main()
