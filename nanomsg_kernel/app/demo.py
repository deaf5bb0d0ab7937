"""The demo: the example kernel's services in one node, called every way there is.

``nanomsg-kernel demo`` hosts ``nanomsg_kernel.contracts.services:calc`` and ``:gateway`` (bound to
``calc``) in one node, serves ``calc`` on ``inproc://``, ``tcp://`` and ``zmq+tcp://`` on
loopback (and on ``nats://``, through a nats-server of its own, when ``nats-server`` is on
PATH: :mod:`~nanomsg_kernel.app.nats_local`; otherwise it says how to get one), then for each way of calling it (the in-process binding, and a client over each
transport) checks sample results and makes ``calls`` sequential calls, timing each one. It
prints a table of calls, errors, p50/p99 latency and calls per second per transport, the
sample results, and the services' metrics on shutdown. The result is non-zero if any check
or call failed.
"""

from __future__ import annotations

import contextlib
import operator
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nanomsg_kernel.binding import Binding
from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.contracts.services import calc, done_events, gateway
from nanomsg_kernel.errors import RemoteError, ServiceError, Status
from nanomsg_kernel.node import Node

__all__ = ["DEFAULT_CALLS", "TRANSPORTS", "DemoResult", "Row", "run_demo"]

TRANSPORTS: dict[str, str] = {
    "binding": "",
    "inproc": "inproc://demo-calc",
    "tcp": "tcp://127.0.0.1:0",
    "zmq+tcp": "zmq+tcp://127.0.0.1:0",
    "nats": "nats://{server}/demo.calc",
}
"""Ways of calling ``calc`` the demo knows, and the URL ``calc`` listens on for each."""
DEFAULT_CALLS = 2000
_EXPECTED: dict[WorkType, Callable[[int, int], int]] = {
    WorkType.SUM: operator.add,
    WorkType.DIFF: operator.sub,
    WorkType.MULT: operator.mul,
    WorkType.DIV: operator.floordiv,
}
"""What each operation must give (checked against the service's answers)."""
_CALL_TIMEOUT = 5.0

Progress = Callable[[int], None]
Call = Callable[[Any], Awaitable[Any]]


