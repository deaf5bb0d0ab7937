"""The built-in contracts every service answers, whatever its kernel: health and describe.

They travel under route ids a user's kernel cannot use (``0xFF00`` to ``0xFFFF``,
:data:`~nanomsg_kernel.contract.FIRST_BUILTIN_ROUTE`: a kernel that declares one is refused
when its contracts are defined), so they reach any service over any transport and never
clash with its own contracts. A caller needs nothing of the service's kernel::

    async with Client(BuiltinRoute, "tcp://127.0.0.1:7000") as client:
        health = await client.call(HealthCheck(), timeout=1.0)
        print(health.status)                    # HealthStatus.SERVING
        about = await client.call(Describe(), timeout=1.0)
        print(about.schema)                     # the kernel, as `schema export` writes it

Each is answered by a copy of the request with its reply fields set. ``HealthCheck`` is
grpc.health.v1's ``Check``: ``SERVING``, ``NOT_SERVING``, or ``DRAINING`` while the service
shuts down gracefully. ``Describe`` is reflection: the service's name, its kernel's name,
the kernel's schema file (TOML text) and the contracts it handles and subscribes to; a
listener can turn it off (then it is answered ``CONTRACT_NOT_SUPPORTED``). See
``docs/health.md``.
"""

from __future__ import annotations

import enum

from nanomsg_kernel.contract import Message, contract, field
from nanomsg_kernel.routing import RoutingEnum

__all__ = ["BUILTIN_ROUTES", "BuiltinRoute", "Describe", "HealthCheck", "HealthStatus"]


class BuiltinRoute(RoutingEnum):
    """The route ids of the built-in contracts (stable wire ids, in the reserved range)."""

    __builtin_kernel__ = True

    HEALTH = 0xFF00
    DESCRIBE = 0xFF01


BUILTIN_ROUTES = frozenset(int(m) for m in BuiltinRoute)
"""The route ids that have a built-in contract."""


class HealthStatus(enum.IntEnum):
    """A service's health, as grpc.health.v1 reports it (values are stable wire ids)."""

    SERVING = 1
    """Calls are welcome."""
    NOT_SERVING = 2
    """The service is up but should not be sent calls (not started, stopped, or told so)."""
    DRAINING = 3
    """The service is shutting down gracefully: calls in flight finish, new ones should go
    elsewhere."""


@contract(BuiltinRoute.HEALTH)
class HealthCheck(Message):
    """Ask a service how it is; answered with ``status`` set.

    ``service``: empty for the service that answers, or the name it must have (a different
    name is answered ``NOT_FOUND``, as grpc.health.v1 answers an unknown service).
    """

    service: str = ""
    status: HealthStatus | None = None


@contract(BuiltinRoute.DESCRIBE)
class Describe(Message):
    """Ask a service what it serves; answered with every other field set.

    ``schema`` is the kernel's schema file, exactly as ``nanomsg-kernel schema export``
    writes it: data to read, never code to run.
    """

    service: str = ""
    kernel: str = ""
    schema: str = ""
    handled: list[str] = field(factory=list)
    subscribed: list[str] = field(factory=list)
