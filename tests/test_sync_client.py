"""SyncClient: the blocking client, over real tcp:// and zmq+tcp:// sockets, against a
service served on an event loop in another thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from nanomsg_kernel import (
    ConfigError,
    DeadlineExceeded,
    RemoteError,
    Service,
    ServiceError,
    Status,
    SyncClient,
    Unavailable,
)
from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType

svc = Service("sync-calc", CalcRoute)
received: list[CalcDone] = []
got_event = threading.Event()
cancelled = threading.Event()


@svc.handler(CalcWork)
async def work(msg: CalcWork) -> CalcWork:
    if msg.op is WorkType.DIV and msg.b == 0:
        raise ServiceError(Status.BAD_REQUEST, "division by zero")
    return msg.evolve(result=msg.a * msg.b)


@svc.handler(Echo)
async def slow_echo(msg: Echo) -> Echo:
    try:
        await asyncio.Event().wait()  # never answers: the caller's timeout ends the call
    except asyncio.CancelledError:
        cancelled.set()
        raise
    return msg  # pragma: no cover


@svc.subscribe(CalcDone)
def done(event: CalcDone) -> None:
    received.append(event)
    got_event.set()


class ServerThread:
    """``svc`` served on the loop of a thread of its own (the test's thread stays free to block)."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.listener = svc.serve(url)
        asyncio.run_coroutine_threadsafe(self.listener.start(), self.loop).result(timeout=30)
        self.url = self.listener.url

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.listener.close(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(params=["tcp://127.0.0.1:0", "zmq+tcp://127.0.0.1:0"], ids=["tcp", "zmq+tcp"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    served = ServerThread(request.param)
    try:
        yield served
    finally:
        served.close()


def test_calls_publish_and_the_same_errors(server: ServerThread) -> None:
    with SyncClient(CalcRoute, server.url, timeout=10.0) as client:
        assert client.call(CalcWork(a=6, b=7, op=WorkType.MULT)).result == 42
        with pytest.raises(RemoteError) as err:
            client.call(CalcWork(a=1, b=0, op=WorkType.DIV))
        assert (err.value.status, err.value.message) == (Status.BAD_REQUEST, "division by zero")
        got_event.clear()
        client.publish(CalcDone(work=1, result=2))
        assert got_event.wait(timeout=30)
        assert received[-1] == CalcDone(work=1, result=2)
        cancelled.clear()
        with pytest.raises(DeadlineExceeded):
            client.call(Echo(text="x"), timeout=0.2)
        assert cancelled.wait(timeout=30)  # the call's CANCEL reached the handler
    with pytest.raises(ConfigError, match="closed"):
        client.call(CalcWork(a=1, b=1, op=WorkType.SUM))
    client.close()  # twice: nothing


def test_calls_from_several_threads_share_one_client(server: ServerThread) -> None:
    results: list[int | None] = []
    with SyncClient(CalcRoute, server.url, timeout=10.0) as client:
        def caller(n: int) -> None:
            results.append(client.call(CalcWork(a=n, b=2, op=WorkType.MULT)).result)

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert sorted(r or 0 for r in results) == [2 * n for n in range(8)]


def test_a_service_that_is_not_there_is_unavailable() -> None:
    with SyncClient(CalcRoute, "tcp://127.0.0.1:9", timeout=10.0) as client, pytest.raises(Unavailable):
        client.connect()


async def test_it_works_from_a_thread_with_a_running_loop_but_not_its_own() -> None:
    served = await asyncio.to_thread(ServerThread, "tcp://127.0.0.1:0")
    try:
        client = SyncClient(CalcRoute, served.url, timeout=10.0)
        try:
            # Called from this running loop's thread (as a notebook cell would): it blocks, and works.
            assert client.call(CalcWork(a=2, b=3, op=WorkType.MULT)).result == 6

            async def inside() -> None:
                client.call(CalcWork(a=1, b=1, op=WorkType.SUM))

            with pytest.raises(ConfigError, match="its own loop's thread"):
                asyncio.run_coroutine_threadsafe(inside(), client.loop).result(timeout=30)
        finally:
            client.close()
    finally:
        await asyncio.to_thread(served.close)
