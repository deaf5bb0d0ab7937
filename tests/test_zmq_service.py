"""Services and clients over ``zmq+tcp://`` and ``zmq+ipc://``: the same code as in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from nanomsg_kernel import Client, Context, DeadlineExceeded, RemoteError, Service, Status
from nanomsg_kernel.contracts.bench import BenchRoute, Burn, Who
from nanomsg_kernel.contracts.bench_services import burn, sum_of_squares
from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.transports.zmq import ZmqConnection


@pytest.fixture(params=["tcp", "ipc"])
def url(request: pytest.FixtureRequest, ipc_dir: str) -> str:
    return "zmq+tcp://127.0.0.1:0" if request.param == "tcp" else f"zmq+ipc://{ipc_dir}/calc"


def make_service() -> tuple[Service, list[CalcDone], asyncio.Event]:
    svc = Service("calc-zmq", CalcRoute)
    done: list[CalcDone] = []
    seen = asyncio.Event()

    @svc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        if w.op is WorkType.DIV and w.b == 0:
            from nanomsg_kernel import ServiceError

            raise ServiceError(Status.BAD_REQUEST, "division by zero")
        return w.evolve(result=w.a // w.b if w.op is WorkType.DIV else w.a + w.b)

    @svc.handler(Echo)
    async def echo(msg: Echo, ctx: Context) -> Echo:
        if msg.text == "slow":
            await asyncio.get_running_loop().create_future()  # answers only by its deadline
        return msg.evolve(reply=msg.text.upper())

    @svc.subscribe(CalcDone)
    def on_done(event: CalcDone) -> None:
        done.append(event)
        seen.set()

    return svc, done, seen


async def test_calls_errors_deadlines_and_events(url: str) -> None:
    svc, done, seen = make_service()
    async with svc.serve(url) as listener, Client(CalcRoute, listener.url) as client:
        assert "?events=" in listener.url  # the service subscribes to CalcDone
        assert await client.call(CalcWork(a=6, b=3, op=WorkType.DIV), timeout=5.0) == CalcWork(
            a=6, b=3, op=WorkType.DIV, result=2
        )
        assert (await client.call(Echo(text="hi"), timeout=5.0)).reply == "HI"
        with pytest.raises(RemoteError) as info:
            await client.call(CalcWork(a=1, b=0, op=WorkType.DIV), timeout=5.0)
        assert info.value.status == Status.BAD_REQUEST and info.value.message == "division by zero"
        with pytest.raises(DeadlineExceeded):
            await client.call(Echo(text="slow"), timeout=0.2)
        replies = await asyncio.gather(
            *(client.call(CalcWork(a=i, b=1, op=WorkType.SUM), timeout=10.0) for i in range(500))
        )
        assert [r.result for r in replies] == [i + 1 for i in range(500)]
        await client.publish(CalcDone(work=7, result=49))
        async with asyncio.timeout(5.0):
            await seen.wait()
        assert done == [CalcDone(work=7, result=49)]


async def test_client_spreads_calls_over_several_services(ipc_dir: str) -> None:
    a, b = Service("a", BenchRoute), Service("b", BenchRoute)
    counts = {"a": 0, "b": 0}


    def counting(name: str) -> Callable[[Who], Who]:
        def who(msg: Who) -> Who:
            counts[name] += 1
            return msg.evolve(pid=0)

        return who

    a.add_handler(Who, counting("a"), inline=True)
    b.add_handler(Who, counting("b"), inline=True)
    async with (
        a.serve("zmq+tcp://127.0.0.1:0") as la,
        b.serve(f"zmq+ipc://{ipc_dir}/b") as lb,
        Client(BenchRoute, f"{la.url},{lb.url}") as client,
    ):
        conn = client.connection
        assert isinstance(conn, ZmqConnection)
        await conn.wait_connected()
        await asyncio.gather(*(client.call(Who(), timeout=5.0) for _ in range(100)))
    assert counts["a"] + counts["b"] == 100 and min(counts.values()) >= 25


async def test_cpu_bound_service_with_worker_processes(url: str) -> None:
    async with (
        burn.serve(url.replace("calc", "burn"), workers=2) as listener,
        Client(BenchRoute, listener.url) as client,
    ):
        results = await asyncio.gather(*(client.call(Burn(n=n), timeout=20.0) for n in range(0, 4000, 100)))
        assert [r.result for r in results] == [sum_of_squares(n) for n in range(0, 4000, 100)]
        assert {(await client.call(Who(), timeout=5.0)).pid for _ in range(10)} == set(listener.worker_pids)
