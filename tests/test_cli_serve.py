"""``nanomsg-kernel serve``: a node from its config, called from outside, stopped by a signal."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from nanomsg_kernel import Client, Context, RemoteError, Service, Status
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, Echo, WorkType

HERE = Path(__file__).resolve().parent

slow = Service("slow", CalcRoute)
"""A service the serve tests import from this module: its handler takes ``a`` milliseconds."""


@slow.handler(CalcWork)
async def slow_work(work: CalcWork, ctx: Context) -> CalcWork:
    ctx.logger.info("working on it")
    await asyncio.sleep(work.a / 1000)  # the work itself, not a wait for a condition
    return work.evolve(result=work.a + work.b)


class Served:
    """A ``serve`` subprocess and what it printed."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, config: Path, *args: str, serve_args: tuple[str, ...] = ()) -> Served:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nanomsg_kernel.app.cli", *args, "serve", *serve_args, str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        return cls(proc)

    async def read_until(self, prefix: str, stream: str = "stdout", timeout: float = 30) -> str:
        reader = self.proc.stdout if stream == "stdout" else self.proc.stderr
        assert reader is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await reader.readline()
                assert raw, f"serve ended before printing {prefix!r}; printed: {self.lines}"
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if line.startswith(prefix):
                    return line

    async def urls(self) -> dict[str, list[str]]:
        """Read up to the 'ready' line; the listening URLs by service, and 'metrics'."""
        await self.read_until("ready ")
        found: dict[str, list[str]] = {}
        for line in self.lines:
            words = line.split()
            if words[0] == "listening":
                found.setdefault(words[1], []).append(words[2])
            elif words[0] == "metrics":
                found["metrics"] = [words[1]]
        return found

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        async with asyncio.timeout(timeout):
            out, err = await self.proc.communicate()
        assert self.proc.returncode is not None
        return self.proc.returncode, "\n".join([*self.lines, out.decode()]), err.decode()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.communicate()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


async def http_get(url: str, path: str = "/metrics", status: int = 200) -> str:
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        async with asyncio.timeout(10):
            raw = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
    return body.decode()


async def test_serve_calls_metrics_and_sigterm(tmp_path: Path) -> None:
    config = write(tmp_path, """
        [node]
        name = "test-node"
        metrics = { listen = "127.0.0.1:0" }
        [services.calc]
        object = "nanomsg_kernel.contracts.services:calc"
        listen = ["tcp://127.0.0.1:0", "inproc://calc"]
        [services.gateway]
        object = "nanomsg_kernel.contracts.services:gateway"
        listen = ["tcp://127.0.0.1:0"]
        bindings = { calc = "calc" }
    """)
    served = await Served.start(config)
    try:
        urls = await served.urls()
        assert served.lines[-1] == "ready node=test-node services=calc,gateway"
        assert urls["calc"][1] == "inproc://calc" and urls["calc"][0].startswith("tcp://127.0.0.1:")
        assert not urls["calc"][0].endswith(":0")
        async with Client(CalcRoute, urls["gateway"][0]) as client:
            done = await client.call(CalcWork(a=6, b=3, op=WorkType.DIV), timeout=10)
            assert done.result == 2
            assert (await client.call(Echo(text="hi"), timeout=10)).reply == "HI"
        async with Client(CalcRoute, urls["calc"][0]) as client:
            try:
                await client.call(CalcWork(a=6, b=0, op=WorkType.DIV), timeout=10)
            except RemoteError as exc:
                assert exc.status is Status.BAD_REQUEST
            else:
                raise AssertionError("division by zero was answered")
        text = await http_get(urls["metrics"][0])
        assert 'nanomsg_calls_total{contract="CalcWork",service="gateway"} 1.0' in text
        assert 'nanomsg_errors_total{contract="CalcWork",service="calc",status="BAD_REQUEST"} 1.0' in text
        # the gateway's binding to calc is in-process: no client metrics; process metrics are there
        assert "nanomsg_client_calls_total{" not in text and "process_cpu_seconds_total" in text
        assert await http_get(urls["metrics"][0], "/healthz") == "ok\n"
        assert await http_get(urls["metrics"][0], "/readyz") == "ready\n"
        code, out, err = await served.stop(signal.SIGTERM)
    finally:
        await served.kill()
    assert code == 0, err
    lines = out.splitlines()
    assert "stopping: SIGTERM received; in-flight calls get up to 5s" in lines
    summary = lines[lines.index("metrics summary:") + 1:]
    assert any(s.startswith("gateway.CalcWork: 1 calls, 0 errors") for s in summary), summary
    assert any(s.startswith("gateway.Echo: 1 calls, 0 errors") for s in summary), summary
    assert any(s.startswith("calc.CalcWork: 2 calls, 1 errors") for s in summary), summary


