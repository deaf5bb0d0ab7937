"""The services' and clients' call metrics in a prometheus_client registry.

::

    registry = metrics_registry(lambda: [calc.metrics, *node.client_metrics])
    text = prometheus_client.generate_latest(registry)

:class:`CallCollector` reads the counters the metrics interceptors keep
(:mod:`nanomsg_kernel.metrics`) when the registry is collected, so counting stays a few
integer additions per call; a scrape builds the metric families from them:

- ``nanomsg_calls_total``, ``nanomsg_errors_total`` (by ``status``) and the histogram
  ``nanomsg_call_seconds``, by ``service`` and ``contract``: the calls the services served;
- ``nanomsg_client_calls_total``, ``nanomsg_client_errors_total`` and
  ``nanomsg_client_call_seconds``, by ``caller`` (the calling service), ``service`` (the
  binding's name) and ``contract``: the calls they made through bindings to URLs.

:func:`metrics_registry` adds prometheus_client's process, platform and garbage collector
metrics (``process_*``, ``python_info``, ``python_gc_*``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from nanomsg_kernel.metrics import LATENCY_BUCKETS, CallMetrics, ClientMetrics

__all__ = ["CallCollector", "metrics_registry"]

_BOUNDS = tuple(str(b) for b in LATENCY_BUCKETS)


class CallCollector(Collector):
    """A custom collector over the call metrics ``source()`` returns (called per scrape):
    :class:`~nanomsg_kernel.metrics.ServiceMetrics` as server metrics,
    :class:`~nanomsg_kernel.metrics.ClientMetrics` as client metrics."""

    def __init__(self, source: Callable[[], Iterable[CallMetrics]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        """The six metric families, built from the counters as they are now."""
        server = _Families("nanomsg", "handled, by service and contract", ["service", "contract"])
        client = _Families("nanomsg_client", "made through bindings, by calling service, binding and contract",
                           ["caller", "service", "contract"])
        for metrics in self.source():
            if isinstance(metrics, ClientMetrics):
                client.add(metrics, [metrics.caller or ""])
            else:
                server.add(metrics, [])
        yield from server.families()
        yield from client.families()


class _Families:
    """The calls, errors and latency families of one side (server or client)."""

    def __init__(self, prefix: str, what: str, labels: list[str]) -> None:
        self.calls = CounterMetricFamily(f"{prefix}_calls", f"Calls {what}.", labels=labels)
        self.errors = CounterMetricFamily(f"{prefix}_errors", f"Calls {what}, that ended with an error status.",
                                          labels=[*labels, "status"])
        self.seconds = HistogramMetricFamily(f"{prefix}_call_seconds", f"Latency (seconds) of calls {what}.",
                                             labels=labels)

    def add(self, metrics: CallMetrics, first: list[str]) -> None:
        for contract, m in sorted(metrics.contracts.items()):
            labels = [*first, metrics.service, contract]
            self.calls.add_metric(labels, m.calls)
            for status, n in sorted(m.errors.items()):
                self.errors.add_metric([*labels, status.name], n)
            cumulative, buckets = 0, []
            for bound, n in zip(_BOUNDS, m.buckets, strict=False):
                cumulative += n
                buckets.append((bound, float(cumulative)))
            buckets.append(("+Inf", float(m.calls)))
            self.seconds.add_metric(labels, buckets, m.total_seconds)

    def families(self) -> Iterator[Metric]:
        yield self.calls
        yield self.errors
        yield self.seconds


def metrics_registry(source: Callable[[], Iterable[CallMetrics]], *, process: bool = True) -> CollectorRegistry:
    """A registry holding a :class:`CallCollector` over ``source`` and, with ``process``,
    prometheus_client's process, platform and garbage collector metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CallCollector(source))
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry
