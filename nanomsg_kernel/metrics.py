"""Per-service metrics: calls, errors by status, and a latency histogram per contract.

Read them in code (``service.metrics.snapshot()``), as Prometheus text
(:meth:`ServiceMetrics.prometheus`) or as a one-line-per-contract summary.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from nanomsg_kernel.errors import Status

__all__ = ["LATENCY_BUCKETS", "ContractMetrics", "ServiceMetrics", "prometheus_text"]

_bisect_left = bisect.bisect_left

LATENCY_BUCKETS: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Upper bounds (seconds) of the latency histogram buckets; a last bucket holds the rest."""


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


class ServiceMetrics:
    """Metrics of one service, by contract name (and ``"events"`` for subscribers)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.contracts: dict[str, ContractMetrics] = {}

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

    def prometheus(self) -> str:
        """This service's metrics in the Prometheus text exposition format."""
        return prometheus_text([self])


def prometheus_text(services: Iterable[ServiceMetrics]) -> str:
    """Prometheus text for several services (one ``# HELP``/``# TYPE`` block per metric)."""
    services = list(services)
    calls, errors, hist = [], [], []
    for s in services:
        for name, m in sorted(s.contracts.items()):
            labels = f'service="{_esc(s.service)}",contract="{_esc(name)}"'
            calls.append(f"nanomsg_calls_total{{{labels}}} {m.calls}")
            for status, n in sorted(m.errors.items()):
                errors.append(f'nanomsg_errors_total{{{labels},status="{status.name}"}} {n}')
            cumulative = 0
            for bound, n in zip(LATENCY_BUCKETS, m.buckets, strict=False):
                cumulative += n
                hist.append(f'nanomsg_call_seconds_bucket{{{labels},le="{bound}"}} {cumulative}')
            hist.append(f'nanomsg_call_seconds_bucket{{{labels},le="+Inf"}} {m.calls}')
            hist.append(f"nanomsg_call_seconds_sum{{{labels}}} {m.total_seconds}")
            hist.append(f"nanomsg_call_seconds_count{{{labels}}} {m.calls}")
    return "\n".join([
        "# HELP nanomsg_calls_total Calls handled, by service and contract.",
        "# TYPE nanomsg_calls_total counter",
        *calls,
        "# HELP nanomsg_errors_total Calls that ended with an error status.",
        "# TYPE nanomsg_errors_total counter",
        *errors,
        "# HELP nanomsg_call_seconds Handler latency.",
        "# TYPE nanomsg_call_seconds histogram",
        *hist,
    ]) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
