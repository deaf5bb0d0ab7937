"""Handlers run in real asyncio tasks: eager ones where the interpreter has them (3.12+),
plain ones on 3.11. What the coroutine sees (current task, cancellation, timeouts, context
variables, weak references, done callbacks) is a task's. Then the same through services
over ZeroMQ, TCP and ``inproc://``."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import anyio
import pytest

from nanomsg_kernel import Bindings, Context, LocalBinding, Service
from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.deadlines import task_deadlines
from nanomsg_kernel.eager import EAGER, continuation, start_task
from nanomsg_kernel.errors import DeadlineExceeded

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def from_callback(fn: Any) -> Any:
    """Run ``fn()`` from a plain loop callback (outside any task), as a transport does."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def run() -> None:
        try:
            fut.set_result(fn())
        except BaseException as exc:  # handed to the test
            fut.set_exception(exc)

    loop.call_soon(run)
    return await fut


def test_eager_exactly_where_the_interpreter_has_eager_tasks() -> None:
    assert sys.version_info >= (3, 12) or not EAGER
    assert hasattr(asyncio, "eager_task_factory") == EAGER


def test_no_private_asyncio_name_is_used() -> None:
    import nanomsg_kernel.dispatch as dispatch
    import nanomsg_kernel.eager as eager
    import nanomsg_kernel.service as service
    import nanomsg_kernel.transports.server_core as core

    for module in (eager, service, dispatch, core):
        source = Path(module.__file__ or "").read_text(encoding="utf-8")
        assert "asyncio.tasks" not in source and "_enter_task" not in source and "_leave_task" not in source


async def test_the_coroutine_runs_in_a_real_task() -> None:
    loop = asyncio.get_running_loop()
    seen: list[asyncio.Task[Any] | None] = []
    called: list[str] = []

    async def quick() -> str:
        seen.append(asyncio.current_task())
        return "done"

    def start() -> tuple[asyncio.Task[str], bool]:
        task = start_task(loop, quick())
        return task, task.done()

    task, done_at_once = await from_callback(start)
    assert isinstance(task, asyncio.Task)
    assert done_at_once == EAGER  # 3.12+: the first step ran before start_task returned
    assert await task == "done"
    assert seen == [task]
    assert weakref.ref(task)() is task
    task.add_done_callback(lambda _: called.append("called"))
    await asyncio.sleep(0)
    assert called == ["called"]


async def test_eager_start_runs_the_first_step_at_once_and_the_rest_in_the_task() -> None:
    loop = asyncio.get_running_loop()
    order: list[str] = []
    gate = asyncio.Event()

    async def waits() -> str:
        order.append("first step")
        await gate.wait()
        order.append("rest")
        return "result"

    def start() -> asyncio.Task[str]:
        task = start_task(loop, waits(), name="waiter")
        order.append("returned")
        return task

    task = await from_callback(start)
    assert order == (["first step", "returned"] if EAGER else ["returned", "first step"])
    assert task.get_name() == "waiter"
    gate.set()
    assert await asyncio.wait_for(task, 5) == "result"
    assert order[-1] == "rest"


async def test_eager_false_waits_for_the_next_iteration() -> None:
    loop = asyncio.get_running_loop()
    order: list[str] = []

    async def note() -> None:
        order.append("ran")

    task = start_task(loop, note(), eager=False)
    order.append("returned")
    await task
    assert order == ["returned", "ran"]


async def test_asyncio_timeout_in_the_first_step_cancels_the_right_task() -> None:
    loop = asyncio.get_running_loop()
    outcome: list[str] = []

    async def handler() -> None:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.Event().wait()  # until cancelled
        except TimeoutError:
            outcome.append("timed out")
        async with asyncio.timeout(5):  # entered and left without waiting: no effect
            pass
        outcome.append("went on")

    task = await from_callback(lambda: start_task(loop, handler()))
    done, _ = await asyncio.wait({task}, timeout=5)  # (wait_for would cancel it: a false pass)
    if not done:
        task.cancel()
    assert outcome == ["timed out", "went on"]
    assert not task.cancelled() and task.cancelling() == 0


