"""Services, handlers, clients and bindings (in-process and over inproc://)."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from nanomsg_kernel import (
    Bindings,
    CapabilityError,
    ConfigError,
    Context,
    ContractError,
    DeadlineExceeded,
    Kind,
    LocalBinding,
    Node,
    RemoteError,
    Service,
    ServiceError,
    Status,
    Unavailable,
)
from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.contracts.catalog import CatalogRoute, GetItem
from nanomsg_kernel.deadlines import GRAIN, reply_deadlines, task_deadlines
from nanomsg_kernel.transports.base import (
    Connection,
    FrameHandler,
    Listener,
    PendingReplies,
    Transport,
    get_transport,
    register_transport,
)
from nanomsg_kernel.transports.inproc import InprocConnection, InprocTransport


def make_calc(name: str = "calc") -> Service:
    svc = Service(name, CalcRoute)

    @svc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        if w.op is WorkType.DIV and w.b == 0:
            raise ServiceError(Status.BAD_REQUEST, "division by zero")
        if w.a == 13:
            raise RuntimeError("unlucky")
        return w.evolve(result=w.a + w.b)

    @svc.handler(Echo)
    def echo(msg: Echo, ctx: Context) -> Echo:
        return msg.evolve(reply=f"{msg.text}|{threading.current_thread() is threading.main_thread()}")

    return svc


async def test_readme_example(inproc_url: str) -> None:
    from nanomsg_kernel.contracts.services import calc

    async with calc.serve(inproc_url), Client(CalcRoute, inproc_url) as client:
        done = await client.call(CalcWork(a=6, b=3, op=WorkType.DIV), timeout=1.0)
    assert done == CalcWork(a=6, b=3, op=WorkType.DIV, result=2)


async def test_sync_handlers_run_in_a_thread_unless_inline(inproc_url: str) -> None:
    svc = make_calc()
    inline = Service("inline", CalcRoute)
    inline.add_handler(Echo, lambda m: m.evolve(reply=str(threading.current_thread() is threading.main_thread())),
                       inline=True)
    assert (await svc.dispatch(Echo(text="x"))).reply == "x|False"
    assert (await inline.dispatch(Echo(text="x"))).reply == "True"


async def test_error_mapping_and_service_keeps_serving(inproc_url: str, caplog: pytest.LogCaptureFixture) -> None:
    svc = make_calc()
    async with svc.serve(inproc_url), Client(CalcRoute, inproc_url) as client:
        with pytest.raises(RemoteError) as e:
            await client.call(CalcWork(a=1, b=0, op=WorkType.DIV), timeout=2)
        assert (e.value.status, e.value.message) == (Status.BAD_REQUEST, "division by zero")
        with caplog.at_level(logging.ERROR), pytest.raises(RemoteError) as e:
            await client.call(CalcWork(a=13, b=0, op=WorkType.SUM), timeout=2)
        assert e.value.status is Status.INTERNAL and "unlucky" not in e.value.message
        assert e.value.message == "internal error in calc handling CalcWork (details in the service's log)"
        assert any("unlucky" in (r.exc_text or "") or r.exc_info for r in caplog.records)
        with pytest.raises(RemoteError) as e:
            await client.call(CalcDone(work=1, result=2), timeout=2)
        assert e.value.status is Status.CONTRACT_NOT_SUPPORTED
        assert (await client.call(CalcWork(a=2, b=3, op=WorkType.SUM), timeout=2)).result == 5
    assert svc.metrics.contracts["CalcWork"].errors == {Status.BAD_REQUEST: 1, Status.INTERNAL: 1}


def test_registration_errors() -> None:
    svc = make_calc()
    with pytest.raises(ContractError, match="CalcWork already has a handler"):
        svc.add_handler(CalcWork, lambda m: m)
    with pytest.raises(ContractError, match="GetItem' is not a contract of CalcRoute"):
        svc.add_handler(GetItem, lambda m: m)
    with pytest.raises(ContractError, match="must take"):
        Service("x", CalcRoute).add_handler(Echo, lambda: None)
    with pytest.raises(ConfigError):
        Service("", CalcRoute)


async def test_handler_returning_a_non_contract_is_internal() -> None:
    svc = Service("bad", CalcRoute)
    svc.add_handler(Echo, lambda m: "oops", inline=True)
    with pytest.raises(RemoteError) as e:
        await svc.dispatch(Echo(text="x"))
    assert e.value.status is Status.INTERNAL and "returned str" in e.value.message


async def test_deadline_travels_and_server_drops_late_work(inproc_url: str) -> None:
    seen: list[float | None] = []
    release = asyncio.Event()
    svc = Service("slow", CalcRoute)

    @svc.handler(Echo)
    async def slow(msg: Echo, ctx: Context) -> Echo:
        seen.append(ctx.time_left())
        if msg.text == "wait":
            await release.wait()
        return msg

    async with svc.serve(inproc_url), Client(CalcRoute, inproc_url) as client:
        assert await client.call(Echo(text="hi"), timeout=5.0) == Echo(text="hi")
        assert seen[0] is not None and 4.0 < seen[0] <= 5.0
        with pytest.raises(DeadlineExceeded):
            await client.call(Echo(text="wait"), timeout=0.05)
        assert len(client.connection.pending) == 0  # type: ignore[attr-defined]
    # the server cancelled the handler at the deadline: the metrics say TIMEOUT
    assert svc.metrics.contracts["Echo"].errors.get(Status.TIMEOUT) == 1
    with pytest.raises(RemoteError) as e:
        await svc.dispatch(Echo(text="x"), deadline=asyncio.get_running_loop().time() - 1)
    assert e.value.status is Status.TIMEOUT


async def test_binding_call_inherits_the_remaining_deadline() -> None:
    inner_left: list[float | None] = []
    calc = Service("calc", CalcRoute)
    gw = Service("gw", CalcRoute)

    @calc.handler(Echo)
    async def inner(msg: Echo, ctx: Context) -> Echo:
        inner_left.append(ctx.time_left())
        return msg.evolve(reply="inner")

    @gw.handler(Echo)
    async def outer(msg: Echo, ctx: Context) -> Echo:
        reply: Echo = await ctx.bindings.calc.call(msg)
        shorter: Echo = await ctx.bindings.calc.call(msg, timeout=0.5)
        assert shorter.reply == "inner"
        return reply

    node = Node()
    node.add(calc)
    node.add(gw, bindings={"calc": calc})
    async with node:
        assert (await LocalBinding("gw", gw).call(Echo(text="x"), timeout=3.0)).reply == "inner"
    assert inner_left[0] is not None and 2.0 < inner_left[0] <= 3.0
    assert inner_left[1] is not None and inner_left[1] <= 0.5


async def test_capability_rule() -> None:
    calc, other, gw = make_calc(), make_calc("other"), Service("gw", CalcRoute)

    @gw.handler(Echo)
    async def reach(msg: Echo, ctx: Context) -> Echo:
        reply: Echo = await ctx.bindings[msg.text].call(Echo(text="hop"))
        return reply

    node = Node()
    node.add(calc)
    node.add(other)
    node.add(gw, bindings={"calc": calc})
    async with node:
        assert (await LocalBinding("gw", gw).call(Echo(text="calc"))).reply == "hop|False"
        with pytest.raises(RemoteError) as e:
            await LocalBinding("gw", gw).call(Echo(text="other"))
        assert e.value.status is Status.INTERNAL and "CapabilityError" not in e.value.message
        with pytest.raises(CapabilityError, match="given: calc"):
            _ = gw.bindings.other
        with pytest.raises(CapabilityError, match="given: none"):
            _ = calc.bindings.gw


async def test_binding_errors_are_config_errors() -> None:
    node = Node()
    node.add(Service("gw", CalcRoute), bindings={"calc": make_calc()})
    with pytest.raises(ConfigError, match="not in node"):
        await node.start()
    node2 = Node()
    node2.add(Service("gw", CalcRoute), bindings={"calc": "nowhere"})
    with pytest.raises(ConfigError, match="bad URL"):
        await node2.start()
    with pytest.raises(ConfigError, match="already has a service"):
        node2.add(Service("gw", CalcRoute))


async def test_binding_to_a_url_needs_no_handler_change(inproc_url: str) -> None:
    from nanomsg_kernel.contracts.services import calc, gateway

    node = Node()
    node.add(calc, listen=[inproc_url])
    node.add(gateway, bindings={"calc": inproc_url})
    async with node:
        reply = await LocalBinding("gateway", gateway).call(CalcWork(a=7, b=5, op=WorkType.DIFF), timeout=2)
    assert reply.result == 2
    gateway.bindings = type(gateway.bindings)({})


async def test_publish_and_subscribe(inproc_url: str) -> None:
    svc = Service("events", CalcRoute)
    got: list[tuple[str, CalcDone]] = []
    arrived = asyncio.Event()

    @svc.subscribe(CalcDone)
    async def first(e: CalcDone) -> None:
        got.append(("first", e))

    @svc.subscribe(CalcDone)
    def second(e: CalcDone) -> None:
        got.append(("second", e))
        arrived.set()

    async with svc.serve(inproc_url), Client(CalcRoute, inproc_url) as client:
        await client.publish(CalcDone(work=1, result=2))
        await asyncio.wait_for(arrived.wait(), 5)
    assert got == [("first", CalcDone(1, 2)), ("second", CalcDone(1, 2))]


async def test_subscribers_run_in_order_and_a_failing_one_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    svc = Service("subs", CalcRoute)
    got: list[str] = []

    @svc.subscribe(CalcDone, inline=True)
    def inline_ctx(e: CalcDone, ctx: Context) -> None:
        got.append(f"inline:{ctx.service}")

    @svc.subscribe(CalcDone, inline=True)
    def broken(e: CalcDone) -> None:
        raise ValueError("no")

    @svc.subscribe(CalcDone)
    async def later(e: CalcDone) -> None:
        await asyncio.sleep(0)
        got.append("async")

    frame = CalcRoute.codec().encode(CalcDone(work=1, result=2), kind=Kind.EVENT)
    with caplog.at_level(logging.ERROR, logger="nanomsg_kernel.service.subs"):
        assert await svc.handle_frame(frame) is None
        await svc.publish_local(CalcDone(work=3, result=4))
    assert got == ["inline:subs", "async"] * 2
    snap = svc.metrics.snapshot()
    assert snap["event:CalcDone"]["calls"] == 6 and snap["event:CalcDone"]["errors"] == {"INTERNAL": 2}
    failed = [r for r in caplog.records if r.getMessage() == "subscriber failed"]
    assert len(failed) == 2 and all(r.exc_info and r.exc_info[0] is ValueError for r in failed)


async def test_thousand_concurrent_calls_each_get_their_own_reply(inproc_url: str) -> None:
    svc = make_calc()
    async with svc.serve(inproc_url), Client(CalcRoute, inproc_url) as client:
        replies = await asyncio.gather(
            *(client.call(CalcWork(a=i, b=1000, op=WorkType.SUM), timeout=10) for i in range(100, 1100))
        )
    assert [r.result for r in replies] == [i + 1000 for i in range(100, 1100)]
    assert [r.a for r in replies] == list(range(100, 1100))


async def test_cancelled_call_leaves_no_pending_entry(inproc_url: str) -> None:
    started = asyncio.Event()
    svc = Service("hang", CalcRoute)

    @svc.handler(Echo)
    async def hang(msg: Echo) -> Echo:
        started.set()
        await asyncio.Event().wait()
        return msg  # pragma: no cover

    listener = svc.serve(inproc_url)
    async with listener, Client(CalcRoute, inproc_url) as client:
        task = asyncio.create_task(client.call(Echo(text="x")))
        await asyncio.wait_for(started.wait(), 5)
        assert len(client.connection.pending) == 1  # type: ignore[attr-defined]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(client.connection.pending) == 0  # type: ignore[attr-defined]
        await listener.close(grace=0.01)


async def test_inproc_full_queue_applies_backpressure(inproc_url: str) -> None:
    gate = asyncio.Event()
    svc = Service("gated", CalcRoute)

    @svc.handler(Echo)
    async def gated(msg: Echo) -> Echo:
        await gate.wait()
        return msg

    async with svc.serve(inproc_url, queue_size=2, max_in_flight=1), Client(CalcRoute, inproc_url) as client:
        calls = [asyncio.create_task(client.call(Echo(text=str(i)), timeout=10)) for i in range(10)]
        for _ in range(50):
            await asyncio.sleep(0)
        # one in the handler, the queue holds 2, one in the pump waiting for a slot: the rest wait to send
        assert sum(t.done() for t in calls) == 0
        gate.set()
        replies = await asyncio.gather(*calls)
    assert [r.text for r in replies] == [str(i) for i in range(10)]  # none dropped


async def test_unavailable_when_nothing_listens() -> None:
    client = Client(CalcRoute, "inproc://nobody-here")
    with pytest.raises(Unavailable, match="nothing is listening"):
        await client.connect()
    with pytest.raises(Unavailable, match="nothing is listening"):
        await client.call(Echo(text="x"))


async def test_pending_calls_fail_when_connection_closes(inproc_url: str) -> None:
    svc = Service("hang", CalcRoute)

    @svc.handler(Echo)
    async def hang(msg: Echo) -> Echo:
        await asyncio.Event().wait()
        return msg  # pragma: no cover

    listener = svc.serve(inproc_url)
    async with listener:
        client = Client(CalcRoute, inproc_url)
        task = asyncio.create_task(client.call(Echo(text="x")))
        for _ in range(20):
            await asyncio.sleep(0)
        await client.close()
        with pytest.raises(Unavailable):
            await task
        await listener.close(grace=0.01)


async def test_frames_are_carried_unchanged(inproc_url: str) -> None:
    received: list[bytes] = []
    codec = CalcRoute.codec()

    async def record(frame: bytes) -> bytes:
        received.append(frame)
        return codec.encode(codec.decode(frame), kind=Kind.RESPONSE, correlation_id=7)

    listener = InprocTransport().listen(inproc_url, record)
    async with listener:
        conn = InprocConnection(inproc_url)
        frame = codec.encode(Echo(text="é"), correlation_id=7, timeout_ms=100)
        reply = await conn.request(frame, 1.0)
        await conn.close()
    assert received == [frame]
    assert codec.decode(reply) == Echo(text="é")


async def test_bad_frames_get_error_replies() -> None:
    svc = make_calc()
    codec = CalcRoute.codec()
    good = codec.encode(Echo(text="x"), correlation_id=9)
    bad_body = good[:-3] + b"\xc1\xc1\xc1"
    with pytest.raises(RemoteError) as e:
        codec.decode(await svc.handle_frame(bad_body) or b"")
    assert e.value.status is Status.DECODE_ERROR
    unknown_route = good[:4] + b"\x00\x63" + good[6:]
    with pytest.raises(RemoteError) as e:
        codec.decode(await svc.handle_frame(unknown_route) or b"")
    assert e.value.status is Status.CONTRACT_NOT_SUPPORTED and "unknown route 99" in e.value.message
    assert await svc.handle_frame(b"garbage") is None
    response = codec.encode(Echo(text="x"), kind=Kind.RESPONSE, correlation_id=3)
    with pytest.raises(RemoteError) as e:
        codec.decode(await svc.handle_frame(response) or b"")
    assert e.value.status is Status.BAD_REQUEST


async def test_user_transport_registration() -> None:
    """A user registers a scheme; Service.serve and Client use it."""
    from nanomsg_kernel.transports.inproc import InprocListener

    class Loopback(Transport):
        schemes = ("loop",)

        def listen(self, url: str, handler: FrameHandler, **options: object) -> Listener:
            return InprocListener(url.replace("loop://", "inproc://"), handler)

        def connect(self, url: str, **options: object) -> Connection:
            return InprocConnection(url.replace("loop://", "inproc://"))

    register_transport("loop", Loopback())
    assert isinstance(get_transport("loop://x"), Loopback)
    async with make_calc().serve("loop://user-transport"), Client(CalcRoute, "loop://user-transport") as c:
        assert (await c.call(Echo(text="a"), timeout=2)).reply == "a|False"
    with pytest.raises(ConfigError, match="no transport for scheme 'nope'"):
        get_transport("nope://x")


async def test_catalog_kernel_over_inproc(inproc_url: str) -> None:
    svc = Service("catalog", CatalogRoute)
    svc.add_handler(GetItem, lambda m: m, inline=True)
    import uuid

    async with svc.serve(inproc_url), Client(CatalogRoute, inproc_url) as client:
        ident = uuid.uuid4()
        assert await client.call(GetItem(id=ident), timeout=2) == GetItem(id=ident)


# -- deadlines: shared timers, the semantics of asyncio.timeout() --------------------------------


def _hanging(name: str, log: list[str]) -> Service:
    """A service whose Echo handler waits until cancelled, noting when it was."""
    svc = Service(name, CalcRoute)

    @svc.handler(Echo)
    async def hang(msg: Echo, ctx: Context) -> Echo:
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            log.append(f"cancelled {ctx.time_left()}")
            if msg.text == "absorb":
                return msg.evolve(reply="absorbed")
            raise
        return msg

    return svc


@pytest.mark.parametrize("timeout", [0.02, 0.06])  # a timer of its own; a shared timer
async def test_dispatch_deadline_cancels_the_handler_not_early(timeout: float) -> None:
    log: list[str] = []
    svc = _hanging("hang", log)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    deadline = loop.time() + timeout
    with pytest.raises(RemoteError) as e:
        await svc.dispatch(Echo(text="x"), deadline=deadline)
    assert e.value.status is Status.TIMEOUT and e.value.message == "deadline exceeded while handling"
    assert len(log) == 1 and float(log[0].split()[1]) <= 0  # cancelled at the deadline, not before
    assert loop.time() >= deadline
    assert task.cancelling() == 0  # the deadline's cancellation was taken back
    assert task_deadlines(loop).waiting == 0
    assert svc.metrics.contracts["Echo"].errors.get(Status.TIMEOUT) == 1


async def test_dispatch_cancelled_by_its_caller_is_not_a_timeout() -> None:
    log: list[str] = []
    svc = _hanging("hang", log)
    loop = asyncio.get_running_loop()
    call = asyncio.ensure_future(svc.dispatch(Echo(text="x"), deadline=loop.time() + 30))
    async with asyncio.timeout(5):
        while task_deadlines(loop).waiting == 0:
            await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert len(log) == 1
    assert task_deadlines(loop).waiting == 0


async def test_a_cancellation_at_the_deadline_is_not_swallowed() -> None:
    """The deadline's timer and another cancellation fire in the same loop iteration: the
    caller's cancellation propagates (it is not turned into TIMEOUT)."""
    svc = _hanging("hang", [])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.02
    task = asyncio.current_task()
    assert task is not None
    timer = loop.call_at(deadline, task.cancel)
    try:
        with pytest.raises(asyncio.CancelledError):
            await svc.dispatch(Echo(text="x"), deadline=deadline)
    finally:
        timer.cancel()
    assert task.uncancel() == 0  # exactly the outside cancellation was left
    assert task_deadlines(loop).waiting == 0


