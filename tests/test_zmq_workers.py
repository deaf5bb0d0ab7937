"""``workers=N``: worker processes behind one ZeroMQ endpoint, supervised and cleaned up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq

from nanomsg_kernel import Client, Service
from nanomsg_kernel.contracts.bench import BenchRoute, Burn, Tick, Ticks, Who
from nanomsg_kernel.contracts.bench_services import burn, sum_of_squares
from nanomsg_kernel.errors import ConfigError, DeadlineExceeded, ServiceError, Unavailable
from nanomsg_kernel.transports.zmq import ZmqListener

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["tcp", "ipc"])
def url(request: pytest.FixtureRequest, ipc_dir: str) -> str:
    return "zmq+tcp://127.0.0.1:0" if request.param == "tcp" else f"zmq+ipc://{ipc_dir}/svc"


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


async def process_exited(pid: int, timeout: float) -> None:
    """Wait until process ``pid`` (not necessarily a child) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        async with asyncio.timeout(timeout):
            await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_workers_serve_requests_and_events_then_stop(url: str) -> None:
    async with burn.serve(url, workers=2) as listener:
        assert isinstance(listener, ZmqListener)
        pids = set(listener.worker_pids)
        assert len(pids) == 2 and os.getpid() not in pids
        async with Client(BenchRoute, listener.url) as client:
            seen = {(await client.call(Who(), timeout=10.0)).pid for _ in range(20)}
            assert seen == pids  # both workers take requests
            assert (await client.call(Burn(n=1000), timeout=10.0)).result == sum_of_squares(1000)
            for i in range(20):
                await client.publish(Tick(seq=i))
            # Each event goes to exactly one worker: the counts add up to 20.
            counts: dict[int, int] = {}
            async with asyncio.timeout(20.0):
                while sum(counts.values()) < 20:
                    reply = await client.call(Ticks(), timeout=5.0)
                    assert reply.pid in pids and reply.count is not None
                    counts[reply.pid] = reply.count
            assert sum(counts.values()) == 20
    for pid in pids:
        assert not alive(pid), f"worker {pid} outlived its listener"


async def test_killed_worker_is_replaced_while_calls_continue(ipc_dir: str) -> None:
    async with burn.serve(f"zmq+ipc://{ipc_dir}/svc", workers=2) as listener:
        assert isinstance(listener, ZmqListener)
        first = set(listener.worker_pids)
        async with Client(BenchRoute, listener.url) as client:
            outcomes: list[tuple[object, float]] = []
            stop = False

            async def caller() -> None:
                loop = asyncio.get_running_loop()
                while not stop:
                    start = loop.time()
                    try:
                        reply: object = (await client.call(Who(), timeout=1.0)).pid
                    except ServiceError as exc:
                        reply = exc
                        await asyncio.sleep(0)
                    outcomes.append((reply, loop.time() - start))

            callers = [asyncio.ensure_future(caller()) for _ in range(8)]
            await eventually(lambda: {r for r, _ in outcomes} >= first)
            victim = min(first)
            os.kill(victim, signal.SIGKILL)
            await process_exited(victim, 10.0)
            after = len(outcomes)
            survivors = first - {victim}
            # The other worker keeps answering...
            await eventually(lambda: len([r for r, _ in outcomes[after:] if r in survivors]) >= 50)
            # ...and a new worker starts and takes calls again.
            await eventually(lambda: any(r not in first and isinstance(r, int) for r, _ in outcomes), 60.0)
            stop = True
            await asyncio.gather(*callers)
            failures = [(r, t) for r, t in outcomes if isinstance(r, Exception)]
            # Calls that were inside the killed worker time out within their deadline.
            assert all(isinstance(r, DeadlineExceeded) and t < 1.5 for r, t in failures), failures
            pids = set(listener.worker_pids)
            assert len(pids) == 2 and victim not in pids and pids & survivors
    assert not any(alive(pid) for pid in pids)


async def test_workers_exit_when_their_parent_is_killed(ipc_dir: str) -> None:
    tmp = f"{ipc_dir}/tmp"  # the parent's temporary directory, to see what it leaves behind
    os.mkdir(tmp)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nanomsg_kernel.contracts.bench_services", f"zmq+ipc://{ipc_dir}/svc", "2",
        stdout=asyncio.subprocess.PIPE, cwd=ROOT, env={**os.environ, "TMPDIR": tmp},
    )
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 60.0)).decode().strip()
        async with Client(BenchRoute, url) as client:
            workers = {(await client.call(Who(), timeout=10.0)).pid for _ in range(10)}
        assert len(workers) == 2 and proc.pid not in workers
        assert [p.name[:15] for p in Path(tmp).iterdir()] == ["nanomsg-kernel-"]
        proc.kill()
        await proc.wait()
        for pid in workers:
            await process_exited(pid, 20.0)
        # The parent could not remove its private ipc directory: the workers did.
        assert list(Path(tmp).iterdir()) == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


class _Unimportable:
    """A frame handler whose service cannot be imported by a worker process."""

    def locate(self) -> str:
        return "no_such_module_for_workers:svc"

    async def handle_frame(self, frame: bytes) -> bytes | None:
        return None


async def test_workers_need_an_importable_service(ipc_dir: str) -> None:
    local = Service("local", BenchRoute)
    with pytest.raises(ConfigError, match="not a module-level attribute"):
        local.serve(f"zmq+ipc://{ipc_dir}/a", workers=1)
    listener = ZmqListener(f"zmq+ipc://{ipc_dir}/b", _Unimportable().handle_frame, workers=1, events=[])
    with pytest.raises(ConfigError, match="cannot load 'no_such_module_for_workers:svc'"):
        await listener.start()
    await listener.close()


async def test_workers_behind_a_curve_endpoint(ipc_dir: str) -> None:
    server_pub, server_sec = zmq.curve_keypair()
    good_pub, good_sec = zmq.curve_keypair()
    _bad_pub, bad_sec = zmq.curve_keypair()
    async with (
        burn.serve("zmq+tcp://127.0.0.1:0", workers=1, curve_secret_key=server_sec, curve_allow=[good_pub]) as lst,
        Client(BenchRoute, lst.url, curve_server_key=server_pub, curve_secret_key=good_sec) as good,
    ):
        assert (await good.call(Who(), timeout=10.0)).pid in lst.worker_pids
        bad = Client(BenchRoute, lst.url, curve_server_key=server_pub, curve_secret_key=bad_sec)
        with pytest.raises(Unavailable, match="refused the Curve key"):
            await bad.connect()
        with pytest.raises(Unavailable, match="refused the Curve key"):
            await bad.call(Who(), timeout=3.0)
        await bad.close()
        assert (await good.call(Burn(n=10), timeout=10.0)).result == sum_of_squares(10)
