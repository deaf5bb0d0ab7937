"""``nanomsg-kernel demo``: every transport, checked, with a table; non-zero when something is wrong."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from nanomsg_kernel.app.demo import CHECKS, DemoResult, Row, render

ROW = re.compile(r"^(?P<transport>\S+(?: \(in-process\))?)\s+(?P<url>\S+)\s+(?P<calls>\d+)\s+(?P<errors>\d+)"
                 r"\s+(?P<p50>\d+)\s+(?P<p99>\d+)\s+(?P<rate>[\d,]+)$")


def demo(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = ["-c", code] if code else ["-m", "nanomsg_kernel.app.cli", "demo", *args]
    return subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=90, check=False)


def table(out: str) -> dict[str, dict[str, str]]:
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows[m["transport"]] = m.groupdict()
    return rows


def test_demo_runs_every_transport_and_passes() -> None:
    proc = demo("--calls", "300")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "skipped" not in out
    rows = table(out)
    assert list(rows) == ["binding (in-process)", "inproc://", "tcp://", "zmq+tcp://", "nats://"]
    for name, row in rows.items():
        assert row["calls"] == "300" and row["errors"] == "0", name
        assert 0 < int(row["p50"]) <= int(row["p99"]), name
        assert int(row["rate"].replace(",", "")) > 0, name
    assert rows["tcp://"]["url"].startswith("tcp://127.0.0.1:") and not rows["tcp://"]["url"].endswith(":0")
    for name, *_ in CHECKS:
        assert re.search(rf"^{re.escape(name)}\s+ok\s+ok\s+ok\s+ok\s+ok$", out, re.M), name
    assert "gateway -> calc through the binding (6 MULT 7 -> 42, CalcDone event): ok" in out
    summary = out.split("metrics summary (per service and contract):\n", 1)[1]
    # 300 timed calls and 2 CalcWork checks per transport, plus one from the gateway.
    assert "calc.CalcWork: 1511 calls, 5 errors" in summary
    assert "gateway.CalcWork: 1 calls, 0 errors" in summary
    assert out.rstrip().endswith("all checks passed")


def test_demo_without_nats_server_says_how_to_get_one(tmp_path: Path) -> None:
    """With no nats-server on PATH the nats:// row is left out, with the way to get one."""
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty directory: no nats-server there
    proc = subprocess.run([sys.executable, "-m", "nanomsg_kernel.app.cli", "demo", "--calls", "20"],
                          capture_output=True, text=True, timeout=90, check=False, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nats:// skipped: transport not available (nats-server is not on PATH; get it with " \
           "'apt-get install nats-server'" in proc.stdout
    assert list(table(proc.stdout)) == ["binding (in-process)", "inproc://", "tcp://", "zmq+tcp://"]
    assert proc.stdout.rstrip().endswith("all checks passed (skipped: nats)")


def test_demo_subset_of_transports() -> None:
    proc = demo("--calls", "20", "--transports", "tcp,binding")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(table(proc.stdout)) == ["tcp://", "binding (in-process)"]
    assert "inproc://demo-calc" not in proc.stdout


def test_demo_exits_1_when_the_service_answers_wrongly() -> None:
    broken = (
        "import operator\n"
        "from nanomsg_kernel.contracts.calc import WorkType\n"
        "from nanomsg_kernel.contracts.services import OPS\n"
        "OPS[WorkType.MULT] = operator.add\n"
        "from nanomsg_kernel.app.cli import main\n"
        "main(['demo', '--calls', '40', '--transports', 'binding,tcp'], prog_name='nanomsg-kernel')\n"
    )
    proc = demo(code=broken)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = table(proc.stdout)
    assert rows["tcp://"]["errors"] == "10" and rows["binding (in-process)"]["errors"] == "10"
    assert "gateway -> calc through the binding (6 MULT 7 -> 42, CalcDone event): FAILED: expected result 42" in proc.stdout
    assert "FAILED tcp://: 10 of 40 calls failed; first: wrong result for CalcWork(a=1002" in proc.stdout
    assert proc.stdout.rstrip().endswith("SOME CHECKS FAILED")


def test_demo_refuses_unknown_transports_and_has_help() -> None:
    proc = demo("--transports", "tcp,pigeon")
    assert proc.returncode == 2
    assert "Invalid value for '--transports'" in proc.stderr
    proc = demo("--help")
    assert proc.returncode == 0
    assert "--calls" in proc.stdout and "--transports" in proc.stdout


def test_render_reports_failed_checks() -> None:
    row = Row("tcp://", "tcp://127.0.0.1:1", calls=2, latencies=[0.0001, 0.0003], seconds=0.001)
    row.checks = {name: None for name, *_ in CHECKS}
    row.checks[CHECKS[0][0]] = "expected result 2, got RemoteError UNAVAILABLE: gone"
    lines = render(DemoResult([row], {}, None, "calc.CalcWork: 2 calls"))
    assert f"FAILED tcp:// {CHECKS[0][0]}: expected result 2, got RemoteError UNAVAILABLE: gone" in lines
    assert lines[-1] == "SOME CHECKS FAILED"
    assert row.quantile_us(0.5) == 300.0 and not row.ok


def test_render_marks_checks_that_did_not_run() -> None:
    row = Row("tcp://", "tcp://127.0.0.1:1")
    row.checks["connection"] = "Unavailable: UNAVAILABLE: tcp://127.0.0.1:1: cannot connect"
    lines = render(DemoResult([row], {"zmq+tcp": "ImportError: no zmq"}, None, ""))
    assert any(line.startswith(CHECKS[0][0]) and line.endswith("not run") for line in lines)
    assert "FAILED tcp:// connection: Unavailable: UNAVAILABLE: tcp://127.0.0.1:1: cannot connect" in lines
    assert lines[-1] == "SOME CHECKS FAILED (skipped: zmq+tcp)"
