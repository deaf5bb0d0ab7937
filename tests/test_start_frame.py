"""``Service.start_frame``: a frame served as far as it goes without waiting gets the same
reply as through ``handle_frame`` (whatever the frame, good or damaged), an async handler
runs in a real task (eager on Python 3.12+: answered at once when it does not wait) under the
request's deadline, and what a handler sees (current task, timeouts, context variables) is
what ``handle_frame`` gives it."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from nanomsg_kernel import Context, Service
from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.eager import EAGER, start_task
from nanomsg_kernel.errors import RemoteError, ServiceError, Status
from nanomsg_kernel.frame import cancel_frame
from nanomsg_kernel.testing import frames, mutated_frames
from nanomsg_kernel.transports.base import frame_starter

codec = CalcRoute.codec()
var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


def arithmetic() -> Service:
    """``CalcWork`` async (division by zero refused), ``Echo`` inline; ``CalcDone`` unhandled."""
    svc = Service("arith", CalcRoute)

    @svc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        if w.op is WorkType.DIV and w.b == 0:
            raise ServiceError(Status.BAD_REQUEST, "division by zero")
        return CalcWork(a=w.a, b=w.b, op=w.op, result=w.a + w.b)

    @svc.handler(Echo, inline=True)
    def echo(e: Echo, ctx: Context) -> Echo:
        return Echo(text=e.text, reply=f"{ctx.service}:{ctx.correlation_id}")

    return svc


def in_task(started: bytes | Coroutine[Any, Any, bytes | None] | None) -> asyncio.Task[bytes | None]:
    """The task a server core runs the coroutine ``start_frame`` gave in."""
    assert asyncio.iscoroutine(started), started
    return start_task(asyncio.get_running_loop(), started)


async def settle(started: bytes | Coroutine[Any, Any, bytes | None] | None) -> bytes | None:
    """The reply ``start_frame`` gave, running its coroutine in a task if it gave one."""
    if asyncio.iscoroutine(started):
        return await in_task(started)
    return started


def request(msg: Any, cid: int = 7, timeout_ms: int = 5000) -> bytes:
    return codec.encode(msg, correlation_id=cid, timeout_ms=timeout_ms)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One loop for the property tests' examples (``run_until_complete`` per example)."""
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def same_reply_both_ways(loop: asyncio.AbstractEventLoop, frame: bytes) -> None:
    svc = arithmetic()

    async def both() -> tuple[bytes | None, bytes | None]:
        return await settle(svc.start_frame(frame, loop)), await svc.handle_frame(frame)

    eager, awaited = loop.run_until_complete(both())
    assert eager == awaited


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames(CalcRoute))
def test_every_valid_frame_gets_the_reply_handle_frame_gives(loop: asyncio.AbstractEventLoop, frame: bytes) -> None:
    same_reply_both_ways(loop, frame)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated_frames(CalcRoute))
def test_every_damaged_frame_gets_the_reply_handle_frame_gives(loop: asyncio.AbstractEventLoop, frame: bytes) -> None:
    same_reply_both_ways(loop, frame)


async def test_a_handler_that_does_not_wait_is_answered_at_once_and_counted_once() -> None:
    svc = arithmetic()
    loop = asyncio.get_running_loop()
    started = svc.start_frame(request(CalcWork(a=2, b=3, op=WorkType.SUM), cid=41), loop)
    task = in_task(started)  # an async handler runs in a real task
    assert task.done() == EAGER  # 3.12+: an eager task, done at once when it does not wait
    reply = await task
    assert reply is not None
    frame = codec.decode_frame(reply)
    assert frame.header.correlation_id == 41 and frame.message.result == 5
    inline = svc.start_frame(request(Echo(text="hi"), cid=42), loop)
    assert isinstance(inline, bytes) and codec.decode(inline).reply == "arith:42"
    with pytest.raises(RemoteError) as refused:
        codec.decode(await settle(svc.start_frame(request(CalcWork(a=1, b=0, op=WorkType.DIV)), loop)) or b"")
    assert refused.value.status is Status.BAD_REQUEST
    snap = svc.metrics.snapshot()
    assert snap["CalcWork"]["calls"] == 2 and snap["CalcWork"]["errors"] == {"BAD_REQUEST": 1}
    assert snap["Echo"]["calls"] == 1


async def test_a_handler_that_waits_continues_in_a_task_whose_result_is_the_reply() -> None:
    svc = Service("waits", CalcRoute)
    gate = asyncio.Event()
    seen: list[object] = []

    @svc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        seen.append(asyncio.current_task())
        await gate.wait()
        seen.append(asyncio.current_task())
        return CalcWork(a=w.a, b=w.b, op=w.op, result=0)

    started = svc.start_frame(request(CalcWork(a=1, b=1, op=WorkType.SUM), cid=9), asyncio.get_running_loop())
    started = in_task(started)
    assert not started.done()
    async with asyncio.timeout(5):  # 3.11: the task's first step runs at the next iteration
        while not seen:
            await asyncio.sleep(0)
    assert seen[0] is started
    gate.set()
    done = codec.decode_frame(await started or b"")
    assert done.header.correlation_id == 9 and done.message.result == 0
    assert seen[1] is started
    assert svc.metrics.snapshot()["CalcWork"]["calls"] == 1


