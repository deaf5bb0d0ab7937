"""Interceptors: the server chain around each handler (in-process, over tcp:// and zmq+tcp://,
async, inline and threaded handlers, subscribers), the client chain around each call, their
order, short-circuits, and the built-in metrics and failure log as members of the chain."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from nanomsg_kernel import (
    Client,
    Context,
    DeadlineExceeded,
    Node,
    RemoteError,
    Service,
    ServiceError,
    ServiceMetrics,
    Status,
    Unavailable,
)
from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.failure_log import FailureLog
from nanomsg_kernel.interceptors import ClientCall, ClientInterceptor, Proceed, ServerInterceptor
from nanomsg_kernel.metrics import ClientMetrics

WORK = CalcWork(a=6, b=3, op=WorkType.DIV)
URLS = ["inproc://icpt", "tcp://127.0.0.1:0", "zmq+tcp://127.0.0.1:0"]


class Record(ServerInterceptor):
    """Writes what it sees to a shared log."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def before(self, msg: Any, ctx: Context) -> None:
        self.log.append(f"{self.name}.before {ctx.service}/{ctx.contract}")

    def after(self, msg: Any, ctx: Context, status: Status, seconds: float, error: BaseException | None) -> None:
        assert seconds >= 0
        self.log.append(f"{self.name}.after {status.name} {type(error).__name__ if error else '-'}")


class Wrap(ServerInterceptor):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def around(self, msg: Any, ctx: Context, proceed: Proceed) -> Any:
        self.log.append(f"{self.name}.enter")
        try:
            return await proceed(msg)
        finally:
            self.log.append(f"{self.name}.exit")


class Deny(ServerInterceptor):
    """Lets through only calls whose ``a`` is even (a stand-in for a check of the caller)."""

    def before(self, msg: Any, ctx: Context) -> None:
        if isinstance(msg, CalcWork) and msg.a % 2:
            raise ServiceError(Status.FORBIDDEN, "odd callers are not let in")