@dataclass
class Row:
    """What one way of calling measured."""

    transport: str
    url: str
    calls: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    checks: dict[str, str | None] = field(default_factory=dict)
    """Check name -> ``None`` when it passed, else what went wrong."""
    first_error: str | None = None

    def quantile_us(self, q: float) -> float:
        """The ``q`` quantile of the measured latencies, in microseconds."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6

    @property
    def ok(self) -> bool:
        """No error and every check passed."""
        return self.errors == 0 and all(v is None for v in self.checks.values())


@dataclass
class DemoResult:
    """Everything the demo found."""

    rows: list[Row]
    skipped: dict[str, str]
    gateway_check: str | None
    summary: str

    @property
    def ok(self) -> bool:
        """True when every row and the gateway check passed."""
        return self.gateway_check is None and all(r.ok for r in self.rows)


CHECKS: tuple[tuple[str, Any, Callable[[Any], bool], str], ...] = (
    ("CalcWork 6 DIV 3 -> 2", CalcWork(a=6, b=3, op=WorkType.DIV),
     lambda r: isinstance(r, CalcWork) and r.result == 2, "result 2"),
    ("CalcWork 6 DIV 0 -> BAD_REQUEST", CalcWork(a=6, b=0, op=WorkType.DIV),
     lambda r: isinstance(r, RemoteError) and r.status is Status.BAD_REQUEST, "RemoteError BAD_REQUEST"),
    ("Echo 'hello' -> 'HELLO'", Echo(text="hello"),
     lambda r: isinstance(r, Echo) and r.reply == "HELLO", "reply 'HELLO'"),
)
"""Sample calls made on every transport: (name, request, test of the outcome, expected)."""


def _shown(outcome: Any) -> str:
    if isinstance(outcome, ServiceError):
        return f"{type(outcome).__name__} {outcome}"
    return repr(outcome)


async def _outcome(call: Call, msg: Any) -> Any:
    try:
        return await call(msg)
    except ServiceError as exc:
        return exc


async def _exercise(row: Row, call: Call, calls: int, progress: Progress) -> None:
    for name, msg, test, expected in CHECKS:
        got = await _outcome(call, msg)
        row.checks[name] = None if test(got) else f"expected {expected}, got {_shown(got)}"
    ops = list(WorkType)
    clock = time.perf_counter
    latencies = row.latencies
    started = clock()
    for i in range(calls):
        op = ops[i % len(ops)]
        msg = CalcWork(a=1000 + i, b=7, op=op)
        t0 = clock()
        try:
            reply = await call(msg)
        except ServiceError as exc:
            latencies.append(clock() - t0)
            row.errors += 1
            row.first_error = row.first_error or _shown(exc)
        else:
            latencies.append(clock() - t0)
            if reply.result != _EXPECTED[op](1000 + i, 7):
                row.errors += 1
                row.first_error = row.first_error or f"wrong result for {msg!r}: {reply.result}"
        row.calls += 1
        if (i + 1) % 100 == 0 or i + 1 == calls:
            progress(100 if (i + 1) % 100 == 0 else (i + 1) % 100)
    row.seconds = clock() - started


async def _gateway_check() -> str | None:
    """A call into ``gateway``, which forwards to ``calc`` through its binding and announces it."""
    try:
        done = await gateway.dispatch(CalcWork(a=6, b=7, op=WorkType.MULT), deadline=None)
    except ServiceError as exc:
        return f"gateway call failed: {exc}"
    if done.result != 42:
        return f"expected result 42, got {done!r}"
    if not done_events or done_events[-1] != CalcDone(work=6, result=42):
        return "calc did not receive the CalcDone event"
    return None


def available(transports: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The transports that can be used here, and why the others cannot."""
    from nanomsg_kernel.transports.base import get_transport

    usable: list[str] = []
    skipped: dict[str, str] = {}
    for name in transports:
        url = TRANSPORTS[name]
        if name == "nats":
            from nanomsg_kernel.app.nats_local import nats_server_missing

            missing = nats_server_missing()
            if missing is not None:
                skipped[name] = missing
                continue
            url = url.format(server="127.0.0.1:4222")
        if url:
            try:
                get_transport(url)
            except Exception as exc:
                skipped[name] = f"{type(exc).__name__}: {exc}"
                continue
        usable.append(name)
    return usable, skipped


async def run_demo(
    calls: int = DEFAULT_CALLS,
    transports: Sequence[str] = tuple(TRANSPORTS),
    *,
    echo: Callable[[str], None] = print,
    progress: Callable[[int], Any] | None = None,
) -> DemoResult:
    """Run the demo (see the module docs) and return what it found; ``echo`` gets the report.

    Args:
        calls: timed calls per transport.
        transports: names from :data:`TRANSPORTS`.
        progress: a context factory ``progress(total)`` whose value is called with the number
            of calls done since the last update (e.g. a ``click.progressbar``'s ``update``).
    """
    usable, skipped = available(transports)
    for name, why in skipped.items():
        echo(f"{name}:// skipped: transport not available ({why})")
    async with contextlib.AsyncExitStack() as stack:
        listen = dict(TRANSPORTS)
        if "nats" in usable:
            from nanomsg_kernel.app.nats_local import local_nats_server

            listen["nats"] = listen["nats"].format(server=await stack.enter_async_context(local_nats_server()))
        rows, gateway_check = await _run_node([(n, listen[n]) for n in usable], calls, echo, progress)
    summary = "\n".join(s.metrics.summary() for s in (calc, gateway) if s.metrics.contracts)
    result = DemoResult(rows, skipped, gateway_check, summary)
    for line in render(result):
        echo(line)
    return result


