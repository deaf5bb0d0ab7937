"""Call metrics: calls, errors by status, and a latency histogram per contract, counted by
interceptors on the call path.

:class:`ServiceMetrics` is the built-in first interceptor of every service (its ``after``
hook counts each call the service serves); :class:`ClientMetrics` counts the calls a client
makes (a :class:`~nanomsg_kernel.node.Node` gives one to each binding to a URL). Read them in code
(``service.metrics.snapshot()``), as a one-line-per-contract summary, or over HTTP through
the Prometheus collector of ``nanomsg_kernel.app.prometheus`` (the application layer).
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from nanomsg_kernel.client_interceptors import ClientCall, ClientInterceptor
from nanomsg_kernel.errors import Status
from nanomsg_kernel.interceptors import ServerInterceptor

if TYPE_CHECKING:
    from nanomsg_kernel.context import Context

__all__ = ["LATENCY_BUCKETS", "CallMetrics", "ClientMetrics", "ContractMetrics", "ServiceMetrics"]

_bisect_left = bisect.bisect_left
_OK = Status.OK

LATENCY_BUCKETS: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Upper bounds (seconds) of the latency histogram buckets; a last bucket holds the rest.
From 10 µs (an in-process call) to 10 s, about three per decade."""


class ContractMetrics:
    """Counters for one contract of one service."""

    __slots__ = ("buckets", "calls", "errors", "total_seconds")

    def __init__(self) -> None:
        self.calls = 0
        self.errors: dict[Status, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total_seconds = 0.0

    def observe(self, status: Status, seconds: float) -> None:
        """Record one call's outcome and duration."""
        self.calls += 1
        if status is not Status.OK:
            self.errors[status] = self.errors.get(status, 0) + 1
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total_seconds += seconds

    def quantile(self, q: float) -> float:
        """An upper bound of the ``q`` quantile of latency, from the histogram (seconds)."""
        if not self.calls:
            return 0.0
        rank, seen = q * self.calls, 0
        for i, n in enumerate(self.buckets):
            seen += n
            if seen >= rank and n:
                return LATENCY_BUCKETS[i] if i < len(LATENCY_BUCKETS) else float("inf")
        return float("inf")


class CallMetrics:
    """Counts of calls by contract name; what :class:`ServiceMetrics` and
    :class:`ClientMetrics` share."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.contracts: dict[str, ContractMetrics] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.service!r})"

    def observe(self, contract: str, status: Status, seconds: float) -> None:
        """Record one call of ``contract``."""
        m = self.contracts.get(contract)
        if m is None:
            m = self.contracts[contract] = ContractMetrics()
        m.observe(status, seconds)

    def observe_ok(self, contract: str, seconds: float) -> None:
        """Record one successful call of ``contract`` (:meth:`observe` with ``Status.OK``, in
        one step: the per-call path of a service)."""
        m = self.contracts.get(contract)
        if m is None:
            m = self.contracts[contract] = ContractMetrics()
        m.calls += 1
        m.buckets[_bisect_left(LATENCY_BUCKETS, seconds)] += 1
        m.total_seconds += seconds

    def snapshot(self) -> dict[str, dict[str, object]]:
        """A plain-data copy: per contract, calls, errors by status name, p50/p99 bounds, mean."""
        out: dict[str, dict[str, object]] = {}
        for name, m in sorted(self.contracts.items()):
            out[name] = {
                "calls": m.calls,
                "errors": {s.name: n for s, n in sorted(m.errors.items())},
                "p50_seconds": m.quantile(0.5),
                "p99_seconds": m.quantile(0.99),
                "mean_seconds": m.total_seconds / m.calls if m.calls else 0.0,
            }
        return out

    def summary(self) -> str:
        """One human-readable line per contract."""
        lines = []
        for name, m in sorted(self.contracts.items()):
            errors = sum(m.errors.values())
            mean = m.total_seconds / m.calls * 1e6 if m.calls else 0.0
            lines.append(
                f"{self.service}.{name}: {m.calls} calls, {errors} errors, mean {mean:.0f} us, "
                f"p99 <= {m.quantile(0.99) * 1e6:.0f} us"
            )
        return "\n".join(lines)



class ServiceMetrics(CallMetrics, ServerInterceptor):
    """Metrics of one service, by contract name (``"event:<Contract>"`` for subscribers, and
    ``"<bad frame>"``, ``"<bad body>"``, ``"<bad event>"`` for frames refused before any
    handler). An interceptor: its ``after`` hook counts each call it sees."""

    def after(self, msg: Any, ctx: Context, status: Status, seconds: float, error: BaseException | None) -> None:
        """Count the call (the interceptor's hook)."""
        m = self.contracts.get(ctx.contract)
        if m is None:
            m = self.contracts[ctx.contract] = ContractMetrics()
        if status is _OK:  # observe_ok, inline: this runs on every call
            m.calls += 1
            m.buckets[_bisect_left(LATENCY_BUCKETS, seconds)] += 1
            m.total_seconds += seconds
        else:
            m.observe(status, seconds)


class ClientMetrics(CallMetrics, ClientInterceptor):
    """Metrics of the calls one client makes, by contract name (seconds: the whole call, as
    its caller waits for it). An interceptor: add it to a client's chain.

    Args:
        service: the name the calls are reported under (a binding's name, or the URL).
        caller: the service that makes the calls, if any (a label of its own in exports).
    """

    def __init__(self, service: str, caller: str | None = None) -> None:
        super().__init__(service)
        self.caller = caller

    def after(self, msg: Any, call: ClientCall, status: Status, seconds: float, error: BaseException | None) -> None:
        """Count the call (the interceptor's hook)."""
        if status is _OK:
            self.observe_ok(call.contract, seconds)
        else:
            self.observe(call.contract, status, seconds)