async def test_sigint_lets_the_call_in_flight_finish_and_logs_are_json(tmp_path: Path) -> None:
    config = write(tmp_path, """
        [node]
        grace = 10
        metrics = { listen = "127.0.0.1:0" }
        [services.slow]
        object = "test_cli_serve:slow"
        listen = ["tcp://127.0.0.1:0"]
    """)
    served = await Served.start(config, "--log-level", "info", "--log-json")
    try:
        urls = await served.urls()
        url = urls["slow"][0]
        assert await http_get(urls["metrics"][0], "/readyz") == "ready\n"
        async with Client(CalcRoute, url) as client:
            call = asyncio.create_task(client.call(CalcWork(a=3000, b=1, op=WorkType.SUM), timeout=20))
            log_line = await served.read_until('{"time"', stream="stderr")
            record = json.loads(log_line)
            assert record["message"] == "working on it"
            assert record["service"] == "slow" and record["contract"] == "CalcWork"
            assert isinstance(record["correlation_id"], int) and record["correlation_id"] > 0
            served.proc.send_signal(signal.SIGINT)  # while the handler is still working
            await served.read_until("stopping: SIGINT")
            # draining: not ready for new calls, alive all the same
            assert "slow: DRAINING" in await http_get(urls["metrics"][0], "/readyz", status=503)
            assert await http_get(urls["metrics"][0], "/healthz") == "ok\n"
            async with asyncio.timeout(20):
                done = await call
        assert done.result == 3001
        code, out, err = await served.stop(signal.SIGINT)  # a second signal: already stopping
    finally:
        await served.kill()
    assert code == 0, err
    assert "stopping: SIGINT received; in-flight calls get up to 10s" in out
    assert "slow.CalcWork: 1 calls, 0 errors" in out


async def test_grace_option_overrides_the_config(tmp_path: Path) -> None:
    config = write(tmp_path, """
        [node]
        grace = 30
        [services.calc]
        object = "nanomsg_kernel.contracts.services:calc"
        listen = ["tcp://127.0.0.1:0"]
    """)
    served = await Served.start(config, serve_args=("--grace", "0.5"))
    try:
        await served.urls()
        code, out, _err = await served.stop()
    finally:
        await served.kill()
    assert code == 0
    assert "stopping: SIGTERM received; in-flight calls get up to 0.5s" in out
    assert "metrics summary:\n(no calls)" in out


def test_serve_help_and_grace_flag() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nanomsg_kernel.app.cli", "serve", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0
    assert "Usage: nanomsg-kernel serve [OPTIONS] CONFIG" in proc.stdout
    assert "--grace" in proc.stdout and "--check" in proc.stdout


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(p) for p in (task / "children").read_text().split())
    return found


async def test_zmq_listener_with_worker_processes_from_the_config(tmp_path: Path) -> None:
    config = write(tmp_path, """
        [services.calc]
        object = "nanomsg_kernel.contracts.services:calc"
        listen = [{ url = "zmq+tcp://127.0.0.1:0", workers = 2 }]
    """)
    served = await Served.start(config)
    try:
        [url] = (await served.urls())["calc"]
        assert len(_children(served.proc.pid)) >= 2  # the worker processes, ready before 'ready'
        async with Client(CalcRoute, url) as client:
            calls = [client.call(CalcWork(a=i, b=i, op=WorkType.MULT), timeout=20) for i in range(50)]
            replies = await asyncio.gather(*calls)
        assert [r.result for r in replies] == [i * i for i in range(50)]
        code, _out, err = await served.stop()
    finally:
        await served.kill()
    assert code == 0, err


async def test_bad_worker_count_is_a_config_error(tmp_path: Path) -> None:
    config = write(tmp_path, """
        [services.calc]
        object = "nanomsg_kernel.contracts.services:calc"
        listen = [{ url = "zmq+tcp://127.0.0.1:0", workers = -1 }]
    """)
    served = await Served.start(config)
    async with asyncio.timeout(30):
        out, err = await served.proc.communicate()
    assert served.proc.returncode != 0
    assert served.proc.returncode == 2
    assert (f"{config}: services.calc.listen[0]: ZeroMQ option workers must be a number of processes >= 0, "
            "got -1") in err.decode(), (out, err)
    assert "nothing was started" in err.decode()