async def test_a_handler_may_absorb_the_deadline() -> None:
    svc = _hanging("hang", [])
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    reply = await svc.dispatch(Echo(text="absorb"), deadline=loop.time() + 0.02)
    assert reply.reply == "absorbed"
    assert task.cancelling() == 0


async def test_nested_calls_sharing_a_deadline_in_one_task() -> None:
    """A handler calling another service in-process (same task, same deadline bucket)."""
    log: list[str] = []
    inner = _hanging("inner", log)
    outer = Service("outer", CalcRoute)

    @outer.handler(Echo)
    async def relay(msg: Echo, ctx: Context) -> Echo:
        reply: Echo = await ctx.bindings.inner.call(msg)
        return reply

    outer.bindings = Bindings({"inner": LocalBinding("inner", inner)})
    loop = asyncio.get_running_loop()
    with pytest.raises(RemoteError) as e:
        await outer.dispatch(Echo(text="x"), deadline=loop.time() + 0.06)
    assert e.value.status is Status.TIMEOUT
    assert len(log) == 1
    assert task_deadlines(loop).waiting == 0
    assert outer.metrics.contracts["Echo"].errors.get(Status.TIMEOUT) == 1


async def test_pending_replies_deadline_and_cleanup() -> None:
    pending = PendingReplies()
    loop = asyncio.get_running_loop()
    # a reply in time
    fut = pending.expect(1)
    loop.call_soon(pending.resolve, CalcRoute.codec().encode(Echo(text="r"), correlation_id=1))
    assert (await pending.wait(1, fut, 5.0))[:2] == b"NK"
    # no reply: DeadlineExceeded, not before the timeout
    for timeout in (0.02, 0.06):
        start = loop.time()
        fut = pending.expect(2)
        with pytest.raises(DeadlineExceeded, match=f"no reply within {timeout:.3f}s"):
            await pending.wait(2, fut, timeout)
        assert loop.time() - start >= timeout
        assert len(pending) == 0
    # the caller cancelled: nothing left waiting, in the table or on a timer
    fut = pending.expect(3)
    waiter = asyncio.ensure_future(pending.wait(3, fut, 30.0))
    await asyncio.sleep(0)
    assert reply_deadlines(loop).waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(pending) == 0 and reply_deadlines(loop).waiting == 0
    # one request failed by its peer
    fut = pending.expect(4)
    assert pending.fail(4, Unavailable("gone"))
    with pytest.raises(Unavailable):
        await pending.wait(4, fut, 5.0)
    assert not pending.fail(4, Unavailable("again")) and len(pending) == 0


