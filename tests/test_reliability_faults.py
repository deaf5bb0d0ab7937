"""Faults: the server process killed and restarted in the middle of a run, a client process
killed in the middle of its calls, and full queues (backpressure, never a drop)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
from reliability.figures import record
from reliability.kernel import Hold, ReliRoute, Text, probe, reli
from reliability.process import ServerProcess

from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.errors import DeadlineExceeded, Unavailable

TESTS = Path(__file__).resolve().parent
CALL_TIMEOUT = 1.0
SLACK = 1.0
"""How much later than its timeout a failed call may return, on a loaded 2-core machine."""


def node_config(tmp_path: Path, url: str, name: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""
        [node]
        name = "{name}"
        grace = 1.0
        [services.calc]
        object = "nanomsg_kernel.contracts.services:calc"
        listen = ["{url}"]
    """), encoding="utf-8")
    return path


class Outcome:
    __slots__ = ("error", "ok", "seconds", "started")

    def __init__(self, started: float, seconds: float, ok: bool, error: BaseException | None) -> None:
        self.started, self.seconds, self.ok, self.error = started, seconds, ok, error


class Callers:
    """Concurrent callers, each calling in a loop with a unique text and checking the reply."""

    def __init__(self, client: Client, callers: int = 8) -> None:
        self.client = client
        self.outcomes: list[Outcome] = []
        self.successes = 0
        self.progress = asyncio.Event()
        self._stop = False
        self._n = 0
        self._tasks = [asyncio.ensure_future(self._run(i)) for i in range(callers)]

    async def _run(self, caller: int) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop:
            self._n += 1
            text = f"caller {caller} call {self._n}"
            start = loop.time()
            try:
                reply = await self.client.call(Echo(text=text), timeout=CALL_TIMEOUT)
            except (Unavailable, DeadlineExceeded) as exc:
                self.outcomes.append(Outcome(start, loop.time() - start, False, exc))
                await asyncio.sleep(0)  # a call can fail without waiting: let the loop run
            else:
                assert reply.text == text and reply.reply == text.upper(), (text, reply)
                self.outcomes.append(Outcome(start, loop.time() - start, True, None))
                self.successes += 1
            self.progress.set()

    async def wait_successes(self, count: int, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while self.successes < count:
                self.progress.clear()
                await self.progress.wait()

    async def stop(self) -> None:
        self._stop = True
        await asyncio.gather(*self._tasks)


@pytest.mark.parametrize("scheme", ["tcp", "zmq+tcp"])
async def test_server_killed_and_restarted_mid_run(scheme: str, tmp_path: Path) -> None:
    """Calls made while the server is gone fail with Unavailable or DeadlineExceeded within
    their deadline; once it is back, every call succeeds again (same client, no new setup)."""
    first = await ServerProcess.serve_config(node_config(tmp_path, f"{scheme}://127.0.0.1:0", "first"))
    url = first.urls[0]
    second: ServerProcess | None = None
    loop = asyncio.get_running_loop()
    client = Client(CalcRoute, url)
    callers = Callers(client)
    try:
        await callers.wait_successes(300)
        killed_at = loop.time()
        first.proc.send_signal(signal.SIGKILL)
        await first.kill()
        before_restart = len(callers.outcomes)
        second = await ServerProcess.serve_config(node_config(tmp_path, url, "second"))
        ready_at = loop.time()
        ok_before = callers.successes
        await callers.wait_successes(ok_before + 1)
        recovered_at = min(o.started + o.seconds for o in callers.outcomes[before_restart:] if o.ok)
        await callers.wait_successes(ok_before + 300)
    finally:
        await callers.stop()
        await client.close()
        await first.kill()
        if second is not None:
            await second.kill()
    failed = [o for o in callers.outcomes if not o.ok]
    assert failed, "no call overlapped the outage"
    late = [o for o in failed if o.seconds > CALL_TIMEOUT + SLACK]
    assert not late, f"{len(late)} failed calls took up to {max(o.seconds for o in late):.2f}s"
    after = [o for o in callers.outcomes if o.started >= recovered_at]
    assert after and all(o.ok for o in after), "a call failed after the service was back"
    kinds = {type(o.error).__name__ for o in failed}
    record(f"restart {scheme}", calls=len(callers.outcomes), succeeded=callers.successes,
           failed_during_outage=len(failed), failure_kinds=sorted(kinds),
           slowest_failure_s=round(max(o.seconds for o in failed), 3),
           restart_to_first_success_s=round(recovered_at - ready_at, 3),
           kill_to_first_success_s=round(recovered_at - killed_at, 3), lost_after_recovery=0)


VICTIM = textwrap.dedent("""
    import asyncio, sys
    from nanomsg_kernel import Client
    from reliability.kernel import Hold, ReliRoute

    async def main(url: str) -> None:
        async with Client(ReliRoute, url) as client:
            await asyncio.gather(*(client.call(Hold(tag="victim")) for _ in range(50)))

    asyncio.run(main(sys.argv[1]))
""")


@pytest.mark.parametrize("scheme", ["tcp", "zmq+tcp"])
async def test_client_killed_mid_call_does_not_disturb_the_server(
    scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    probe.reset()
    caplog.set_level(logging.WARNING)
    async with reli.serve(f"{scheme}://127.0.0.1:0") as listener:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
        victim = await asyncio.create_subprocess_exec(sys.executable, "-c", VICTIM, listener.url, env=env)
        try:
            async with Client(ReliRoute, listener.url) as good:
                async with asyncio.timeout(30):
                    while probe.calls["victim"] < 50:
                        probe.started.clear()
                        await probe.started.wait()
                victim.kill()
                assert await victim.wait() == -signal.SIGKILL
                reply = await asyncio.wait_for(good.call(Text(text="during"), timeout=5.0), 5.0)
                assert reply.reply == "during"
                probe.gate.set()  # the victim's calls finish; their replies have nowhere to go
                async with asyncio.timeout(10):
                    while probe.running:
                        await asyncio.sleep(0)
                assert (await good.call(Text(text="after"), timeout=5.0)).reply == "after"
                if scheme == "tcp":
                    async with asyncio.timeout(10):
                        while len(listener.peers) > 1:  # type: ignore[attr-defined]
                            await asyncio.sleep(0)
                else:
                    server = listener.server  # type: ignore[attr-defined]
                    async with asyncio.timeout(10):
                        while server.dropped_replies < 50:
                            await asyncio.sleep(0)
                    assert server.dropped_replies == 50
        finally:
            if victim.returncode is None:
                victim.kill()
                await victim.wait()
    assert probe.calls["victim"] == 50
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.parametrize("scheme", ["inproc", "tcp", "zmq+tcp"])
async def test_full_queue_applies_backpressure_not_loss(scheme: str) -> None:
    """200 requests at a server taking 4 at a time: never more than 4 run, the rest wait in
    bounded queues (the sender waits), and every one is answered exactly once."""
    probe.reset()
    url = "inproc://backpressure" if scheme == "inproc" else f"{scheme}://127.0.0.1:0"
    options: dict[str, int] = {"max_in_flight": 4}
    if scheme == "inproc":
        options["queue_size"] = 8
    elif scheme == "zmq+tcp":
        options["hwm"] = 16
    async with reli.serve(url, **options) as listener, Client(ReliRoute, listener.url) as client:
        calls = [asyncio.ensure_future(client.call(Hold(tag=f"t{i}"), timeout=60.0)) for i in range(200)]
        async with asyncio.timeout(30):
            while probe.running < 4:
                probe.started.clear()
                await probe.started.wait()
        for _ in range(100):
            await asyncio.sleep(0)
        assert probe.running == 4 and sum(probe.calls.values()) == 4
        probe.gate.set()
        async with asyncio.timeout(60):
            replies = await asyncio.gather(*calls)
    assert [r.tag for r in replies] == [f"t{i}" for i in range(200)]
    assert probe.max_running == 4
    assert all(probe.calls[f"t{i}"] == 1 for i in range(200))
    record(f"backpressure {scheme}", requests=200, max_in_flight=4, max_running_seen=probe.max_running,
           answered=len(replies), dropped=200 - len(replies))
