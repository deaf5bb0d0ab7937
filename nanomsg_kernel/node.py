"""A node hosts many services in one process and wires them only through bindings.

::

    node = Node()
    node.add(calc, listen=["tcp://127.0.0.1:7000"])
    node.add(gateway, bindings={"calc": calc})          # or {"calc": "tcp://host:7000"}
    async with node:
        ...

A binding to a service object of the same node is an in-process call; a binding to a URL
goes through a client. Nothing else connects services: there is no registry to look a
service up by name (workerd's capability model).

A service's bindings are those of the node it runs in, so a :class:`Service` object runs in
one node at a time: from :meth:`Node.start` to :meth:`Node.close`, adding it to another node,
or starting (or wiring) another node that has it, raises
:class:`~nanomsg_kernel.errors.ConfigError`. To run the same code in two nodes of one
process, make one ``Service`` per node (e.g. with a function that builds it); after a
node closed, its services may run in another.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from nanomsg_kernel.binding import Binding, Bindings, LocalBinding, RemoteBinding
from nanomsg_kernel.builtin import HealthStatus
from nanomsg_kernel.errors import ConfigError
from nanomsg_kernel.lifecycle import AsyncResource
from nanomsg_kernel.metrics import ClientMetrics
from nanomsg_kernel.service import Service

if TYPE_CHECKING:
    from nanomsg_kernel.transports.base import Listener

__all__ = ["Node"]

BindingTarget = Service | str | Binding

_RUNNING: weakref.WeakKeyDictionary[Service, Node] = weakref.WeakKeyDictionary()
"""Each service that runs in a node, to that node (from its start to its close)."""


class Node(AsyncResource):
    """Services of one process, their bindings and their listeners."""

    def __init__(self, name: str = "node") -> None:
        self.name = name
        self.services: dict[str, Service] = {}
        self.listeners: list[Listener] = []
        self.client_metrics: list[ClientMetrics] = []
        """The calls of each binding to a URL (made when the node wires them), by contract."""
        self._bindings: dict[str, Mapping[str, BindingTarget]] = {}
        self._listen: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._started = False

    def add(
        self,
        service: Service,
        *,
        bindings: Mapping[str, BindingTarget] | None = None,
        listen: Iterable[str | tuple[str, Mapping[str, Any]]] = (),
        expose_errors: bool | None = None,
    ) -> Service:
        """Host ``service``, give it ``bindings`` (name -> service, URL or Binding) and
        serve it on each ``listen`` URL (or ``(url, options)``).

        ``expose_errors``: set the service's
        :attr:`~nanomsg_kernel.service.Service.expose_errors` (send the text of unexpected
        exceptions to callers: development only); ``None`` leaves it as it is.
        """
        if expose_errors is not None and not isinstance(expose_errors, bool):
            raise ConfigError(f"expose_errors must be true or false, got {expose_errors!r}")
        if self._started:
            raise ConfigError(f"node {self.name!r} is running; add services before start()")
        if service.name in self.services:
            raise ConfigError(f"node {self.name!r} already has a service named {service.name!r}")
        self._check_free(service)
        self.services[service.name] = service
        if expose_errors is not None:
            service.expose_errors = expose_errors
        self._bindings[service.name] = dict(bindings or {})
        self._listen[service.name] = [
            (item, {}) if isinstance(item, str) else (item[0], dict(item[1])) for item in listen
        ]
        return service

    def __getitem__(self, name: str) -> Service:
        return self.services[name]

    def _make_binding(self, owner: str, name: str, target: BindingTarget) -> Binding:
        if isinstance(target, Binding):
            return target
        if isinstance(target, Service):
            if self.services.get(target.name) is not target:
                raise ConfigError(
                    f"binding {name!r} of service {owner!r} targets service {target.name!r}, "
                    f"which is not in node {self.name!r}"
                )
            return LocalBinding(name, target, caller=owner)
        if isinstance(target, str):
            if "://" not in target:
                raise ConfigError(f"binding {name!r} of service {owner!r}: bad URL {target!r}")
            metrics = ClientMetrics(name, owner)
            self.client_metrics.append(metrics)
            return RemoteBinding(name, target, interceptors=(metrics, *self.services[owner].client_interceptors))
        raise ConfigError(f"binding {name!r} of service {owner!r}: cannot bind to {target!r}")

    def _check_free(self, service: Service) -> None:
        """``ConfigError`` if ``service`` runs in another node (its bindings are that node's)."""
        other = _RUNNING.get(service)
        if other is not None and other is not self:
            raise ConfigError(
                f"service {service.name!r} is running in node {other.name!r}; a Service object runs in one "
                f"node at a time (its bindings are its node's): make one Service per node, or close "
                f"node {other.name!r} first"
            )

    def wire(self) -> None:
        """Give every service its bindings (done by :meth:`start`; errors are ``ConfigError``,
        among them a service running in another node)."""
        for service in self.services.values():
            self._check_free(service)
        self.client_metrics = []
        for owner, targets in self._bindings.items():
            made = {name: self._make_binding(owner, name, t) for name, t in targets.items()}
            self.services[owner].bindings = Bindings(made)

    async def start(self) -> None:
        """Wire the bindings and start every listener; each service's
        :attr:`~nanomsg_kernel.service.Service.health` is ``NOT_SERVING`` meanwhile and
        ``SERVING`` once all are up."""
        self.wire()
        self._started = True
        for service in self.services.values():
            _RUNNING[service] = self
            service.set_health(HealthStatus.NOT_SERVING)
        try:
            for name, urls in self._listen.items():
                for url, options in urls:
                    listener = self.services[name].serve(url, **options)
                    await listener.start()
                    self.listeners.append(listener)
        except BaseException:
            await self.close()
            raise
        for service in self.services.values():
            service.set_health(HealthStatus.SERVING)

    def begin_drain(self) -> None:
        """Make every service's health ``DRAINING`` (it goes on serving): what
        :meth:`close` does first."""
        for service in self.services.values():
            service.set_health(HealthStatus.DRAINING)

    async def close(self, grace: float = 5.0, *, drain: float = 0.0) -> None:
        """Close listeners (in-flight requests finish within ``grace``), bindings, and the
        services' sync-handler threads (those still running get what is left of ``grace``,
        then are left to finish on their own: see :meth:`Service.close`).

        Each service's health is ``DRAINING`` from the start of the close and
        ``NOT_SERVING`` at its end. ``drain``: seconds the node goes on serving first,
        answering health checks ``DRAINING``, so that whoever routes calls here sees it and
        sends them elsewhere before the listeners stop (a cancelled drain leaves the node
        serving, ``DRAINING``; close it again).
        """
        self.begin_drain()
        if drain > 0 and self.listeners:
            await asyncio.sleep(drain)
        until = time.monotonic() + grace
        listeners, self.listeners = self.listeners, []
        for listener in reversed(listeners):
            await listener.close(grace)
        for service in self.services.values():
            await service.bindings.close()
        for service in self.services.values():
            await service.close(max(0.0, until - time.monotonic()))
            service.set_health(HealthStatus.NOT_SERVING)
            if _RUNNING.get(service) is self:
                del _RUNNING[service]
        self._started = False
