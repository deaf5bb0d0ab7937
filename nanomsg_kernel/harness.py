"""An in-memory test harness for your services: serve a node without sockets, call it, see
what it published, and replace a binding with a fake.

::

    from nanomsg_kernel.harness import Harness

    async def test_an_order_reserves_stock_and_announces_itself() -> None:
        async with Harness(node) as h:                 # the node of your app, not started
            h.fake("orders", "payments", lambda msg: msg.evolve(paid=True))
            placed = await h.call(PlaceOrder(sku="a", qty=2))
            assert placed.ok
            assert h.events(OrderPlaced) == [OrderPlaced(sku="a", qty=2)]

What runs is your code as the node wires it: each service gets its bindings (to services of
the node: direct calls, as in production), a call goes in as a request frame and its reply
comes back decoded (the codec's checks, deadlines and error mapping are the wire's: a
handler's ``ServiceError`` arrives as :class:`~nanomsg_kernel.errors.RemoteError`), an event
reaches every subscriber of the node and the harness waits until they have run. Nothing
listens, nothing connects: a binding to a URL the node does not serve itself must be
faked (calling it raises :class:`~nanomsg_kernel.errors.CapabilityError` saying so).

Every call and publish a service makes through a binding is recorded (:attr:`Harness.calls`,
:attr:`Harness.published`), faked or not.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, overload

from nanomsg_kernel.binding import Binding, Bindings, LocalBinding, RemoteBinding
from nanomsg_kernel.client import caller_error
from nanomsg_kernel.errors import CapabilityError, ConfigError, RemoteError, ServiceError
from nanomsg_kernel.frame import MAX_U32, Kind
from nanomsg_kernel.lifecycle import AsyncResource
from nanomsg_kernel.metadata import Metadata
from nanomsg_kernel.node import BindingTarget, Node
from nanomsg_kernel.service import Service

if TYPE_CHECKING:
    from nanomsg_kernel.contract import Request

__all__ = ["BindingCall", "Fake", "Harness"]

M = TypeVar("M")
R = TypeVar("R")
E = TypeVar("E")

Fake = Service | Callable[[Any], Any]
"""What replaces a binding: a service (its handlers answer, its subscribers get the events) or
a function ``fn(msg)`` (sync or async) whose result is the reply; it may raise
:class:`~nanomsg_kernel.errors.ServiceError`, which the caller gets as ``RemoteError``."""


class BindingCall(NamedTuple):
    """A call or publish a service made through one of its bindings."""

    service: str
    binding: str
    message: Any


class _FunctionBinding(Binding):
    """A binding answered by a function (a fake)."""

    def __init__(self, name: str, fn: Callable[[Any], Any]) -> None:
        self.name = name
        self.fn = fn

    async def call(self, msg: Any, *, timeout: float | None = None, deadline: float | None = None,
                   metadata: Metadata | None = None) -> Any:
        try:
            reply = self.fn(msg)
            if inspect.isawaitable(reply):
                reply = await reply
        except ServiceError as exc:
            if isinstance(exc, RemoteError):
                raise
            raise caller_error(RemoteError(exc.status, exc.message, exc.details)) from None
        return reply

    async def publish(self, event: Any, *, metadata: Metadata | None = None) -> None:
        """Events to a function fake are only recorded."""


class _Recorded(Binding):
    """A service's binding as the harness wires it: recorded, then passed on (or refused)."""

    def __init__(self, harness: Harness, owner: str, name: str, inner: Binding | None, where: str) -> None:
        self.harness = harness
        self.owner = owner
        self.name = name
        self.inner = inner
        self.where = where

    def _target(self) -> Binding:
        if self.inner is None:
            raise CapabilityError(
                f"binding {self.name!r} of service {self.owner!r} goes to {self.where}, which the harness does "
                f"not reach (nothing listens in a harness): replace it with "
                f"harness.fake({self.owner!r}, {self.name!r}, ...)"
            )
        return self.inner

    async def call(self, msg: Any, *, timeout: float | None = None, deadline: float | None = None,
                   metadata: Metadata | None = None) -> Any:
        self.harness.calls.append(BindingCall(self.owner, self.name, msg))
        return await self._target().call(msg, timeout=timeout, deadline=deadline, metadata=metadata)

    async def publish(self, event: Any, *, metadata: Metadata | None = None) -> None:
        self.harness.published.append(BindingCall(self.owner, self.name, event))
        await self._target().publish(event, metadata=metadata)

    async def close(self) -> None:
        """Nothing to release: the harness holds no connection."""


