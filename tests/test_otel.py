"""OpenTelemetry tracing through interceptors, checked with the SDK's in-memory exporter: a
call from a client through a gateway to a service, each hop over tcp://, is one trace of
client and server spans, each the parent of the next."""

from __future__ import annotations

import itertools

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from nanomsg_kernel import Client, Context, Node, RemoteError, Service, ServiceError, Status
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType
from nanomsg_kernel.otel import RPC_SYSTEM, ClientTracing, instrument


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def make_pair() -> tuple[Service, Service]:
    calc = Service("tcalc", CalcRoute)
    gateway = Service("tgateway", CalcRoute)

    @calc.handler(CalcWork)
    async def work(w: CalcWork, ctx: Context) -> CalcWork:
        assert "traceparent" in ctx.metadata  # the context came in the request's metadata
        if w.b == 0:
            raise ServiceError(Status.BAD_REQUEST, "division by zero")
        if w.b < 0:
            raise RuntimeError("broken")
        return w.evolve(result=w.a // w.b)

    @gateway.handler(CalcWork)
    async def forward(w: CalcWork, ctx: Context) -> CalcWork:
        return await ctx.bindings.calc.call(w, timeout=10)

    return calc, gateway


def by_kind(finished: tuple[ReadableSpan, ...]) -> dict[tuple[str, SpanKind], ReadableSpan]:
    return {(span.name, span.kind): span for span in finished}


async def test_a_call_through_a_gateway_over_tcp_is_one_trace_of_parent_and_child_spans(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    calc, gateway = make_pair()
    instrument(calc, provider)
    instrument(gateway, provider)
    async with calc.serve("tcp://127.0.0.1:0") as calc_listener:
        node = Node()
        node.add(gateway, bindings={"calc": calc_listener.url}, listen=["tcp://127.0.0.1:0"])
        async with node:
            url = node.listeners[0].url
            async with Client(CalcRoute, url, interceptors=[ClientTracing(provider)], service="tgateway") as client:
                assert (await client.call(CalcWork(a=6, b=3, op=WorkType.DIV), timeout=10)).result == 2
    got = by_kind(exporter.get_finished_spans())
    assert len(got) == 4, list(got)
    outer = got[("tgateway/CalcWork", SpanKind.CLIENT)]
    gateway_server = got[("tgateway/CalcWork", SpanKind.SERVER)]
    inner = got[("calc/CalcWork", SpanKind.CLIENT)]  # the binding's name is the service called
    calc_server = got[("tcalc/CalcWork", SpanKind.SERVER)]
    chain = [outer, gateway_server, inner, calc_server]
    assert len({s.context.trace_id for s in chain}) == 1  # one trace
    assert outer.parent is None
    for parent, child in itertools.pairwise(chain):
        assert child.parent is not None and child.parent.span_id == parent.context.span_id
        assert child.parent.is_remote == (child.kind is SpanKind.SERVER)  # across the wire
    port = int(calc_listener.url.rsplit(":", 1)[1])
    assert dict(inner.attributes or {}) == {
        "rpc.system": RPC_SYSTEM, "rpc.service": "calc", "rpc.method": "CalcWork",
        "server.address": "127.0.0.1", "server.port": port, "rpc.response.status_code": "OK",
    }
    attributes = dict(calc_server.attributes or {})
    assert attributes["rpc.system"] == RPC_SYSTEM and attributes["rpc.service"] == "tcalc"
    assert attributes["rpc.method"] == "CalcWork" and attributes["rpc.response.status_code"] == "OK"
    assert attributes["network.peer.address"] == "127.0.0.1" and isinstance(attributes["network.peer.port"], int)
    assert all(s.status.status_code is StatusCode.UNSET for s in chain)


async def test_statuses_mark_spans_as_errors_where_they_are_the_servers_fault(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    calc, _gateway = make_pair()
    instrument(calc, provider)
    async with calc.serve("tcp://127.0.0.1:0") as listener, \
            Client(CalcRoute, listener.url, interceptors=[ClientTracing(provider)]) as client:
        with pytest.raises(RemoteError):
            await client.call(CalcWork(a=6, b=0, op=WorkType.DIV), timeout=10)  # refused: BAD_REQUEST
        refused = by_kind(exporter.get_finished_spans())
        exporter.clear()
        with pytest.raises(RemoteError):
            await client.call(CalcWork(a=6, b=-1, op=WorkType.DIV), timeout=10)  # failed: INTERNAL
        failed = by_kind(exporter.get_finished_spans())
    server, client_span = refused[("tcalc/CalcWork", SpanKind.SERVER)], refused[("CalcWork", SpanKind.CLIENT)]
    assert server.attributes is not None and server.attributes["rpc.response.status_code"] == "BAD_REQUEST"
    assert server.status.status_code is StatusCode.UNSET
    assert client_span.status.status_code is StatusCode.ERROR
    assert "rpc.service" not in (client_span.attributes or {})  # a plain client knows no service name
    server = failed[("tcalc/CalcWork", SpanKind.SERVER)]
    assert server.status.status_code is StatusCode.ERROR and server.events[0].name == "exception"
    assert server.attributes is not None and server.attributes["rpc.response.status_code"] == "INTERNAL"


async def test_an_in_process_binding_continues_the_trace_without_metadata(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    calc = Service("lcalc", CalcRoute)
    gateway = Service("lgateway", CalcRoute)

    @calc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        return w.evolve(result=1)

    @gateway.handler(CalcWork)
    async def forward(w: CalcWork, ctx: Context) -> CalcWork:
        return await ctx.bindings.calc.call(w)

    instrument(calc, provider)
    instrument(gateway, provider)
    node = Node()
    node.add(calc)
    node.add(gateway, bindings={"calc": calc})
    async with node:
        await gateway.dispatch(CalcWork(a=1, b=1, op=WorkType.SUM))
    got = by_kind(exporter.get_finished_spans())
    outer, inner = got[("lgateway/CalcWork", SpanKind.SERVER)], got[("lcalc/CalcWork", SpanKind.SERVER)]
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id
    assert not inner.parent.is_remote