def make_service(name: str = "icalc") -> tuple[Service, list[str]]:
    svc = Service(name, CalcRoute)
    ran: list[str] = []

    @svc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        ran.append("handler")
        if w.b == 0:
            raise ServiceError(Status.BAD_REQUEST, "division by zero")
        if w.b < 0:
            raise ValueError("negative")
        return w.evolve(result=w.a // w.b)

    @svc.handler(Echo, inline=True)
    def echo(msg: Echo, ctx: Context) -> Echo:
        ran.append(f"echo {ctx.contract}")
        return msg.evolve(reply=msg.text.upper())

    return svc, ran


async def test_the_built_in_metrics_and_failure_log_are_the_chain_by_default() -> None:
    svc, _ran = make_service()
    assert svc.interceptors[0] is svc.metrics and isinstance(svc.interceptors[1], FailureLog)
    assert isinstance(svc.metrics, ServerInterceptor)
    svc.interceptors = ()  # an empty chain: nothing counts
    assert (await svc.dispatch(WORK)).result == 2
    assert svc.metrics.contracts == {}
    svc.interceptors = [svc.metrics]
    await svc.dispatch(WORK)
    assert svc.metrics.snapshot()["CalcWork"]["calls"] == 1


@pytest.mark.parametrize("nested", [False, True], ids=["hooks", "with-around"])
async def test_hooks_run_in_chain_order_and_after_in_reverse(nested: bool) -> None:
    svc, ran = make_service()
    log: list[str] = []
    middle: ServerInterceptor = Wrap("w", log) if nested else Record("m", log)
    svc.interceptors = [Record("a", log), middle, Record("b", log)]
    assert (await svc.dispatch(WORK)).result == 2
    inner = ["w.enter"] if nested else ["m.before icalc/CalcWork"]
    inner_end = ["w.exit"] if nested else ["m.after OK -"]
    assert log == ["a.before icalc/CalcWork", *inner, "b.before icalc/CalcWork",
                   "b.after OK -", *inner_end, "a.after OK -"]
    assert ran == ["handler"]
    log.clear()
    with pytest.raises(RemoteError) as caught:
        await svc.dispatch(CalcWork(a=1, b=0, op=WorkType.DIV))
    assert caught.value.status is Status.BAD_REQUEST
    assert log[-1] == "a.after BAD_REQUEST ServiceError"


@pytest.mark.parametrize("nested", [False, True], ids=["hooks", "with-around"])
async def test_a_before_hook_short_circuits_with_its_status(nested: bool) -> None:
    svc, ran = make_service()
    log: list[str] = []
    chain: list[ServerInterceptor] = [svc.metrics, Deny(), Record("r", log)]
    if nested:
        chain.append(Wrap("w", log))
    svc.interceptors = chain
    with pytest.raises(RemoteError) as caught:
        await svc.dispatch(CalcWork(a=7, b=1, op=WorkType.DIV))
    assert (caught.value.status, caught.value.message) == (Status.FORBIDDEN, "odd callers are not let in")
    assert ran == [] and log == []  # neither the handler nor the interceptors after it ran
    assert svc.metrics.snapshot()["CalcWork"]["errors"] == {"FORBIDDEN": 1}
    assert (await svc.dispatch(CalcWork(a=8, b=2, op=WorkType.DIV))).result == 4


@pytest.mark.parametrize("url", URLS)
async def test_the_chain_runs_over_every_transport_for_async_inline_and_thread_handlers(url: str) -> None:
    svc, ran = make_service()
    threads: list[str] = []

    @svc.handler(CalcDone)
    def in_a_thread(event: CalcDone) -> CalcDone:
        threads.append(threading.current_thread().name)
        return event

    log: list[str] = []
    svc.interceptors = [svc.metrics, Deny(), Record("r", log)]
    async with svc.serve(url) as listener, Client(CalcRoute, listener.url) as client:
        assert (await client.call(WORK, timeout=10)).result == 2
        assert (await client.call(Echo(text="hi"), timeout=10)).reply == "HI"
        assert (await client.call(CalcDone(work=1, result=2), timeout=10)).result == 2
        with pytest.raises(RemoteError) as caught:
            await client.call(CalcWork(a=5, b=1, op=WorkType.DIV), timeout=10)
        assert caught.value.status is Status.FORBIDDEN
    assert log == ["r.before icalc/CalcWork", "r.after OK -", "r.before icalc/Echo", "r.after OK -",
                   "r.before icalc/CalcDone", "r.after OK -"]
    assert ran == ["handler", "echo Echo"] and threads and threads[0] != threading.current_thread().name
    snap = svc.metrics.snapshot()
    assert snap["CalcWork"]["calls"] == 2 and snap["CalcWork"]["errors"] == {"FORBIDDEN": 1}


async def test_an_around_interceptor_may_change_the_message_and_the_reply_or_answer_itself() -> None:
    svc, ran = make_service()

    class Double(ServerInterceptor):
        async def around(self, msg: Any, ctx: Context, proceed: Proceed) -> Any:
            if isinstance(msg, Echo) and msg.text == "cached":
                return msg.evolve(reply="FROM CACHE")  # answered without the handler
            reply = await proceed(msg.evolve(a=msg.a * 2) if isinstance(msg, CalcWork) else msg)
            return reply.evolve(result=reply.result + 1000) if isinstance(reply, CalcWork) else reply

    svc.add_interceptor(Double())
    async with svc.serve("tcp://127.0.0.1:0") as listener, Client(CalcRoute, listener.url) as client:
        assert (await client.call(WORK, timeout=10)).result == 1004
        assert (await client.call(Echo(text="cached"), timeout=10)).reply == "FROM CACHE"
        assert (await client.call(Echo(text="x"), timeout=10)).reply == "X"
    assert ran == ["handler", "echo Echo"]
    assert svc.metrics.snapshot()["Echo"]["calls"] == 2


async def test_an_after_hook_that_raises_replaces_the_outcome() -> None:
    svc, _ran = make_service()

    class Veto(ServerInterceptor):
        def after(self, msg: Any, ctx: Context, status: Status, seconds: float, error: BaseException | None) -> None:
            if status is Status.OK:
                raise ServiceError(Status.CONFLICT, "vetoed afterwards")

    svc.add_interceptor(Veto())
    with pytest.raises(RemoteError) as caught:
        await svc.dispatch(WORK)
    assert caught.value.status is Status.CONFLICT
    assert svc.metrics.snapshot()["CalcWork"]["errors"] == {"CONFLICT": 1}  # the outer hook saw it


async def test_the_failure_log_logs_unexpected_exceptions_only(caplog: pytest.LogCaptureFixture) -> None:
    svc, _ran = make_service()
    with caplog.at_level(logging.ERROR), pytest.raises(RemoteError):
        await svc.dispatch(CalcWork(a=1, b=-1, op=WorkType.DIV), correlation_id=42)
    (record,) = [r for r in caplog.records if r.getMessage() == "handler failed"]
    assert (record.service, record.contract, record.correlation_id) == ("icalc", "CalcWork", 42)  # type: ignore[attr-defined]
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    caplog.clear()
    with caplog.at_level(logging.ERROR), pytest.raises(RemoteError):
        await svc.dispatch(CalcWork(a=1, b=0, op=WorkType.DIV))  # a ServiceError: on purpose
    assert caplog.records == []
    svc.interceptors = [svc.metrics]  # without the failure log, nothing is logged
    with caplog.at_level(logging.ERROR), pytest.raises(RemoteError) as caught:
        await svc.dispatch(CalcWork(a=1, b=-1, op=WorkType.DIV))
    assert caught.value.status is Status.INTERNAL and caplog.records == []


async def test_subscribers_run_through_the_chain() -> None:
    svc, _ran = make_service()
    got: list[int] = []

    @svc.subscribe(CalcDone, inline=True)
    def inline(event: CalcDone) -> None:
        got.append(event.work)

    @svc.subscribe(CalcDone)
    async def fails(event: CalcDone) -> None:
        raise RuntimeError("boom")

    log: list[str] = []
    svc.add_interceptor(Record("r", log))
    await svc.publish_local(CalcDone(work=1, result=2))
    assert got == [1]
    assert log == ["r.before icalc/event:CalcDone", "r.after OK -",
                   "r.before icalc/event:CalcDone", "r.after INTERNAL RuntimeError"]
    assert svc.metrics.snapshot()["event:CalcDone"]["errors"] == {"INTERNAL": 1}
    svc.add_interceptor(Wrap("w", log))  # nested: the inline one too
    log.clear()
    await svc.publish_local(CalcDone(work=3, result=4))
    assert got == [1, 3] and log.count("w.enter") == 2


async def test_a_cancelled_call_is_seen_as_cancelled_and_a_late_one_as_timeout() -> None:
    svc = Service("islow", CalcRoute)
    started = asyncio.Event()

    @svc.handler(CalcWork)
    async def slow(w: CalcWork) -> CalcWork:
        started.set()
        await asyncio.Event().wait()  # until cancelled
        return w

    log: list[str] = []
    svc.add_interceptor(Record("r", log))
    call = asyncio.create_task(svc.dispatch(WORK))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert log[-1] == "r.after CANCELLED CancelledError"
    loop = asyncio.get_running_loop()
    with pytest.raises(RemoteError) as caught:
        await svc.dispatch(WORK, deadline=loop.time() + 0.02)
    assert caught.value.status is Status.TIMEOUT and log[-1] == "r.after TIMEOUT ServiceError"


def test_only_interceptors_join_a_chain() -> None:
    svc, _ran = make_service()
    with pytest.raises(TypeError, match="ServerInterceptor"):
        svc.interceptors = [object()]  # type: ignore[list-item]
    with pytest.raises(TypeError, match="ClientInterceptor"):
        Client(CalcRoute, "inproc://nowhere", interceptors=[Record("r", [])])  # type: ignore[list-item]


# -- the client side ----------------------------------------------------------------------


class ClientRecord(ClientInterceptor):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def before(self, msg: Any, call: ClientCall) -> None:
        call.metadata["seen"] = "yes"
        self.log.append(f"before {call.contract} {call.service} {call.timeout}")

    def after(self, msg: Any, call: ClientCall, status: Status, seconds: float, error: BaseException | None) -> None:
        self.log.append(f"after {status.name} {type(error).__name__ if error else '-'} {call.metadata}")


class Refuse(ClientInterceptor):
    async def around(self, msg: Any, call: ClientCall, proceed: Proceed) -> Any:
        if isinstance(msg, Echo) and msg.text == "local":
            return msg.evolve(reply="answered here")
        if isinstance(msg, Echo) and msg.text == "no":
            raise ServiceError(Status.FORBIDDEN, "not sent")
        call.timeout = 5.0
        return await proceed(msg)


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:0", "zmq+tcp://127.0.0.1:0"])
async def test_client_interceptors_see_each_call_and_its_outcome(url: str) -> None:
    svc, ran = make_service()
    log: list[str] = []
    counts = ClientMetrics("icalc")
    chain = [counts, ClientRecord(log), Refuse()]
    async with svc.serve(url) as listener, \
            Client(CalcRoute, listener.url, interceptors=chain, timeout=2.0, service="icalc") as client:
        assert (await client.call(WORK)).result == 2
        with pytest.raises(RemoteError):
            await client.call(CalcWork(a=1, b=0, op=WorkType.DIV), timeout=1.0)
        assert (await client.call(Echo(text="local"))).reply == "answered here"
        with pytest.raises(ServiceError) as caught:
            await client.call(Echo(text="no"))
        assert caught.value.status is Status.FORBIDDEN
    assert log == [
        "before CalcWork icalc 2.0", "after OK - {'seen': 'yes'}",
        "before CalcWork icalc 1.0", "after BAD_REQUEST RemoteError {'seen': 'yes'}",
        "before Echo icalc 2.0", "after OK - {'seen': 'yes'}",
        "before Echo icalc 2.0", "after FORBIDDEN ServiceError {'seen': 'yes'}",
    ]
    assert ran == ["handler", "handler"]  # the Echo calls never left the client
    snap = counts.snapshot()
    assert snap["CalcWork"]["calls"] == 2 and snap["CalcWork"]["errors"] == {"BAD_REQUEST": 1}
    assert snap["Echo"]["errors"] == {"FORBIDDEN": 1}


async def test_client_interceptors_see_unavailable_and_deadline_exceeded() -> None:
    log: list[str] = []
    svc = Service("ihang", CalcRoute)
    started = asyncio.Event()

    @svc.handler(CalcWork)
    async def hang(w: CalcWork) -> CalcWork:
        started.set()
        await asyncio.Event().wait()
        return w

    async with svc.serve("tcp://127.0.0.1:0") as listener:
        async with Client(CalcRoute, listener.url, interceptors=[ClientRecord(log)]) as client:
            with pytest.raises(DeadlineExceeded):
                await client.call(WORK, timeout=0.05)
        url = listener.url
    assert log[-1] == "after TIMEOUT DeadlineExceeded {'seen': 'yes'}"
    client = Client(CalcRoute, url, interceptors=[ClientRecord(log)], connect_timeout=2)
    try:
        with pytest.raises(Unavailable):
            await client.call(WORK, timeout=5)  # nothing listens there any more
    finally:
        await client.close()
    assert log[-1] == "after UNAVAILABLE Unavailable {'seen': 'yes'}"


async def test_a_services_client_interceptors_wrap_its_bindings_to_urls() -> None:
    calc, _ran = make_service()
    gateway = Service("igateway", CalcRoute)

    @gateway.handler(CalcWork)
    async def forward(w: CalcWork, ctx: Context) -> CalcWork:
        return await ctx.bindings.calc.call(w, timeout=5)

    log: list[str] = []
    gateway.client_interceptors.append(ClientRecord(log))
    async with calc.serve("tcp://127.0.0.1:0") as listener:
        node = Node()
        node.add(gateway, bindings={"calc": listener.url})
        async with node:
            assert (await gateway.dispatch(WORK)).result == 2
            (metrics,) = node.client_metrics
    assert log[0].startswith("before CalcWork calc ") and log[1] == "after OK - {'seen': 'yes'}"
    assert (metrics.service, metrics.caller) == ("calc", "igateway")
    assert metrics.snapshot()["CalcWork"]["calls"] == 1
    assert isinstance(calc.metrics, ServiceMetrics) and calc.metrics.snapshot()["CalcWork"]["calls"] == 1


@pytest.mark.parametrize("url", URLS)
async def test_metadata_a_client_interceptor_adds_reaches_the_server_chain(url: str) -> None:
    svc, ran = make_service()

    class Token(ClientInterceptor):
        def __init__(self, token: str) -> None:
            self.token = token

        def before(self, msg: Any, call: ClientCall) -> None:
            call.metadata["token"] = self.token

    class RequireToken(ServerInterceptor):
        def before(self, msg: Any, ctx: Context) -> None:
            if ctx.metadata.get("token") != "s3cret":
                raise ServiceError(Status.PERMISSION_DENIED, "no valid token")

    svc.add_interceptor(RequireToken())
    async with svc.serve(url) as listener:
        async with Client(CalcRoute, listener.url, interceptors=[Token("s3cret")]) as client:
            assert (await client.call(WORK, timeout=10, metadata={"other": b"\x00"})).result == 2
        async with Client(CalcRoute, listener.url, interceptors=[Token("guess")]) as client:
            with pytest.raises(RemoteError) as caught:
                await client.call(WORK, timeout=10)
    assert caught.value.status is Status.PERMISSION_DENIED and ran == ["handler"]
