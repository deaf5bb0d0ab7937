"""Services and clients over every transport, the same tests over each (one string changes:
``inproc://``, ``tcp://``, ``zmq+tcp://``, ``zmq+ipc://``, from ``conftest.TRANSPORT_URLS``),
and the check that each carries exactly the bytes the in-process transport carries."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest
from conftest import TRANSPORT_URLS

from nanomsg_kernel import Service
from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.contracts.services import calc, done_events
from nanomsg_kernel.errors import DeadlineExceeded, RemoteError, ServiceError, Status, Unavailable
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.base import FrameHandler, Listener, get_transport

_names = itertools.count()

slow = Service("slow", CalcRoute)
statuses = Service("statuses", CalcRoute)


@statuses.handler(CalcWork)
async def answer_with_status(work: CalcWork) -> CalcWork:
    """Answers with the error status numbered ``work.a``."""
    raise ServiceError(Status(work.a), f"status {Status(work.a).name} from the handler")


@slow.handler(Echo)
async def slow_echo(msg: Echo) -> Echo:
    """Never answers by itself (until its deadline or the shutdown cancels it)."""
    await asyncio.get_running_loop().create_future()
    return msg


@pytest.fixture(params=sorted(TRANSPORT_URLS))
def url(request: pytest.FixtureRequest) -> str:
    return TRANSPORT_URLS[request.param]()


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


async def test_calls_and_replies(url: str) -> None:
    async with calc.serve(url) as listener, Client(CalcRoute, listener.url) as client:
        done = await client.call(CalcWork(a=6, b=7, op=WorkType.MULT), timeout=5.0)
        assert done.result == 42
        assert (await client.call(Echo(text="hi"), timeout=5.0)).reply == "HI"


async def test_service_errors_arrive_as_remote_errors(url: str) -> None:
    async with calc.serve(url) as listener, Client(CalcRoute, listener.url) as client:
        with pytest.raises(RemoteError) as info:
            await client.call(CalcWork(a=1, b=0, op=WorkType.DIV), timeout=5.0)
        assert info.value.status == Status.BAD_REQUEST and info.value.message == "division by zero"
        assert (await client.call(Echo(text="after"), timeout=5.0)).reply == "AFTER"


async def test_many_concurrent_calls(url: str) -> None:
    async with calc.serve(url) as listener, Client(CalcRoute, listener.url) as client:
        works = [CalcWork(a=i, b=i, op=WorkType.SUM) for i in range(300)]
        results = await asyncio.gather(*(client.call(w, timeout=10.0) for w in works))
        assert [r.result for r in results] == [2 * i for i in range(300)]
        assert len(client.connection.pending) == 0  # type: ignore[attr-defined]


async def test_a_handler_that_waits_holds_up_no_other_call_on_its_connection(url: str) -> None:
    svc = Service(f"mixed{next(_names)}", CalcRoute)
    gate = asyncio.Event()

    @svc.handler(Echo)
    async def waits(msg: Echo) -> Echo:
        await gate.wait()
        return Echo(text=msg.text, reply="late")

    @svc.handler(CalcWork)
    async def quick(w: CalcWork) -> CalcWork:
        return CalcWork(a=w.a, b=w.b, op=w.op, result=w.a + w.b)

    async with svc.serve(url) as listener, Client(CalcRoute, listener.url) as client:
        waiting = asyncio.ensure_future(client.call(Echo(text="x"), timeout=10.0))
        quick_ones = await asyncio.wait_for(asyncio.gather(
            *(client.call(CalcWork(a=i, b=1, op=WorkType.SUM), timeout=10.0) for i in range(50))), 10)
        assert [r.result for r in quick_ones] == [i + 1 for i in range(50)]
        assert not waiting.done()
        gate.set()
        assert (await asyncio.wait_for(waiting, 10)).reply == "late"


async def test_deadline_exceeded_leaves_nothing_waiting(url: str) -> None:
    async with slow.serve(url) as listener, Client(CalcRoute, listener.url) as client:
        with pytest.raises(DeadlineExceeded):
            await client.call(Echo(text="slow"), timeout=0.1)
        assert len(client.connection.pending) == 0  # type: ignore[attr-defined]


async def test_events_reach_subscribers(url: str) -> None:
    async with calc.serve(url) as listener, Client(CalcRoute, listener.url) as client:
        marker = 10_000 + next(_names)
        await client.publish(CalcDone(work=marker, result=1))
        await eventually(lambda: any(e.work == marker for e in done_events))


async def test_nothing_listening_is_unavailable(url: str) -> None:
    async with calc.serve(url) as listener:
        address = listener.url
    client = Client(CalcRoute, address)
    with pytest.raises(Unavailable):
        await client.call(Echo(text="anyone?"), timeout=5.0)
    await client.close()


async def test_pending_calls_fail_unavailable_when_the_server_goes(url: str) -> None:
    listener = slow.serve(url)
    await listener.start()
    try:
        client = Client(CalcRoute, listener.url)
        await client.connect()
        call = asyncio.ensure_future(client.call(Echo(text="never"), timeout=30.0))
        await eventually(lambda: len(client.connection.pending) == 1)  # type: ignore[attr-defined]
    finally:
        await listener.close(grace=0)
    try:
        async with asyncio.timeout(2):
            with pytest.raises(Unavailable):
                await call
    finally:
        await client.close()


@pytest.mark.parametrize(("status", "raised"), [
    (Status.TIMEOUT, DeadlineExceeded),
    (Status.UNAVAILABLE, Unavailable),
    (Status.NOT_FOUND, RemoteError),
])
async def test_error_statuses_raise_what_the_caller_expects(url: str, status: Status, raised: type) -> None:
    """TIMEOUT and UNAVAILABLE error frames raise the errors a caller gets when it gives up
    or cannot connect itself; the error frame is kept as the cause."""
    async with statuses.serve(url) as listener, Client(CalcRoute, listener.url) as client:
        with pytest.raises(ServiceError) as info:
            await client.call(CalcWork(a=int(status), b=0, op=WorkType.SUM), timeout=5.0)
        assert type(info.value) is raised
        assert info.value.status is status
        assert info.value.message == f"status {status.name} from the handler"
        if raised is not RemoteError:
            cause = info.value.__cause__
            assert isinstance(cause, RemoteError) and cause.status is status
        assert len(client.connection.pending) == 0  # type: ignore[attr-defined]


async def test_server_cancels_late_handler_and_answers_timeout(url: str) -> None:
    """A request whose deadline (in its header) passes while its handler runs gets a TIMEOUT
    error frame: the server cancelled the handler; the client raises DeadlineExceeded."""
    def timeouts() -> int:
        m = slow.metrics.contracts.get("Echo")
        return 0 if m is None else m.errors.get(Status.TIMEOUT, 0)

    before = timeouts()
    async with slow.serve(url) as listener, Client(CalcRoute, listener.url) as client:
        codec = CalcRoute.codec()
        frame = codec.encode(Echo(text="late"), kind=Kind.REQUEST, correlation_id=7, timeout_ms=60)
        reply = await client.connection.request(frame, 10.0)  # the caller waits longer than the server
        assert codec.decode_frame(reply).header.kind is Kind.ERROR
        with pytest.raises(RemoteError) as info:
            codec.decode(reply)
        assert info.value.status is Status.TIMEOUT
        with pytest.raises(DeadlineExceeded):  # the same, through the client (both sides give up)
            await client.call(Echo(text="late"), timeout=0.06)
        assert len(client.connection.pending) == 0  # type: ignore[attr-defined]
    assert timeouts() >= before + 1


async def _served(url: str, handler: FrameHandler) -> tuple[Listener, str]:
    listener = get_transport(url).listen(url, handler)
    await listener.start()
    return listener, listener.url


@pytest.mark.parametrize("transport", sorted(set(TRANSPORT_URLS) - {"inproc"}))
async def test_each_transport_carries_the_bytes_inproc_carries(transport: str) -> None:
    """The same message and correlation id give the same request and reply bytes over each."""
    requests: dict[str, list[bytes]] = {}
    replies: dict[str, list[bytes]] = {}
    for name in ("inproc", transport):
        seen = requests[name] = []
        got = replies[name] = []

        async def recording(frame: bytes, seen: list[bytes] = seen) -> bytes | None:
            seen.append(frame)
            return await calc.handle_frame(frame)

        listener, address = await _served(TRANSPORT_URLS[name](), recording)
        try:
            async with Client(CalcRoute, address) as client:  # through the client: a random cid, 2000 ms
                await client.call(CalcWork(a=2, b=3, op=WorkType.SUM), timeout=2.0)
            frame = CalcRoute.codec().encode(Echo(text="bytes"), kind=Kind.REQUEST, correlation_id=99)
            async with get_transport(address).connect(address) as conn:  # the connection alone
                got.append(await conn.request(frame, 2.0))
        finally:
            await listener.close()
    assert len(requests[transport]) == 2

    def without_cid(frame: bytes) -> bytes:  # each client starts its ids at random
        return frame[:10] + frame[18:]

    assert [without_cid(f) for f in requests[transport]] == [without_cid(f) for f in requests["inproc"]]
    assert requests[transport][1] == requests["inproc"][1]  # the same id: the same bytes
    assert replies[transport] == replies["inproc"] == [await calc.handle_frame(requests[transport][1])]
