"""How a service answers the built-in contracts (:mod:`nanomsg_kernel.builtin`).

A frame whose route is a built-in one is not its kernel's: the codec's fast paths leave it
to :meth:`~nanomsg_kernel.service.Service.handle_frame`, which hands it here among the
routes its kernel does not have. Nothing on the path of the kernel's own contracts
changes. In process, :meth:`~nanomsg_kernel.service.Service.dispatch` answers the same
objects the same way.

The schema a ``Describe`` returns is made once per kernel (``schema export``'s text) and
kept.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Protocol

from nanomsg_kernel.builtin import BuiltinRoute, Describe, HealthCheck, HealthStatus
from nanomsg_kernel.errors import DecodeError, EncodeError, ServiceError, Status
from nanomsg_kernel.frame import HEADER_SIZE, Kind

if TYPE_CHECKING:
    from nanomsg_kernel.routing import RoutingEnum

__all__ = ["Answering", "answer", "answer_frame", "kernel_schema"]


class Answering(Protocol):
    """What answering needs of a service (a :class:`~nanomsg_kernel.service.Service`)."""

    name: str
    routes: type[RoutingEnum]

    @property
    def health(self) -> HealthStatus: ...

    @property
    def handled(self) -> tuple[type, ...]: ...

    @property
    def subscribed(self) -> tuple[type, ...]: ...

_CODEC = BuiltinRoute.codec()


@functools.cache
def kernel_schema(routes: type[RoutingEnum]) -> str:
    """The schema file of ``routes``, as ``nanomsg-kernel schema export`` writes it.

    Raises:
        ServiceError: ``INTERNAL``, the kernel cannot be written as a schema (two of its
            types share a name, ...).
    """
    from nanomsg_kernel.codegen.export import export_kernel
    from nanomsg_kernel.codegen.toml_out import to_toml
    from nanomsg_kernel.errors import ContractError

    source = f"{routes.__module__}:{routes.__qualname__}"
    try:
        kernel = export_kernel(routes, source=source)
    except ContractError as exc:
        raise ServiceError(Status.INTERNAL, f"the kernel cannot be written as a schema: {exc}") from None
    return to_toml(kernel, comment=f"Schema of {source}, written by: nanomsg-kernel schema export {source}")


def answer(service: Answering, msg: Any, *, reflection: bool) -> Any:
    """The reply of ``service`` to the built-in request ``msg``.

    Raises:
        ServiceError: ``NOT_FOUND`` for a health check naming another service,
            ``CONTRACT_NOT_SUPPORTED`` for ``Describe`` where reflection is off.
    """
    if msg.service and msg.service != service.name:
        raise ServiceError(Status.NOT_FOUND, f"this is service {service.name!r}, not {msg.service!r}")
    if type(msg) is HealthCheck:
        return msg.evolve(service=service.name, status=service.health)
    if type(msg) is Describe:
        if not reflection:
            raise ServiceError(Status.CONTRACT_NOT_SUPPORTED, f"reflection is off for {service.name}")
        return msg.evolve(
            service=service.name, kernel=service.routes.__name__, schema=kernel_schema(service.routes),
            handled=[c.__name__ for c in service.handled], subscribed=[c.__name__ for c in service.subscribed],
        )
    raise ServiceError(Status.CONTRACT_NOT_SUPPORTED, f"{type(msg).__name__} is not a built-in contract")


def answer_frame(service: Answering, frame: bytes, correlation_id: int, route: int, *, reflection: bool) -> bytes:
    """The reply frame of ``service`` to a request frame of a built-in ``route``."""
    try:
        msg = _CODEC.decode_body(route, memoryview(frame)[HEADER_SIZE:])
        reply = answer(service, msg, reflection=reflection)
        return _CODEC.encode(reply, kind=Kind.RESPONSE, correlation_id=correlation_id)
    except DecodeError as exc:
        return _CODEC.encode_error(exc.status, str(exc), correlation_id=correlation_id, route=route)
    except ServiceError as exc:
        return _CODEC.encode_error(exc.status, exc.message, correlation_id=correlation_id, route=route)
    except EncodeError as exc:  # a schema over the largest body
        return _CODEC.encode_error(Status.RESOURCE_EXHAUSTED, str(exc), correlation_id=correlation_id, route=route)
