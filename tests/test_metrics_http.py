"""Per-service and per-client metrics: in code, through prometheus_client over HTTP, the
listener's /healthz and /readyz, and its bounds."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nanomsg_kernel import Context, Node, RemoteError, Service, ServiceError, Status
from nanomsg_kernel.app.metrics_http import CONTENT_TYPE, MAX_REQUEST_HEAD, MetricsServer
from nanomsg_kernel.app.prometheus import metrics_registry
from nanomsg_kernel.app.serving import node_metrics
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.metrics import LATENCY_BUCKETS, ClientMetrics, ServiceMetrics

MCALC = ("nanomsg_calls_total", (("contract", "CalcWork"), ("service", "mcalc")))


def make_service() -> Service:
    svc = Service("mcalc", CalcRoute)

    @svc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        if w.b == 0:
            raise ServiceError(Status.BAD_REQUEST, "division by zero")
        return w.evolve(result=w.a // w.b)

    return svc


async def exchange(server: MetricsServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            raw = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


async def test_metrics_count_calls_errors_and_latency_per_contract() -> None:
    svc = make_service()
    for b in (1, 2, 0, 3):
        with contextlib.suppress(RemoteError):
            await svc.dispatch(CalcWork(a=6, b=b, op=WorkType.DIV))
    with pytest.raises(RemoteError):
        await svc.dispatch(Echo(text="no handler"))
    snap = svc.metrics.snapshot()
    assert snap["CalcWork"]["calls"] == 4
    assert snap["CalcWork"]["errors"] == {"BAD_REQUEST": 1}
    assert snap["Echo"]["errors"] == {"CONTRACT_NOT_SUPPORTED": 1}
    assert 0 < snap["CalcWork"]["p50_seconds"] <= snap["CalcWork"]["p99_seconds"]  # type: ignore[operator]
    summary = svc.metrics.summary().splitlines()
    assert summary[0].startswith("mcalc.CalcWork: 4 calls, 1 errors, mean ")


def parsed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, as prometheus_client's own parser reads the exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_registry_exposes_cumulative_consistent_histograms() -> None:
    m = ServiceMetrics('we"ird\nname')
    for seconds in (0.000001, 0.0003, 0.0003, 20.0):
        m.observe("CalcWork", Status.OK, seconds)
    m.observe("CalcWork", Status.TIMEOUT, 0.2)
    got = parsed(generate_latest(metrics_registry(lambda: [m], process=False)).decode())
    labels = (("contract", "CalcWork"), ("service", 'we"ird\nname'))
    assert got[("nanomsg_calls_total", labels)] == 5
    assert got[("nanomsg_errors_total", (*labels, ("status", "TIMEOUT")))] == 1
    buckets = [got[("nanomsg_call_seconds_bucket", tuple(sorted((*labels, ("le", str(b))))))]
               for b in LATENCY_BUCKETS]
    assert len(buckets) == len(LATENCY_BUCKETS) and buckets == sorted(buckets)
    assert got[("nanomsg_call_seconds_bucket", tuple(sorted((*labels, ("le", "0.0005")))))] == 3
    assert got[("nanomsg_call_seconds_bucket", tuple(sorted((*labels, ("le", "+Inf")))))] == 5
    assert got[("nanomsg_call_seconds_count", labels)] == 5
    assert got[("nanomsg_call_seconds_sum", labels)] == pytest.approx(20.200601)


def test_the_registry_has_process_metrics_and_client_metrics() -> None:
    client = ClientMetrics("calc", caller="gateway")
    client.observe("CalcWork", Status.UNAVAILABLE, 0.003)
    got = parsed(generate_latest(metrics_registry(lambda: [client])).decode())
    labels = (("caller", "gateway"), ("contract", "CalcWork"), ("service", "calc"))
    assert got[("nanomsg_client_calls_total", labels)] == 1
    assert got[("nanomsg_client_errors_total", (*labels, ("status", "UNAVAILABLE")))] == 1
    assert got[("nanomsg_client_call_seconds_count", labels)] == 1
    assert got[("process_open_fds", ())] > 0
    assert any(name == "python_info" for name, _ in got)
    assert not any(name.startswith("nanomsg_calls") for name, _ in got)  # no service here


async def test_calls_through_a_binding_to_a_url_are_counted_on_both_sides() -> None:
    calc = make_service()
    gateway = Service("mgateway", CalcRoute)

    @gateway.handler(CalcWork)
    async def forward(w: CalcWork, ctx: Context) -> CalcWork:
        return await ctx.bindings.calc.call(w, timeout=5)

    async with calc.serve("tcp://127.0.0.1:0") as listener:
        node = Node()
        node.add(gateway, bindings={"calc": listener.url})
        async with node:
            await gateway.dispatch(CalcWork(a=6, b=3, op=WorkType.DIV))
            with pytest.raises(RemoteError):
                await gateway.dispatch(CalcWork(a=6, b=0, op=WorkType.DIV))
            got = parsed(generate_latest(metrics_registry(lambda: [*node_metrics(node), calc.metrics])).decode())
    client = (("caller", "mgateway"), ("contract", "CalcWork"), ("service", "calc"))
    assert got[("nanomsg_client_calls_total", client)] == 2
    assert got[("nanomsg_client_errors_total", (*client, ("status", "BAD_REQUEST")))] == 1
    assert got[("nanomsg_calls_total", (("contract", "CalcWork"), ("service", "mgateway")))] == 2
    assert got[("nanomsg_calls_total", (("contract", "CalcWork"), ("service", "mcalc")))] == 2


async def test_http_get_metrics_serves_the_services_current_counts() -> None:
    svc = make_service()
    async with MetricsServer(lambda: [svc.metrics], "127.0.0.1", 0) as server:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        status, headers, body = await exchange(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200 and headers["content-type"] == CONTENT_TYPE
        assert int(headers["content-length"]) == len(body)
        assert MCALC not in parsed(body.decode())
        await svc.dispatch(CalcWork(a=6, b=3, op=WorkType.DIV))
        _status, _headers, body = await exchange(server, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
        assert parsed(body.decode())[MCALC] == 1
        status, headers, body = await exchange(
            server, b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n")
        assert status == 200 and headers["content-type"].startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")
        status, headers, body = await exchange(server, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0
        assert server.requests == 4


async def test_healthz_answers_while_the_process_serves_and_readyz_asks_the_node() -> None:
    reasons: list[str] = ["starting"]
    async with MetricsServer(list, "127.0.0.1", 0, ready=lambda: reasons) as server:
        status, _headers, body = await exchange(server, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert (status, body) == (200, b"ok\n")
        status, _headers, body = await exchange(server, b"GET /readyz HTTP/1.1\r\n\r\n")
        assert status == 503 and body == b"not ready:\n  starting\n"
        reasons.clear()
        status, _headers, body = await exchange(server, b"GET /readyz HTTP/1.1\r\n\r\n")
        assert (status, body) == (200, b"ready\n")
        reasons.append("draining: the node is stopping")
        status, headers, body = await exchange(server, b"HEAD /readyz HTTP/1.1\r\n\r\n")
        assert status == 503 and body == b"" and int(headers["content-length"]) > 0
        status, _headers, body = await exchange(server, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert status == 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 404),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", 404),
        (b"POST /readyz HTTP/1.1\r\n\r\n", 405),
        (b"POST /metrics HTTP/1.1\r\n\r\n", 405),
        (b"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 413),
        (b"nonsense\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\n", 400),  # the client ends its side before the head is complete
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (2 * MAX_REQUEST_HEAD), 431),
    ],
)
async def test_http_refuses_what_it_does_not_serve(request_bytes: bytes, status: int) -> None:
    async with MetricsServer(lambda: [], "127.0.0.1", 0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(request_bytes)
            await writer.drain()
            if status == 400 and not request_bytes.endswith(b"\r\n\r\n"):
                writer.write_eof()
            async with asyncio.timeout(10):
                raw = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
        assert raw.startswith(f"HTTP/1.1 {status} ".encode()), raw[:80]
        if status == 405:
            assert b"Allow: GET, HEAD" in raw


async def test_http_close_drops_idle_connections() -> None:
    server = MetricsServer(lambda: [], "127.0.0.1", 0)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /metr")  # never finished
    await writer.drain()
    async with asyncio.timeout(10):
        while not server.open_connections:  # the server has taken the connection
            await asyncio.sleep(0)
        await server.close()
        # closed with the unfinished request unread, the system may answer with a reset
        with contextlib.suppress(ConnectionResetError):
            assert await reader.read() == b""
    writer.close()
    with contextlib.suppress(ConnectionResetError):  # Python 3.12+ reports the reset here too
        await writer.wait_closed()
