"""Run a node from its config until SIGINT or SIGTERM (``nanomsg-kernel serve``).

What it prints on ``out``, one line each, so that scripts can read it::

    listening calc tcp://127.0.0.1:41923
    listening calc zmq+tcp://127.0.0.1:40127
    metrics http://127.0.0.1:39201/metrics
    ready node=calc-node services=calc,gateway
    ... (on SIGINT/SIGTERM)
    stopping: SIGTERM received; in-flight calls get up to 5s
    stopped
    metrics summary:
    calc.CalcWork: 3 calls, 1 errors, mean 21 us, p99 <= 50 us

The metrics listener (``node.metrics.listen``) starts first and stops last: ``/healthz``
answers while the process runs, ``/readyz`` only while every service's health is
``SERVING`` (not while the node starts, nor from the stop signal on). On the first signal
the listeners stop accepting, calls in flight get the grace period, the bindings close and
the metrics summary is printed; a second signal only says it is already stopping (the grace
period bounds the wait). With ``node.drain`` set, the node first goes on serving for that
many seconds, its health checks answering ``DRAINING`` (a second signal ends the drain at
once). Once stopped by a signal, SIGINT and SIGTERM
are ignored from then on, so that a late one cannot interrupt the process on its way out.
Names and URLs come from the config file, so every line goes through
:func:`~nanomsg_kernel.app.printable.printable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from nanomsg_kernel.app.metrics_http import MetricsServer
from nanomsg_kernel.app.printable import printable
from nanomsg_kernel.builtin import HealthStatus

if TYPE_CHECKING:
    from nanomsg_kernel.app.config import NodeConfig
    from nanomsg_kernel.metrics import CallMetrics
    from nanomsg_kernel.node import Node

__all__ = ["metrics_summary", "node_metrics", "serve_node"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def node_metrics(node: Node) -> list[CallMetrics]:
    """The call metrics of a node: each service's, then each binding's to a URL."""
    return [*(s.metrics for s in node.services.values()), *node.client_metrics]


def metrics_summary(node: Node) -> str:
    """Every service's metrics summary (one line per contract), or a note that nothing was called."""
    lines = [s.metrics.summary() for s in node.services.values() if s.metrics.contracts]
    return "\n".join(lines) if lines else "(no calls)"


async def serve_node(config: NodeConfig, echo: Callable[[str], None], *, grace: float | None = None) -> None:
    """Start the node of ``config``, print its addresses, wait for a signal, stop, print a summary.

    Raises:
        Exception: whatever stopped a listener from starting (the node is closed again).
    """
    grace = config.grace if grace is None else grace

    def say(line: str) -> None:
        echo(printable(line))

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    again = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        if len(received) == 1:
            draining = f"draining for {config.drain:g}s, then " if config.drain else ""
            say(f"stopping: {sig.name} received; {draining}in-flight calls get up to {grace:g}s")
            stop.set()
        elif not again.is_set() and config.drain:
            say(f"{sig.name} received: draining ends now (in-flight calls get up to {grace:g}s)")
            again.set()
        else:
            say(f"{sig.name} received: already stopping (at most {grace:g}s)")

    installed = []
    for sig in _SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on this platform/thread
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    node = config.build()
    metrics: MetricsServer | None = None
    started = False

    def not_ready() -> list[str]:
        # Until the node has started every listener, and from the stop signal on (while
        # calls in flight drain), the node is not ready for new calls.
        if not started:
            return ["starting"]
        reasons = [f"{name}: {service.health.name}" for name, service in node.services.items()
                   if service.health is not HealthStatus.SERVING]
        if stop.is_set() and not reasons:
            reasons.append("draining: the node is stopping")
        return reasons

    try:
        try:
            if config.metrics_listen is not None:
                metrics = MetricsServer(lambda: node_metrics(node), *config.metrics_listen, ready=not_ready)
                await metrics.start()
            await node.start()
            started = True
            try:
                urls = [(spec.name, ls) for spec in config.services for ls in spec.listen]
                for (service, _spec), listener in zip(urls, node.listeners, strict=True):
                    say(f"listening {service} {listener.url}")
                if metrics is not None:
                    say(f"metrics {metrics.url}")
                say(f"ready node={config.name} services={','.join(s.name for s in config.services)}")
                await stop.wait()
            finally:
                if received and config.drain:  # health checks answer DRAINING; a second signal ends it
                    node.begin_drain()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(again.wait(), config.drain)
                await node.close(grace)  # /readyz answers 503 meanwhile
        finally:
            if metrics is not None:
                await metrics.close()
        say("stopped")
        say("metrics summary:")
        for line in metrics_summary(node).split("\n"):
            say(line)
    finally:
        if received:  # the process is on its way out: a late signal must not interrupt that
            # Blocked while the loop's handlers are swapped for SIG_IGN, so no signal can land in
            # between on Python's default handler; a pending one is discarded by SIG_IGN.
            signal.pthread_sigmask(signal.SIG_BLOCK, installed)
        for sig in installed:
            loop.remove_signal_handler(sig)
            if received:
                signal.signal(sig, signal.SIG_IGN)
        if received:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, installed)