async def _run_node(usable: list[tuple[str, str]], calls: int, echo: Callable[[str], None],
                    progress: Callable[[int], Any] | None) -> tuple[list[Row], str | None]:
    """Serve ``calc`` on each of ``usable``'s URLs in a node, and call it every way; the rows
    and the gateway check's failure (``None``: passed)."""
    urls = [url for _name, url in usable if url]
    node = Node("demo")
    node.add(calc, listen=urls)
    node.add(gateway, bindings={"calc": calc})
    rows: list[Row] = []
    async with node:
        bound = dict(zip([n for n, url in usable if url], [lst.url for lst in node.listeners], strict=True))
        described = ", ".join(bound.values()) or "no listener"
        from nanomsg_kernel.transports.loop import loop_name

        echo(f"node 'demo' ({loop_name()} event loop): calc on {described}; gateway bound to calc (in-process)")
        gateway_check = await _gateway_check()
        with _progress(progress, calls * len(usable)) as step:
            for name, _url in usable:
                if name == "binding":
                    row = Row("binding (in-process)", "gateway.bindings.calc")
                    await _exercise(row, _via_binding(gateway.bindings["calc"]), calls, step)
                else:
                    row = Row(f"{name}://", bound[name])
                    client = Client(CalcRoute, bound[name], timeout=_CALL_TIMEOUT)
                    try:
                        async with client:
                            await _exercise(row, client.call, calls, step)
                    except (ServiceError, OSError) as exc:  # could not connect, or the connection broke
                        row.checks["connection"] = f"{type(exc).__name__}: {exc}"
                rows.append(row)
    return rows, gateway_check


def _via_binding(binding: Binding) -> Call:
    async def call(msg: Any) -> Any:
        return await binding.call(msg, timeout=_CALL_TIMEOUT)

    return call


@contextmanager
def _progress(factory: Callable[[int], Any] | None, total: int) -> Iterator[Progress]:
    if factory is None:
        yield lambda _n: None
        return
    with factory(total) as bar:
        yield bar.update


def render(result: DemoResult) -> list[str]:
    """The report: the table, sample results, failures, metrics summary and verdict."""
    head = ("transport", "url", "calls", "errors", "p50 us", "p99 us", "calls/s")
    table: list[tuple[str, ...]] = [head]
    for r in result.rows:
        rate = r.calls / r.seconds if r.seconds else 0.0
        table.append((r.transport, r.url, str(r.calls), str(r.errors),
                      f"{r.quantile_us(0.5):.0f}", f"{r.quantile_us(0.99):.0f}", f"{rate:,.0f}"))
    lines = ["", *_aligned(table, right={2, 3, 4, 5, 6})]
    if result.rows:
        names = [name for name, *_ in CHECKS]
        sample: list[tuple[str, ...]] = [("sample results", *(r.transport.split(" ")[0] for r in result.rows))]
        for name in names:
            sample.append((name, *(_verdict(r, name) for r in result.rows)))
        lines += ["", *_aligned(sample, right=set())]
    lines.append("gateway -> calc through the binding (6 MULT 7 -> 42, CalcDone event): "
                 + ("ok" if result.gateway_check is None else f"FAILED: {result.gateway_check}"))
    for r in result.rows:
        for name, problem in r.checks.items():
            if problem is not None:
                lines.append(f"FAILED {r.transport} {name}: {problem}")
        if r.errors:
            lines.append(f"FAILED {r.transport}: {r.errors} of {r.calls} calls failed; first: {r.first_error}")
    lines += ["", "metrics summary (per service and contract):", result.summary or "(no calls)", ""]
    verdict = "all checks passed" if result.ok else "SOME CHECKS FAILED"
    if result.skipped:
        verdict += f" (skipped: {', '.join(result.skipped)})"
    lines.append(verdict)
    return lines


def _verdict(row: Row, check: str) -> str:
    if check not in row.checks:
        return "not run"
    return "ok" if row.checks[check] is None else "FAILED"


def _aligned(rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip()
        for r in rows
    ]


def run(calls: int = DEFAULT_CALLS, transports: Sequence[str] = tuple(TRANSPORTS), **kwargs: Any) -> DemoResult:
    """Run the demo in a new event loop (uvloop when installed)."""
    from nanomsg_kernel.transports.loop import run as run_loop

    result: DemoResult = run_loop(run_demo(calls, transports, **kwargs))
    return result
