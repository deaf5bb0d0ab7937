"""OpenTelemetry tracing, as interceptors (``pip install 'nanomsg-kernel[otel]'``).

::

    from nanomsg_kernel.otel import ClientTracing, instrument

    instrument(gateway)            # a server span per call it serves, a client span per call it makes
    instrument(calc)
    client = Client(CalcRoute, url, interceptors=[ClientTracing()])

:class:`ClientTracing` starts a ``CLIENT`` span around each call and writes the W3C trace
context (``traceparent``, ``tracestate``: whatever propagator is configured) into the
request's metadata; :class:`ServerTracing` reads it from ``ctx.metadata`` and runs the
handler in a ``SERVER`` span, child of the caller's, and current while the handler runs: the
calls it makes through its bindings are children of it. A call through an in-process
binding carries no metadata; its server span is the child of the span current in the caller.

Spans follow the semantic conventions for RPC: named ``service/Contract``, with
``rpc.system`` (``"nanomsg_kernel"``), ``rpc.service``, ``rpc.method`` (the contract),
``rpc.response.status_code`` (the status's name), ``server.address`` and ``server.port``
(client spans, from the URL), ``network.peer.address`` and ``network.peer.port`` (server
spans, from ``ctx.peer`` when the transport knows it). A client span's status is ``ERROR``
for any status but ``OK``; a server span's only for the statuses that say the server failed
(``INTERNAL``, ``UNKNOWN``, ``TIMEOUT``, ``UNAVAILABLE``, ``CONTRACT_NOT_SUPPORTED``, ``DECODE_ERROR``),
not for those that say the request was refused. The spans go to the global tracer provider
unless one is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

try:
    from opentelemetry import propagate, trace
    from opentelemetry.propagators.textmap import Getter
    from opentelemetry.trace import SpanKind, StatusCode
except ModuleNotFoundError as exc:  # the otel extra is not installed
    if exc.name is None or not exc.name.startswith("opentelemetry"):
        raise
    raise ModuleNotFoundError(
        "nanomsg_kernel.otel needs opentelemetry-api, which the package does not install by itself: "
        "pip install 'nanomsg-kernel[otel]'",
        name="opentelemetry",
    ) from exc

from nanomsg_kernel.chain import Proceed, status_of
from nanomsg_kernel.client_interceptors import ClientCall, ClientInterceptor
from nanomsg_kernel.context import Context
from nanomsg_kernel.errors import Status
from nanomsg_kernel.interceptors import ServerInterceptor
from nanomsg_kernel.service import Service

__all__ = ["RPC_SYSTEM", "SERVER_ERRORS", "ClientTracing", "ServerTracing", "instrument"]

RPC_SYSTEM = "nanomsg_kernel"
"""The ``rpc.system`` of every span."""
SERVER_ERRORS = frozenset({Status.INTERNAL, Status.UNKNOWN, Status.TIMEOUT, Status.UNAVAILABLE,
                           Status.CONTRACT_NOT_SUPPORTED, Status.DECODE_ERROR})
"""The statuses that make a server span's status ``ERROR``."""
_SCOPE = "nanomsg_kernel"


class _MetadataGetter(Getter[Mapping[str, str | bytes]]):
    """Reads trace context from request metadata (bytes values as Latin-1 text)."""

    def get(self, carrier: Mapping[str, str | bytes], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            return None
        return [value.decode("latin-1") if isinstance(value, bytes) else value]

    def keys(self, carrier: Mapping[str, str | bytes]) -> list[str]:
        return list(carrier)


_GETTER = _MetadataGetter()


def _tracer(tracer_provider: trace.TracerProvider | None) -> trace.Tracer:
    from nanomsg_kernel import __version__

    return trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)


def _split_address(address: str) -> tuple[str, int | None]:
    """``host:port`` (``[v6]:port``) as host and port; anything else as it is, no port."""
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and host:
        return host.strip("[]"), int(port)
    return address, None


class ServerTracing(ServerInterceptor):
    """A ``SERVER`` span around each call a service serves, continuing the caller's trace."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = _tracer(tracer_provider)

    async def around(self, msg: Any, ctx: Context, proceed: Proceed) -> Any:
        """Run the rest of the chain in a server span (the interceptor's hook)."""
        parent = propagate.extract(ctx.metadata, getter=_GETTER) if ctx.metadata else None
        attributes: dict[str, str | int] = {
            "rpc.system": RPC_SYSTEM, "rpc.service": ctx.service, "rpc.method": ctx.contract,
        }
        address = ctx.peer.address
        if address is not None and ctx.peer.transport in ("tcp", "tls", "zmq"):
            host, port = _split_address(address)
            attributes["network.peer.address"] = host
            if port is not None:
                attributes["network.peer.port"] = port
        with self.tracer.start_as_current_span(
            f"{ctx.service}/{ctx.contract}", context=parent, kind=SpanKind.SERVER, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:
            try:
                reply = await proceed(msg)
            except BaseException as exc:
                status = status_of(exc, ctx.deadline)
                span.set_attribute("rpc.response.status_code", status.name)
                if status in SERVER_ERRORS:
                    span.set_status(StatusCode.ERROR, f"{status.name}: {exc}")
                    span.record_exception(exc)
                raise
            span.set_attribute("rpc.response.status_code", "OK")
            return reply


class ClientTracing(ClientInterceptor):
    """A ``CLIENT`` span around each call a client makes; its context goes in the metadata."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = _tracer(tracer_provider)

    async def around(self, msg: Any, call: ClientCall, proceed: Proceed) -> Any:
        """Send the call in a client span, with the trace context in its metadata."""
        attributes: dict[str, str | int] = {"rpc.system": RPC_SYSTEM, "rpc.method": call.contract}
        if call.service is not None:
            attributes["rpc.service"] = call.service
        parts = urlsplit(call.url)
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if host is not None:
            attributes["server.address"] = host
            if port is not None:
                attributes["server.port"] = port
        name = f"{call.service}/{call.contract}" if call.service else call.contract
        with self.tracer.start_as_current_span(
            name, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False, set_status_on_exception=False,
        ) as span:
            propagate.inject(call.metadata)
            try:
                reply = await proceed(msg)
            except BaseException as exc:
                status = status_of(exc)
                span.set_attribute("rpc.response.status_code", status.name)
                span.set_status(StatusCode.ERROR, f"{status.name}: {exc}")
                if status is Status.INTERNAL:
                    span.record_exception(exc)
                raise
            span.set_attribute("rpc.response.status_code", "OK")
            return reply


def instrument(service: Service, tracer_provider: trace.TracerProvider | None = None) -> Service:
    """Trace ``service``: a :class:`ServerTracing` first in its chain (so its span covers the
    other interceptors), and a :class:`ClientTracing` among the interceptors of the bindings
    a node gives it (call before the node starts). Returns the service."""
    service.add_interceptor(ServerTracing(tracer_provider), first=True)
    service.client_interceptors.append(ClientTracing(tracer_provider))
    return service
