"""A Service object runs in one node at a time: a second node cannot rewire a running one."""

from __future__ import annotations

import pytest

from nanomsg_kernel import Client, ConfigError, Context, LocalBinding, Node, Service, evolve
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, Echo, WorkType


def services() -> tuple[Service, Service, Service]:
    """A gateway whose Echo asks a calc service, and two calc services that add differently."""
    gateway = Service("gateway", CalcRoute)

    @gateway.handler(Echo)
    async def echo(msg: Echo, ctx: Context) -> Echo:
        done = await ctx.bindings.calc.call(CalcWork(a=1, b=1, op=WorkType.SUM))
        return evolve(msg, reply=str(done.result))

    return gateway, calc_service("calc-a", 0), calc_service("calc-b", 100)


def calc_service(name: str, add: int) -> Service:
    calc = Service(name, CalcRoute)

    @calc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        return evolve(w, result=w.a + w.b + add)

    return calc


async def test_a_service_running_in_one_node_cannot_be_added_to_another(inproc_url: str) -> None:
    gateway, calc_a, calc_b = services()
    first = Node("first")
    first.add(calc_a)
    first.add(gateway, bindings={"calc": calc_a}, listen=[inproc_url])
    async with first, Client(CalcRoute, inproc_url) as client:
        second = Node("second")
        second.add(calc_b)
        with pytest.raises(ConfigError, match="'gateway' is running in node 'first'.*one Service per node"):
            second.add(gateway, bindings={"calc": calc_b})
        assert (await client.call(Echo(text="x"))).reply == "2"  # still first's binding
    assert "gateway" not in second.services


async def test_starting_a_second_node_with_a_running_service_fails_and_rewires_nothing(inproc_url: str) -> None:
    gateway, calc_a, calc_b = services()
    first, second = Node("first"), Node("second")
    first.add(calc_a)
    first.add(gateway, bindings={"calc": calc_a}, listen=[inproc_url])
    second.add(calc_b)
    second.add(gateway, bindings={"calc": calc_b})  # both before either starts: allowed so far
    async with first, Client(CalcRoute, inproc_url) as client:
        with pytest.raises(ConfigError, match="'gateway' is running in node 'first'"):
            await second.start()
        with pytest.raises(ConfigError, match="is running in node 'first'"):
            second.wire()
        binding = gateway.bindings["calc"]
        assert isinstance(binding, LocalBinding) and binding.service is calc_a
        assert (await client.call(Echo(text="x"))).reply == "2"


async def test_after_a_node_closed_its_services_may_run_in_another(inproc_url: str) -> None:
    gateway, calc_a, calc_b = services()
    first = Node("first")
    first.add(calc_a)
    first.add(gateway, bindings={"calc": calc_a})
    async with first:
        pass
    second = Node("second")
    second.add(calc_b)
    second.add(gateway, bindings={"calc": calc_b}, listen=[inproc_url])
    async with second, Client(CalcRoute, inproc_url) as client:
        assert (await client.call(Echo(text="x"))).reply == "102"


async def test_a_node_that_failed_to_start_holds_no_service() -> None:
    gateway, calc_a, _ = services()
    first = Node("first")
    first.add(gateway, bindings={"calc": "nowhere"})
    with pytest.raises(ConfigError, match="bad URL"):
        await first.start()
    second = Node("second")
    second.add(calc_a)
    second.add(gateway, bindings={"calc": calc_a})
    async with second:
        assert (await LocalBinding("g", gateway).call(Echo(text="x"))).reply == "2"