async def test_a_bucket_takes_only_deadlines_it_expires_in_time() -> None:
    loop = asyncio.get_running_loop()
    wheel = reply_deadlines(loop)
    now = loop.time()
    shared = wheel.bucket(now + 1.0, 1.0)
    assert shared.shared and now + 1.0 <= shared.when < now + 1.0 + GRAIN
    assert shared.takes(now + 1.0, 1.0) and shared.takes(shared.when, 1.0)
    assert not shared.takes(shared.when + 1e-6, 1.0)  # it would fire early
    assert not shared.takes(shared.when - GRAIN, 1.0)  # more than a grain late
    assert not shared.takes(now + 1.0, 0.01)  # short timeouts get an exact timer
    exact = wheel.bucket(now + 0.01, 0.01)
    assert not exact.shared and exact.when == now + 0.01 and not exact.takes(exact.when, 1.0)
    shared.fired = True
    assert not shared.takes(now + 1.0, 1.0)


async def test_pending_replies_share_a_bucket_and_none_expires_early() -> None:
    pending = PendingReplies()
    loop = asyncio.get_running_loop()
    starts: dict[int, float] = {}
    buckets: dict[int, Any] = {}

    async def one(cid: int, timeout: float) -> float:
        fut = pending.expect(cid)
        starts[cid] = loop.time()
        buckets[cid] = pending.arm(fut, timeout)
        with pytest.raises(DeadlineExceeded):
            await fut
        return loop.time() - starts[cid]

    async def later(cid: int, timeout: float) -> float:
        await asyncio.sleep(GRAIN + 0.001)  # due in a later grain than cid 1's bucket covers
        return await one(cid, timeout)

    waited = await asyncio.gather(one(1, 0.06), later(2, 0.06), later(3, 0.06))
    assert all(w >= 0.06 for w in waited)
    # 2 and 3 share a timer (armed together), not 1's: it fires before they are due.
    assert all(buckets[c].shared for c in (1, 2, 3)) and buckets[2] is buckets[3] is not buckets[1]
    short = pending.expect(4)
    assert not pending.arm(short, 0.02).shared  # a timer of its own, exact
    with pytest.raises(DeadlineExceeded):
        await short