class Harness(AsyncResource):
    """A node's services, served in memory for a test (``async with``).

    Args:
        target: a :class:`~nanomsg_kernel.node.Node` (not started: the harness wires it
            itself, and starts none of its listeners) or one :class:`Service`.
        bindings: for a single service, its bindings (name -> service, URL or binding).
    """

    def __init__(self, target: Node | Service, *, bindings: Mapping[str, BindingTarget] | None = None) -> None:
        if isinstance(target, Service):
            node = Node(f"harness of {target.name}")
            node.add(target, bindings=bindings)
        elif bindings is not None:
            raise ConfigError("bindings= is for a single service; a node has its own")
        else:
            node = target
        self.node = node
        self.calls: list[BindingCall] = []
        """Every call a service made through a binding, in order."""
        self.published: list[BindingCall] = []
        """Every event a service published through a binding, in order."""
        self._fakes: dict[tuple[str, str], Binding] = {}
        self._ids = itertools.count(1)
        self._started = False

    def __repr__(self) -> str:
        return f"<Harness of {', '.join(self.node.services)}>"

    # -- wiring ------------------------------------------------------------------------------

    def fake(self, service: str, binding: str, fake: Fake) -> None:
        """Replace binding ``binding`` of ``service`` with ``fake`` (before or after start).

        Raises:
            ConfigError: the node has no such service, or the service no such binding.
        """
        targets = self._targets(service)
        if binding not in targets:
            raise ConfigError(f"service {service!r} has no binding {binding!r} (it has: {', '.join(targets) or 'none'})")
        made: Binding = LocalBinding(binding, fake) if isinstance(fake, Service) else _FunctionBinding(binding, fake)
        self._fakes[(service, binding)] = made
        if self._started:
            self._wire(service)

    def _targets(self, service: str) -> Mapping[str, BindingTarget]:
        if service not in self.node.services:
            raise ConfigError(f"the node has no service {service!r} (it has: {', '.join(self.node.services)})")
        return self.node._bindings.get(service, {})

    def _listened(self) -> dict[str, Service]:
        """The URLs the node's own listeners would serve, to their service."""
        return {url: self.node.services[name] for name, urls in self.node._listen.items() for url, _ in urls}

    def _inner(self, owner: str, name: str, target: BindingTarget) -> tuple[Binding | None, str]:
        fake = self._fakes.get((owner, name))
        if fake is not None:
            return fake, "a fake"
        if isinstance(target, Service):
            if self.node.services.get(target.name) is not target:
                raise ConfigError(f"binding {name!r} of service {owner!r} targets service {target.name!r}, "
                                  f"which is not in the node")
            return LocalBinding(name, target), f"service {target.name!r}"
        url = target.url if isinstance(target, RemoteBinding) else target if isinstance(target, str) else None
        if url is None:
            assert isinstance(target, Binding)
            return target, repr(target)
        local = self._listened().get(url)
        return (LocalBinding(name, local) if local is not None else None), url

    def _wire(self, owner: str) -> None:
        made: dict[str, Binding] = {}
        for name, target in self._targets(owner).items():
            inner, where = self._inner(owner, name, target)
            made[name] = _Recorded(self, owner, name, inner, where)
        self.node.services[owner].bindings = Bindings(made)

    async def start(self) -> None:
        """Give every service its bindings (recorded, faked where asked); nothing listens."""
        for service in self.node.services.values():
            self.node._check_free(service)
        for owner in self.node.services:
            self._wire(owner)
        self._started = True

    async def close(self) -> None:
        """Take the bindings back and release the services' sync-handler threads."""
        self._started = False
        for service in self.node.services.values():
            service.bindings = Bindings({})
            await service.close()

    # -- calling -----------------------------------------------------------------------------

    def service_for(self, msg: Any) -> Service:
        """The service of the node that handles ``msg``'s contract (``ConfigError`` if none,
        or if several do: then name one with ``service=``)."""
        found = [s for s in self.node.services.values() if type(msg) in s.handled]
        if len(found) != 1:
            what = "no service" if not found else f"services {', '.join(s.name for s in found)}"
            raise ConfigError(f"{what} of the node handle{'s' if not found else ''} {type(msg).__name__}; "
                              "name one with service=")
        return found[0]

    @overload
    async def call(self, msg: Request[R], *, service: str | None = None, timeout: float | None = None) -> R: ...
    @overload
    async def call(self, msg: M, *, service: str | None = None, timeout: float | None = None) -> M: ...
    async def call(self, msg: Any, *, service: str | None = None, timeout: float | None = None) -> Any:
        """Call ``msg``'s handler as a client would, through a request frame; the reply.

        Args:
            service: the service to call (default: the one that handles ``msg``'s contract).
            timeout: seconds the handler gets (the request's deadline, as on the wire).

        Raises:
            RemoteError / DeadlineExceeded / Unavailable: as from :class:`~nanomsg_kernel.client.Client`.
            EncodeError: ``msg`` is not a valid contract of the service's kernel.
        """
        if not self._started:
            raise ConfigError("the harness is not started: use `async with Harness(...)`")
        svc = self.service_for(msg) if service is None else self.node.services.get(service)
        if svc is None:
            raise ConfigError(f"the node has no service {service!r}")
        ms = 0 if timeout is None else min(MAX_U32, max(1, round(timeout * 1000)))
        frame = svc.codec.encode(msg, kind=Kind.REQUEST, correlation_id=next(self._ids), timeout_ms=ms)
        reply = await svc.handle_frame(frame)
        assert reply is not None
        try:
            return svc.codec.decode(reply)
        except RemoteError as exc:
            mapped = caller_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def publish(self, event: Any, *, service: str | None = None) -> None:
        """Deliver ``event`` to every subscriber of the node (or of ``service``) as an event
        frame, and return once they have all run."""
        if not self._started:
            raise ConfigError("the harness is not started: use `async with Harness(...)`")
        targets = list(self.node.services.values()) if service is None else [self.node.services[service]]
        for svc in targets:
            if type(event) in svc.subscribed:
                await svc.handle_frame(svc.codec.encode(event, kind=Kind.EVENT))

    # -- what happened -----------------------------------------------------------------------

    def events(self, contract: type[E]) -> list[E]:
        """The events of ``contract`` the services published through their bindings, in order."""
        return [p.message for p in self.published if type(p.message) is contract]

    def calls_to(self, service: str, binding: str) -> list[Any]:
        """The messages ``service`` sent through its binding ``binding`` as calls, in order."""
        return [c.message for c in self.calls if (c.service, c.binding) == (service, binding)]