async def test_the_deadline_applies_once_the_handler_waits() -> None:
    svc = Service("slow", CalcRoute)

    @svc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        await asyncio.sleep(30)
        return w

    started = svc.start_frame(request(CalcWork(a=1, b=1, op=WorkType.SUM), timeout_ms=60),
                              asyncio.get_running_loop())
    with pytest.raises(RemoteError) as timed_out:
        codec.decode(await asyncio.wait_for(in_task(started), 10) or b"")
    assert timed_out.value.status is Status.TIMEOUT
    assert svc.metrics.snapshot()["CalcWork"]["errors"] == {"TIMEOUT": 1}


async def test_a_timeout_entered_in_the_first_step_cancels_the_task_that_takes_over() -> None:
    svc = Service("scoped", CalcRoute)

    @svc.handler(Echo)
    async def echo(e: Echo) -> Echo:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(30)
        except TimeoutError:
            return Echo(text=e.text, reply="gave up")
        return Echo(text=e.text, reply="slept")

    started = svc.start_frame(request(Echo(text="x")), asyncio.get_running_loop())
    assert codec.decode(await asyncio.wait_for(settle(started), 10) or b"").reply == "gave up"


async def test_context_variables_set_by_a_handler_stay_in_its_call() -> None:
    svc = Service("ctxvars", CalcRoute)

    @svc.handler(Echo)
    async def echo(e: Echo) -> Echo:
        before = var.get()
        var.set(e.text)
        await asyncio.sleep(0)
        return Echo(text=e.text, reply=f"{before}->{var.get()}")

    @svc.handler(CalcWork, inline=True)
    def work(w: CalcWork) -> CalcWork:
        var.set("inline")
        return w

    loop = asyncio.get_running_loop()
    var.set("caller")
    replies = [await settle(svc.start_frame(request(Echo(text=t)), loop)) for t in ("a", "b")]
    assert [codec.decode(r or b"").reply for r in replies] == ["caller->a", "caller->b"]
    await settle(svc.start_frame(request(CalcWork(a=1, b=1, op=WorkType.SUM)), loop))
    assert var.get() == "caller"


async def test_a_thread_handler_and_an_unhandled_contract_are_served_in_a_task() -> None:
    svc = Service("threads", CalcRoute)
    threads: list[str] = []

    @svc.handler(CalcWork)
    def work(w: CalcWork) -> CalcWork:
        threads.append(threading.current_thread().name)
        return CalcWork(a=w.a, b=w.b, op=w.op, result=-1)

    loop = asyncio.get_running_loop()
    started = svc.start_frame(request(CalcWork(a=1, b=1, op=WorkType.SUM)), loop)
    assert codec.decode(await in_task(started) or b"").result == -1
    assert threads and threads[0] != threading.current_thread().name
    with pytest.raises(RemoteError) as unsupported:
        codec.decode(await settle(svc.start_frame(request(Echo(text="?")), loop)) or b"")
    assert unsupported.value.status is Status.CONTRACT_NOT_SUPPORTED


async def test_a_failing_handler_is_an_internal_error_logged_with_its_call(caplog: pytest.LogCaptureFixture) -> None:
    svc = Service("fails", CalcRoute)

    @svc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        raise KeyError("lost")

    @svc.handler(Echo)
    async def other_contract(e: Echo) -> CalcDone:
        return CalcDone(work=1, result=1)

    loop = asyncio.get_running_loop()
    with caplog.at_level(logging.ERROR, logger="nanomsg_kernel.service.fails"):
        reply = await settle(svc.start_frame(request(CalcWork(a=1, b=1, op=WorkType.SUM), cid=5), loop))
    with pytest.raises(RemoteError) as internal:
        codec.decode(reply or b"")
    assert internal.value.status is Status.INTERNAL and "lost" not in internal.value.message
    assert any(getattr(r, "correlation_id", None) == 5 and "lost" in (r.exc_text or "") for r in caplog.records)
    # Any contract of the kernel is a reply (as through handle_frame).
    assert isinstance(codec.decode(await settle(svc.start_frame(request(Echo(text="x")), loop)) or b""), CalcDone)


async def test_a_reply_that_is_not_a_contract_is_an_internal_error() -> None:
    svc = Service("odd", CalcRoute)

    @svc.handler(Echo)
    async def echo(e: Echo) -> Any:
        return {"not": "a contract"}

    with pytest.raises(RemoteError) as internal:
        codec.decode(await settle(svc.start_frame(request(Echo(text="x")), asyncio.get_running_loop())) or b"")
    assert internal.value.status is Status.INTERNAL and "not a contract" in internal.value.message


async def test_a_cancel_frame_gets_no_reply_from_a_service() -> None:
    """``CANCEL`` is the server core's: a service handed one directly answers nothing."""
    svc = arithmetic()
    assert await svc.handle_frame(cancel_frame(7)) is None
    assert await settle(svc.start_frame(cancel_frame(7), asyncio.get_running_loop())) is None


def test_transports_find_the_start_of_a_services_handle_frame_only() -> None:
    svc = arithmetic()
    assert frame_starter(svc.handle_frame) == svc.start_frame

    async def plain(frame: bytes) -> bytes | None:
        return frame

    class Other:
        def start_frame(self, frame: bytes, loop: Any) -> bytes:
            return frame

        async def handle_frame(self, frame: bytes) -> bytes | None:
            return None

        async def something_else(self, frame: bytes) -> bytes | None:
            return None

    assert frame_starter(plain) is None
    assert frame_starter(Other().something_else) is None
    other = Other()
    assert frame_starter(other.handle_frame) == other.start_frame