async def test_local_binding_raises_what_a_client_raises() -> None:
    """In-process calls end with the errors a remote call ends with: TIMEOUT is
    DeadlineExceeded, UNAVAILABLE is Unavailable (the service's RemoteError is the cause)."""
    svc = _hanging("hang", [])

    @svc.handler(CalcWork)
    async def fail(w: CalcWork) -> CalcWork:
        raise Unavailable("downstream gone") if w.a else ServiceError(Status.NOT_FOUND, "no such thing")

    binding = LocalBinding("hang", svc)
    with pytest.raises(DeadlineExceeded) as timed_out:
        await binding.call(Echo(text="x"), timeout=0.02)
    assert isinstance(timed_out.value.__cause__, RemoteError)
    with pytest.raises(Unavailable, match="downstream gone"):
        await binding.call(CalcWork(a=1, b=0, op=WorkType.SUM), timeout=1.0)
    with pytest.raises(RemoteError) as other:
        await binding.call(CalcWork(a=0, b=0, op=WorkType.SUM))
    assert other.value.status is Status.NOT_FOUND


async def test_handle_frame_gives_the_frames_deadline_to_the_handler() -> None:
    svc = Service("deadlines", CalcRoute)
    seen: list[tuple[float | None, float | None]] = []

    @svc.handler(Echo, inline=True)
    def echo(msg: Echo, ctx: Context) -> Echo:
        seen.append((ctx.deadline, ctx.time_left()))
        return msg.evolve(reply=msg.text)

    @svc.handler(CalcWork)
    async def work(w: CalcWork, ctx: Context) -> CalcWork:
        seen.append((ctx.deadline, ctx.time_left()))
        return w.evolve(result=ctx.correlation_id)

    codec = CalcRoute.codec()
    loop = asyncio.get_running_loop()
    before = loop.time()
    reply = codec.decode(await svc.handle_frame(codec.encode(Echo(text="t"), correlation_id=4, timeout_ms=5000))
                         or b"")
    assert reply == Echo(text="t", reply="t")
    done = codec.decode(await svc.handle_frame(codec.encode(CalcWork(a=1, b=2, op=WorkType.SUM), correlation_id=77,
                                                            timeout_ms=2500)) or b"")
    assert done.result == 77
    after = loop.time()
    (d1, left1), (d2, left2) = seen
    assert d1 is not None and before + 5.0 <= d1 <= after + 5.0 and left1 is not None and 0 < left1 <= 5.0
    assert d2 is not None and before + 2.5 <= d2 <= after + 2.5 and left2 is not None and 0 < left2 <= 2.5
    await svc.handle_frame(codec.encode(Echo(text="none"), correlation_id=5))
    assert seen[-1] == (None, None)
    assert task_deadlines(loop).waiting == 0  # every call left its deadline bucket


async def test_handle_frame_counts_every_call_in_the_metrics() -> None:
    svc = make_calc("counted")
    codec = CalcRoute.codec()
    ok = codec.encode(CalcWork(a=1, b=2, op=WorkType.SUM), correlation_id=1, timeout_ms=1000)
    bad = codec.encode(CalcWork(a=1, b=0, op=WorkType.DIV), correlation_id=2)
    for _ in range(25):
        assert codec.decode(await svc.handle_frame(ok) or b"").result == 3
    for _ in range(3):
        with pytest.raises(RemoteError):
            codec.decode(await svc.handle_frame(bad) or b"")
    m = svc.metrics.contracts["CalcWork"]
    assert m.calls == 28 and sum(m.buckets) == 28 and m.total_seconds > 0
    assert m.errors == {Status.BAD_REQUEST: 3}
    assert list(svc.metrics.contracts) == ["CalcWork"]
    assert svc.metrics.snapshot()["CalcWork"]["calls"] == 28
