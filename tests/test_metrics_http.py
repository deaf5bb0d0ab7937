"""Per-service metrics: in code, as Prometheus text over HTTP, and the HTTP listener's bounds."""

from __future__ import annotations

import asyncio
import contextlib
import re

import pytest

from nanomsg_kernel import RemoteError, Service, ServiceError, Status
from nanomsg_kernel.app.metrics_http import CONTENT_TYPE, MAX_REQUEST_HEAD, MetricsServer
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.metrics import LATENCY_BUCKETS, ServiceMetrics, prometheus_text

SAMPLE = re.compile(r'^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$')


def make_service() -> Service:
    svc = Service("mcalc", CalcRoute)

    @svc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        if w.b == 0:
            raise ServiceError(Status.BAD_REQUEST, "division by zero")
        return w.evolve(result=w.a // w.b)

    return svc


def samples(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        out[(m["name"], m["labels"])] = float(m["value"])
    return out


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


def test_prometheus_text_is_cumulative_and_consistent() -> None:
    m = ServiceMetrics('we"ird\nname')
    for seconds in (0.000001, 0.0003, 0.0003, 20.0):
        m.observe("CalcWork", Status.OK, seconds)
    m.observe("CalcWork", Status.TIMEOUT, 0.2)
    got = samples(prometheus_text([m]))
    labels = 'service="we\\"ird\\nname",contract="CalcWork"'
    assert got[("nanomsg_calls_total", labels)] == 5
    assert got[("nanomsg_errors_total", labels + ',status="TIMEOUT"')] == 1
    buckets = [got[("nanomsg_call_seconds_bucket", f'{labels},le="{b}"')] for b in LATENCY_BUCKETS]
    assert buckets == sorted(buckets)
    assert got[("nanomsg_call_seconds_bucket", f'{labels},le="0.0005"')] == 3
    assert got[("nanomsg_call_seconds_bucket", f'{labels},le="+Inf"')] == 5
    assert got[("nanomsg_call_seconds_count", labels)] == 5
    assert got[("nanomsg_call_seconds_sum", labels)] == pytest.approx(20.200601)


async def test_http_get_metrics_serves_the_services_current_counts() -> None:
    svc = make_service()
    async with MetricsServer(lambda: [svc.metrics], "127.0.0.1", 0) as server:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        status, headers, body = await exchange(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200 and headers["content-type"] == CONTENT_TYPE
        assert int(headers["content-length"]) == len(body)
        assert ("nanomsg_calls_total", 'service="mcalc",contract="CalcWork"') not in samples(body.decode())
        await svc.dispatch(CalcWork(a=6, b=3, op=WorkType.DIV))
        _status, _headers, body = await exchange(server, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
        assert samples(body.decode())[("nanomsg_calls_total", 'service="mcalc",contract="CalcWork"')] == 1
        status, headers, body = await exchange(server, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0
        assert server.requests == 3


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 404),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", 404),
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
        while not server._conns:  # the server has taken the connection
            await asyncio.sleep(0)
        await server.close()
        # closed with the unfinished request unread, the system may answer with a reset
        with contextlib.suppress(ConnectionResetError):
            assert await reader.read() == b""
    writer.close()
    with contextlib.suppress(ConnectionResetError):  # Python 3.12+ reports the reset here too
        await writer.wait_closed()