async def test_anyio_cancel_scopes_work_in_the_task() -> None:
    loop = asyncio.get_running_loop()

    async def handler() -> str:
        with anyio.move_on_after(0.05) as scope:
            await asyncio.Event().wait()  # until cancelled
        with anyio.fail_after(5):
            await anyio.sleep(0)
        return f"cancelled_caught={scope.cancelled_caught}"

    task = await from_callback(lambda: start_task(loop, handler()))
    assert await asyncio.wait_for(task, 5) == "cancelled_caught=True"


async def test_a_task_group_in_the_first_step_works() -> None:
    loop = asyncio.get_running_loop()

    async def child(n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    async def handler() -> list[int]:
        async with asyncio.TaskGroup() as tg:
            ts = [tg.create_task(child(n)) for n in range(3)]
        return [t.result() for t in ts]

    task = await from_callback(lambda: start_task(loop, handler()))
    assert await asyncio.wait_for(task, 5) == [0, 2, 4]


async def test_context_variables_stay_with_the_coroutine() -> None:
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    gate = asyncio.Event()

    async def handler(value: str) -> None:
        seen.append(var.get())
        var.set(value)
        await gate.wait()
        seen.append(var.get())

    var.set("caller")
    t1 = await from_callback(lambda: start_task(loop, handler("one")))
    t2 = await from_callback(lambda: start_task(loop, handler("two")))
    assert var.get() == "caller"  # nothing leaked back
    gate.set()
    await asyncio.wait_for(asyncio.gather(t1, t2), 5)
    assert seen == ["caller", "caller", "one", "two"]


async def test_cancel_asked_in_the_first_step_lands_at_the_first_wait() -> None:
    loop = asyncio.get_running_loop()
    outcome: list[str] = []

    async def handler() -> None:
        me = asyncio.current_task()
        assert me is not None
        assert me.cancel("stop") and me.cancelling() == 1
        outcome.append("still running")
        try:
            await asyncio.Event().wait()  # until cancelled
        except asyncio.CancelledError as exc:
            outcome.append(f"cancelled: {exc.args[0] if exc.args else ''}")
            raise

    task = await from_callback(lambda: start_task(loop, handler()))
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert outcome == ["still running", "cancelled: stop"]


async def test_started_from_inside_a_task_the_caller_is_current_again_after() -> None:
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    seen: list[object] = []
    gate = asyncio.Event()

    async def handler() -> None:
        seen.append(asyncio.current_task())
        await gate.wait()
        seen.append(asyncio.current_task())

    task = start_task(loop, handler())  # from this test's own task
    assert asyncio.current_task() is me
    gate.set()
    await asyncio.wait_for(task, 5)
    assert seen == [task, task]


async def test_an_error_in_the_first_step_is_the_tasks() -> None:
    loop = asyncio.get_running_loop()

    async def broken() -> None:
        raise ValueError("bad")

    task = await from_callback(lambda: start_task(loop, broken()))
    with pytest.raises(ValueError, match="bad"):
        await task
    assert asyncio.current_task() is not None  # the caller's own task is current


async def test_a_continuation_awaits_the_rest_of_a_coroutine_stepped_by_hand() -> None:
    gate = asyncio.Event()

    async def inner() -> str:
        await gate.wait()
        return "rest"

    async def outer() -> str:
        coro = inner()
        step = coro.send(None)  # the first step, by hand, in this task
        return await continuation(coro, step)

    task = asyncio.create_task(outer())
    await asyncio.sleep(0)
    assert not task.done()
    gate.set()
    assert await asyncio.wait_for(task, 5) == "rest"


# -- through services ----------------------------------------------------------------------

eager_svc = Service("eager", CalcRoute)
cancelled_handlers: list[str] = []
slow_cancelled: dict[str, asyncio.Event] = {}
"""The test waiting for the ``slow`` handler's cancellation puts a fresh event here."""


@eager_svc.handler(Echo)
async def eager_echo(msg: Echo) -> Echo:
    """Behaviours picked by ``msg.text``."""
    if msg.text == "task":
        task = asyncio.current_task()
        return msg.evolve(reply=type(task).__name__)
    if msg.text == "scope":
        try:
            async with asyncio.timeout(0.05):
                await asyncio.Event().wait()  # until cancelled
        except TimeoutError:
            return msg.evolve(reply="scope expired")
        return msg.evolve(reply="scope did not expire")
    if msg.text.startswith("ctx:"):
        before = var.get()
        var.set(msg.text)
        await asyncio.sleep(0)
        return msg.evolve(reply=f"{before}|{var.get()}")
    if msg.text == "slow":
        try:
            await asyncio.Event().wait()  # until cancelled
        except asyncio.CancelledError:
            cancelled_handlers.append("slow")
            if "event" in slow_cancelled:
                slow_cancelled["event"].set()
            raise
    return msg.evolve(reply=msg.text.upper())


@pytest.mark.parametrize("scheme", ["zmq+tcp", "tcp", "inproc"])
async def test_service_handlers_see_a_task_timeouts_and_their_own_context(scheme: str, inproc_url: str) -> None:
    url = f"{scheme}://127.0.0.1:0" if scheme != "inproc" else inproc_url
    cancelled_handlers.clear()
    slow_cancelled["event"] = asyncio.Event()
    async with eager_svc.serve(url) as listener, Client(CalcRoute, listener.url) as client:
        assert (await client.call(Echo(text="task"), timeout=5)).reply == "Task"  # a real one
        assert (await client.call(Echo(text="scope"), timeout=5)).reply == "scope expired"
        replies = await asyncio.gather(*(client.call(Echo(text=f"ctx:{i}"), timeout=5) for i in range(20)))
        assert [r.reply for r in replies] == [f"unset|ctx:{i}" for i in range(20)]
        with pytest.raises(DeadlineExceeded):
            await client.call(Echo(text="slow"), timeout=0.2)
        await asyncio.wait_for(slow_cancelled["event"].wait(), 5)  # cancelled at its deadline
        assert cancelled_handlers
        assert (await client.call(Echo(text="after"), timeout=5)).reply == "AFTER"


async def test_a_handler_that_finishes_at_once_leaves_no_deadline_behind() -> None:
    loop = asyncio.get_running_loop()
    async with eager_svc.serve("zmq+tcp://127.0.0.1:0") as listener, Client(CalcRoute, listener.url) as client:
        replies = await asyncio.gather(*(client.call(Echo(text=f"n{i}"), timeout=5) for i in range(200)))
        assert [r.reply for r in replies] == [f"N{i}" for i in range(200)]
        assert len(task_deadlines(loop)) == 0  # no deadline timer was ever armed for them
        with pytest.raises(DeadlineExceeded):
            await client.call(Echo(text="slow"), timeout=0.2)  # one that waits gets its timer


inner_svc = Service("eager-inner", CalcRoute)
outer_svc = Service("eager-outer", CalcRoute)


@inner_svc.handler(Echo)
async def inner_echo(msg: Echo) -> Echo:
    """``wait``: waits past any deadline; anything else: answers at once."""
    if msg.text == "wait":
        await asyncio.Event().wait()  # until cancelled
    return msg.evolve(reply=f"inner:{msg.text}")


@outer_svc.handler(Echo)
async def outer_echo(msg: Echo, ctx: Context) -> Echo:
    """Calls ``inner`` through its binding (within this call's deadline, or a shorter one)."""
    if msg.text.startswith("thread:"):
        return await asyncio.to_thread(lambda: msg.evolve(reply=msg.text.upper()))
    try:
        reply: Echo = await ctx.bindings.inner.call(msg.evolve(text=msg.text), timeout=0.2)
    except DeadlineExceeded:
        return msg.evolve(reply="inner timed out")
    return msg.evolve(reply=f"outer:{reply.reply}")


@inner_svc.handler(CalcWork)
def slow_work(work: CalcWork) -> CalcWork:
    """A handler run in a thread (not inline): sleeps ``a`` ms, then answers."""
    time.sleep(work.a / 1000)
    return work.evolve(result=work.a)


async def test_nested_binding_calls_and_thread_handlers_started_eagerly() -> None:
    """A handler started eagerly calls another service through a binding: a callee that
    answers at once stays in the first step; one that waits past the binding's deadline is
    cancelled and the caller gets DeadlineExceeded; thread handlers keep their deadline."""
    outer_svc.bindings = Bindings({"inner": LocalBinding("inner", inner_svc)})
    async with outer_svc.serve("zmq+tcp://127.0.0.1:0") as outer_l, \
            inner_svc.serve("zmq+tcp://127.0.0.1:0") as inner_l, \
            Client(CalcRoute, outer_l.url) as outer, Client(CalcRoute, inner_l.url) as inner:
        assert (await outer.call(Echo(text="now"), timeout=5)).reply == "outer:inner:now"
        assert (await outer.call(Echo(text="wait"), timeout=5)).reply == "inner timed out"
        assert (await outer.call(Echo(text="thread:x"), timeout=5)).reply == "THREAD:X"
        assert (await inner.call(CalcWork(a=1, b=0, op=WorkType.SUM), timeout=5)).result == 1
        with pytest.raises(DeadlineExceeded):
            await inner.call(CalcWork(a=400, b=0, op=WorkType.SUM), timeout=0.1)


async def test_inproc_calls_nest(inproc_url: str) -> None:
    """A handler that calls another service over ``inproc://`` nests (each in a task of its
    own), and every caller's task is current again when its call returns."""
    calls: list[object] = []
    front = Service("eager-front", CalcRoute)
    back_url = inproc_url + "-back"

    @front.handler(Echo)
    async def front_echo(msg: Echo) -> Echo:
        before = asyncio.current_task()
        async with Client(CalcRoute, back_url) as back:
            reply: Echo = await back.call(msg.evolve(text=msg.text), timeout=1.0)
        calls.append((before, asyncio.current_task()))
        return msg.evolve(reply=f"front:{reply.reply}")

    me = asyncio.current_task()
    async with inner_svc.serve(back_url), front.serve(inproc_url) as listener, \
            Client(CalcRoute, listener.url) as client:
        assert (await client.call(Echo(text="now"), timeout=5)).reply == "front:inner:now"
        assert asyncio.current_task() is me
        replies = await asyncio.gather(*(client.call(Echo(text=f"n{i}"), timeout=5) for i in range(20)))
        assert [r.reply for r in replies] == [f"front:inner:n{i}" for i in range(20)]
        with pytest.raises(DeadlineExceeded):
            await client.call(Echo(text="wait"), timeout=0.3)  # inner waits; front is cancelled
        assert asyncio.current_task() is me
    assert len(calls) == 21
    for before, after in calls:  # the handler's own task, before and after it waited
        assert isinstance(before, asyncio.Task) and after is before and before is not me


async def test_an_inproc_call_answered_at_once_still_gives_the_loop_a_turn(inproc_url: str) -> None:
    """The handler answers inside the caller's step, yet the call yields once, as over a
    wire: a caller's loop of calls cannot starve the other tasks and callbacks."""
    loop = asyncio.get_running_loop()
    async with eager_svc.serve(inproc_url) as listener, Client(CalcRoute, listener.url) as client:
        await client.call(Echo(text="warm"), timeout=5)
        for i in range(3):
            ran = asyncio.Event()
            loop.call_soon(ran.set)
            assert (await client.call(Echo(text=f"t{i}"), timeout=5)).reply == f"T{i}"
            assert ran.is_set()
