"""Sync handlers: their context works in their thread, each service has its own bounded pool,
and closing does not wait for threads that cannot be stopped."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator

import pytest

from nanomsg_kernel import (
    Client,
    ConfigError,
    Context,
    Node,
    RemoteError,
    Service,
    Status,
    Unavailable,
    evolve,
)
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.handler_threads import DEFAULT_MAX_WORKERS, HandlerThreads, handler_loop

WAIT = 10.0
"""Upper bound of every wait below (they end as soon as what they wait for happens)."""


class Gate:
    """Sync handlers that block until released, counted as they start (seen from the loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.release = threading.Event()
        self.started = 0
        self.finished = 0
        self._changed = asyncio.Event()
        self._lock = threading.Lock()

    def _bump(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)
        self.loop.call_soon_threadsafe(self._changed.set)

    def handler(self, msg: Echo) -> Echo:
        self._bump("started")
        try:
            self.release.wait(WAIT)
        finally:
            self._bump("finished")
        return evolve(msg, reply="released")

    async def until(self, what: str, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while getattr(self, what) < count:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def gate() -> AsyncIterator[Gate]:
    g = Gate(asyncio.get_running_loop())
    try:
        yield g
    finally:
        g.release.set()


def calc_service(name: str = "calc") -> Service:
    svc = Service(name, CalcRoute)

    @svc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        return evolve(w, result=w.a + w.b)

    return svc


async def test_the_context_works_in_a_sync_handler(inproc_url: str, caplog: pytest.LogCaptureFixture) -> None:
    front = Service("front", CalcRoute)
    seen: dict[str, object] = {}

    @front.handler(Echo)
    def echo(msg: Echo, ctx: Context) -> Echo:
        left = ctx.time_left()
        ctx.logger.info("echoing %s", msg.text)
        summed = ctx.bindings.calc.call_sync(CalcWork(a=2, b=3, op=WorkType.SUM))
        ctx.bindings.calc.publish_sync(CalcWork(a=0, b=0, op=WorkType.SUM))
        seen.update(left=left, thread=threading.current_thread().name, loop=handler_loop(), cid=ctx.correlation_id)
        return evolve(msg, reply=f"{summed.result}")

    node = Node()
    node.add(calc_service())
    node.add(front, bindings={"calc": node["calc"]}, listen=[inproc_url])
    caplog.set_level(logging.INFO, logger="nanomsg_kernel.service.front")
    async with node, Client(CalcRoute, inproc_url) as client:
        reply = await client.call(Echo(text="hi"), timeout=5.0)
    assert reply.reply == "5"
    left = seen["left"]
    assert isinstance(left, float) and 0 < left <= 5.0
    assert str(seen["thread"]).startswith("nanomsg_kernel front")
    assert seen["loop"] is not None
    [record] = [r for r in caplog.records if r.getMessage() == "echoing hi"]
    assert [getattr(record, f) for f in ("service", "contract", "correlation_id")] == ["front", "Echo", seen["cid"]]
    assert isinstance(seen["cid"], int) and seen["cid"] > 0  # the client's id (random start)


async def test_a_sync_handler_without_a_deadline_has_no_time_left() -> None:
    svc = Service("s", CalcRoute)

    @svc.handler(Echo)
    def echo(msg: Echo, ctx: Context) -> Echo:
        return evolve(msg, reply=repr(ctx.time_left()))

    assert (await svc.dispatch(Echo(text="x"))).reply == "None"


async def test_a_deadline_passed_in_a_sync_handler_reads_negative() -> None:
    svc = Service("s", CalcRoute)
    release = threading.Event()
    read: list[float | None] = []

    @svc.handler(Echo)
    def echo(msg: Echo, ctx: Context) -> Echo:
        release.wait(WAIT)
        read.append(ctx.time_left())
        return msg

    loop = asyncio.get_running_loop()
    with pytest.raises(RemoteError) as caught:
        await svc.dispatch(Echo(text="x"), deadline=loop.time() + 0.01)
    assert caught.value.status is Status.TIMEOUT
    release.set()
    await svc.close(grace=WAIT)  # waits for the running thread (it ends now)
    [left] = read
    assert left is not None and left < 0


def test_call_sync_and_time_left_refuse_outside_a_handler_thread() -> None:
    svc = Service("s", CalcRoute)
    ctx = Context("s", "Echo", 0, 12.0, svc.bindings, logging.getLogger("t"))
    with pytest.raises(RuntimeError, match="needs the event loop of the call"):
        ctx.time_left()
    bound = Node()
    bound.add(calc_service())
    bound.add(svc, bindings={"calc": bound["calc"]})
    bound.wire()
    view = Context("s", "Echo", 0, None, svc.bindings, logging.getLogger("t")).bindings
    with pytest.raises(RuntimeError, match="call_sync\\(\\) is for sync handlers"):
        view.calc.call_sync(CalcWork(a=1, b=2, op=WorkType.SUM))


async def test_call_sync_on_the_event_loop_is_refused() -> None:
    svc = Service("s", CalcRoute)
    refused: list[Exception] = []

    @svc.handler(Echo, inline=True)
    def echo(msg: Echo, ctx: Context) -> Echo:
        try:
            ctx.bindings.calc.call_sync(CalcWork(a=1, b=2, op=WorkType.SUM))
        except RuntimeError as exc:
            refused.append(exc)
        return msg

    node = Node()
    node.add(calc_service())
    node.add(svc, bindings={"calc": node["calc"]})
    node.wire()
    await svc.dispatch(Echo(text="x"))
    [exc] = refused
    assert "call_sync() is for sync handlers" in str(exc)


async def test_slow_sync_handlers_of_one_service_do_not_starve_another(inproc_url: str, gate: Gate) -> None:
    a = Service("a", CalcRoute, max_workers=8)
    a.add_handler(Echo, gate.handler)
    b = Service("b", CalcRoute)

    @b.handler(Echo)
    def quick(msg: Echo) -> Echo:
        return evolve(msg, reply="b")

    node = Node()
    node.add(a, listen=[inproc_url])
    node.add(b, listen=[inproc_url + "-b"])
    async with node, Client(CalcRoute, inproc_url) as ca, Client(CalcRoute, inproc_url + "-b") as cb:
        slow = [asyncio.ensure_future(ca.call(Echo(text=str(i)))) for i in range(8)]
        await gate.until("started", 8)
        reply = await asyncio.wait_for(cb.call(Echo(text="y")), WAIT)
        assert reply.reply == "b"
        assert gate.finished == 0  # a's eight are all still running
        gate.release.set()
        assert [r.reply for r in await asyncio.gather(*slow)] == ["released"] * 8


async def test_a_service_pool_is_bounded_by_max_workers(gate: Gate) -> None:
    # A name no other test uses: threads of other tests' pools may still be alive.
    a = Service("pool-bound", CalcRoute, max_workers=3)
    a.add_handler(Echo, gate.handler)
    calls = [asyncio.ensure_future(a.dispatch(Echo(text=str(i)))) for i in range(7)]
    await gate.until("started", 3)
    assert a.threads.calls == 7
    assert sum(t.name.startswith("nanomsg_kernel pool-bound_") for t in threading.enumerate()) == 3
    gate.release.set()
    assert len(await asyncio.gather(*calls)) == 7


async def test_close_cancels_queued_calls_and_does_not_wait_for_running_threads(gate: Gate) -> None:
    a = Service("a", CalcRoute, max_workers=2)
    a.add_handler(Echo, gate.handler)
    calls = [asyncio.ensure_future(a.dispatch(Echo(text=str(i)))) for i in range(8)]
    await gate.until("started", 2)
    await asyncio.wait_for(a.close(grace=0.05), WAIT)
    assert gate.finished == 0  # close returned while both threads still run
    queued = await asyncio.wait_for(asyncio.gather(*calls[2:], return_exceptions=True), WAIT)
    assert all(isinstance(e, RemoteError) and e.status is Status.UNAVAILABLE for e in queued)
    gate.release.set()
    assert [r.reply for r in await asyncio.gather(*calls[:2])] == ["released"] * 2
    assert gate.started == 2  # the queued calls never ran
    assert (await a.dispatch(Echo(text="again"))).reply == "released"  # a new pool serves again


async def test_node_close_is_bounded_with_eight_stuck_sync_handlers(
    inproc_url: str, gate: Gate, caplog: pytest.LogCaptureFixture,
) -> None:
    a = Service("a", CalcRoute, max_workers=8)
    a.add_handler(Echo, gate.handler)
    node = Node()
    node.add(a, listen=[inproc_url])
    await node.start()
    client = Client(CalcRoute, inproc_url)
    calls = [asyncio.ensure_future(client.call(Echo(text=str(i)))) for i in range(8)]
    await gate.until("started", 8)
    await asyncio.wait_for(node.close(grace=0.1), WAIT)
    assert gate.finished == 0  # returned without joining the eight threads
    failed = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), WAIT)
    assert all(isinstance(e, Unavailable) for e in failed)
    assert "8 sync handler(s) still running" in caplog.text
    await client.close()
    gate.release.set()
    await gate.until("finished", 8)


def test_max_workers_is_checked_and_has_a_documented_default() -> None:
    assert Service("s", CalcRoute).threads.max_workers == DEFAULT_MAX_WORKERS
    assert Service("s", CalcRoute, max_workers=2).threads.max_workers == 2
    for bad in (0, -1, 1.5, "4", True):
        with pytest.raises(ConfigError, match="max_workers"):
            Service("s", CalcRoute, max_workers=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="max_workers"):
            HandlerThreads("s", bad)  # type: ignore[arg-type]
