"""The built-in contracts: health and describe, answered by every service over every
transport, under route ids no user kernel can take."""

from __future__ import annotations

import asyncio
import tomllib

import pytest
from conftest import TRANSPORT_URLS

from nanomsg_kernel import Client, Node, RemoteError, Service, Status
from nanomsg_kernel.builtin import BuiltinRoute, Describe, HealthCheck, HealthStatus
from nanomsg_kernel.codegen.schema import load_text
from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType


def make_calc(**options: bool) -> Service:
    svc = Service("calc", CalcRoute, **options)

    @svc.handler(CalcWork)
    async def work(msg: CalcWork) -> CalcWork:
        return msg.evolve(result=msg.a + msg.b)

    @svc.subscribe(CalcDone)
    def done(event: CalcDone) -> None:
        pass

    return svc


@pytest.mark.parametrize("transport", sorted(TRANSPORT_URLS))
async def test_health_and_describe_over_every_transport(transport: str) -> None:
    svc = make_calc()
    async with svc.serve(TRANSPORT_URLS[transport]()) as listener, \
            Client(BuiltinRoute, listener.url, timeout=10.0) as client:
        health = await client.call(HealthCheck())
        assert health == HealthCheck(service="calc", status=HealthStatus.SERVING)
        svc.set_health(HealthStatus.NOT_SERVING)
        assert (await client.call(HealthCheck())).status is HealthStatus.NOT_SERVING
        about = await client.call(Describe())
        assert (about.service, about.kernel, about.handled, about.subscribed) == (
            "calc", "CalcRoute", ["CalcWork"], ["CalcDone"])
        schema = load_text(about.schema, "describe", "calc")
        assert schema.routing == "CalcRoute"
        assert {m.name for m in schema.contracts} == {c.__name__ for c in CalcRoute.contracts().values()}
        tomllib.loads(about.schema)
        # The kernel's own contracts are served as before, on the same connection.
        async with Client(CalcRoute, listener.url, timeout=10.0) as calc_client:
            done = await calc_client.call(CalcWork(a=2, b=3, op=WorkType.SUM))
            assert done.result == 5


async def test_describe_is_the_schema_export_text() -> None:
    from click.testing import CliRunner

    from nanomsg_kernel.app.cli import main

    exported = CliRunner().invoke(main, ["schema", "export", "nanomsg_kernel.contracts.calc:CalcRoute"])
    assert exported.exit_code == 0
    reply = await make_calc().dispatch(Describe())
    assert reply.schema == exported.output


async def test_a_health_check_naming_another_service_is_not_found() -> None:
    svc = make_calc()
    async with svc.serve("tcp://127.0.0.1:0") as listener, Client(BuiltinRoute, listener.url, timeout=10.0) as c:
        assert (await c.call(HealthCheck(service="calc"))).status is HealthStatus.SERVING
        with pytest.raises(RemoteError) as err:
            await c.call(HealthCheck(service="orders"))
        assert err.value.status is Status.NOT_FOUND


@pytest.mark.parametrize("transport", ["tcp", "zmq+tcp"])
async def test_reflection_can_be_turned_off_per_listener(transport: str) -> None:
    svc = make_calc()
    async with svc.serve(TRANSPORT_URLS[transport](), reflection=False) as closed, \
            svc.serve(TRANSPORT_URLS[transport]()) as open_:
        async with Client(BuiltinRoute, closed.url, timeout=10.0) as c:
            with pytest.raises(RemoteError) as err:
                await c.call(Describe())
            assert err.value.status is Status.CONTRACT_NOT_SUPPORTED
            assert (await c.call(HealthCheck())).status is HealthStatus.SERVING  # health stays
        async with Client(CalcRoute, closed.url, timeout=10.0) as c:
            assert (await c.call(CalcWork(a=1, b=1, op=WorkType.SUM))).result == 2
            with pytest.raises(RemoteError) as err:
                await c.call(Echo(text="x"))
            assert err.value.status is Status.CONTRACT_NOT_SUPPORTED
        async with Client(BuiltinRoute, open_.url, timeout=10.0) as c:
            assert (await c.call(Describe())).kernel == "CalcRoute"


async def test_reflection_off_for_the_service_and_on_for_one_listener() -> None:
    svc = make_calc(reflection=False)
    assert svc.reflection is False
    with pytest.raises(RemoteError):
        await svc.dispatch(Describe())
    async with svc.serve("inproc://reflect-on", reflection=True) as listener, \
            Client(BuiltinRoute, listener.url, timeout=10.0) as c:
        assert (await c.call(Describe())).service == "calc"


async def test_a_node_reports_serving_then_draining_then_not_serving() -> None:
    svc = make_calc()
    node = Node()
    node.add(svc, listen=["tcp://127.0.0.1:0"])
    assert svc.health is HealthStatus.SERVING
    await node.start()
    assert svc.health is HealthStatus.SERVING
    url = node.listeners[0].url
    async with Client(BuiltinRoute, url, timeout=10.0) as client:
        assert (await client.call(HealthCheck())).status is HealthStatus.SERVING
        closing = asyncio.create_task(node.close(drain=60.0))
        await asyncio.sleep(0)  # the close runs up to its drain period
        assert svc.health is HealthStatus.DRAINING
        assert (await client.call(HealthCheck())).status is HealthStatus.DRAINING  # still served
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
    await node.close()
    assert svc.health is HealthStatus.NOT_SERVING


async def test_builtin_frames_that_are_not_requests_or_are_bad() -> None:
    from nanomsg_kernel.frame import HEADER_SIZE, Kind, pack_header

    svc = make_calc()
    codec = BuiltinRoute.codec()
    event = codec.encode(HealthCheck(), kind=Kind.EVENT)
    assert await svc.handle_frame(event) is None
    bad = pack_header(Kind.REQUEST, int(BuiltinRoute.HEALTH), 1, 7, 0, 1) + b"\x01"
    reply = await svc.handle_frame(bad)
    assert reply is not None and len(reply) > HEADER_SIZE
    with pytest.raises(RemoteError) as err:
        codec.decode(reply)
    assert err.value.status is Status.DECODE_ERROR
    unknown = pack_header(Kind.REQUEST, 0xFFFF, 1, 8, 0, 0)
    with pytest.raises(RemoteError) as err:
        codec.decode(await svc.handle_frame(unknown) or b"")
    assert err.value.status is Status.CONTRACT_NOT_SUPPORTED


def test_a_listener_view_with_workers_is_refused() -> None:
    from nanomsg_kernel.errors import ConfigError
    from nanomsg_kernel.listener_view import ListenerView

    with pytest.raises(ConfigError, match="cannot differ per listener"):
        ListenerView(make_calc(), reflection=False).locate()
