"""Smoke test of the benchmark suite: ``python -m benchmarks --quick`` in a child process.

The figures of a short run are noise; what is checked is that every benchmark ran and
reported: every row of the table is there with a numeric ratio, the size table covers every
transport and body size, both output files are written, and without grpcio the gRPC rows
are skipped with a clear message while the rest still runs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.grpc_stubs import INSTALL_HINT, missing
from nanomsg_kernel.transports.loop import uvloop_available

ROOT = Path(__file__).resolve().parent.parent
QUICK_LIMIT = 150.0
"""Hard ceiling of the quick run (it takes about 40 s on two idle cores)."""

SKIP_MESSAGE = "not installed: gRPC rows skipped"


def _suite(args: list[str], timeout: float, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = f"{prelude}from benchmarks.__main__ import main; main({args!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


def _table(stdout: str, first: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header starts with column ``first``."""
    out: list[list[str]] = []
    inside = False
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|"):
            inside = False
        elif cells[0] == first:
            inside = True
        elif inside and not set(cells[0]) <= {"-"}:
            out.append(cells)
    return out


def _number(text: str) -> float:
    return float(text.rstrip("x").replace(",", "").split()[0])


def _expected_rows(grpc: bool) -> set[tuple[str, str, str]]:
    loops = ["asyncio", "uvloop"] if uvloop_available() else ["asyncio"]
    zmq_loop = "uvloop" if uvloop_available() else "asyncio"
    rows = {("codec", "CalcWork frame round trip", "-"), ("codec", "CalcWork frame round trip, pure codec", "-"), ("binding", "call through a LocalBinding", "asyncio"),
            ("inproc://", "service+client round trip", "asyncio")}
    for loop in loops:
        for label in ("tcp transport", "service+client"):
            rows |= {("tcp://", f"{label}: pipelined(64) calls/s", loop), ("tcp://", f"{label}: closed-loop p50", loop)}
        if grpc:
            for t in ("tcp://", "zmq+tcp://"):
                rows |= {("vs gRPC", f"{t} service+client: {m}", loop) for m in (
                    "closed-loop calls/s", "pipelined(64) calls/s", "closed-loop p50", "pipelined(64) p50")}
    for label in ("zmq transport", "service+client"):
        rows |= {("zmq+tcp://", f"{label}: pipelined(64) calls/s", zmq_loop),
                 ("zmq+tcp://", f"{label}: closed-loop p50", zmq_loop)}
    rows |= {("zmq+tcp://", "events one way (publish -> subscriber)", zmq_loop),
             ("zmq+tcp://", "CPU-bound service, workers=2", zmq_loop)}
    for label in ("service+client", "nats transport", "service+client, 2 instances", "service+client, 4 instances"):
        rows |= {("nats://", f"{label}: {m}", "asyncio") for m in ("pipelined(64) calls/s", "closed-loop p50")}
    return rows


def test_quick_suite_reports_every_row(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _suite(["--quick", "--seconds", "0.05", "--out", str(out)], QUICK_LIMIT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    grpc = missing() is None
    table = _table(proc.stdout, "area")
    found = {(r[0], r[1], r[2]) for r in table}
    assert found >= _expected_rows(grpc), sorted(_expected_rows(grpc) - found)
    assert len([r for r in table if r[:3] == ["codec", "CalcWork frame round trip", "-"]]) == 2  # msgpack, msgspec
    assert all(len(row) == 9 for row in table)
    for row in table:
        assert math.isfinite(_number(row[6])) and _number(row[6]) > 0, row
        assert _number(row[3]) > 0 and _number(row[5]) > 0, row
    if grpc:
        assert SKIP_MESSAGE not in proc.stdout + proc.stderr
    else:
        assert not any(r[0] == "vs gRPC" for r in table)
        assert SKIP_MESSAGE in proc.stdout and INSTALL_HINT in proc.stderr
    sizes = {(r[0], r[1]) for r in _table(proc.stdout, "transport")}
    transports = ["inproc", "tcp", "zmq+tcp"] + (["grpc"] if grpc else [])
    assert sizes == {(t, b) for t in transports for b in ("100 B", "10 KiB", "1 MiB")}
    saved = json.loads(out.with_name("run.json").read_text(encoding="utf-8"))
    assert {(r["area"], r["measure"], r["loop"]) for r in saved["rows"]} == found
    assert saved["results"]["machine"]["cores"] == os.cpu_count()
    assert out.with_name("run.md").read_text(encoding="utf-8").strip() in proc.stdout


def test_without_grpcio_the_grpc_rows_are_skipped_with_a_message(tmp_path: Path) -> None:
    prelude = "import sys; sys.modules['grpc'] = None; sys.modules['grpc_tools'] = None; "
    proc = _suite(["--quick", "--only", "inproc,grpc", "--out", str(tmp_path / "r")], 60.0, prelude)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"grpcio and grpcio-tools {SKIP_MESSAGE} ({INSTALL_HINT})" in proc.stderr
    assert SKIP_MESSAGE in proc.stdout
    table = _table(proc.stdout, "area")
    assert {r[0] for r in table} == {"binding", "inproc://"}


def test_unknown_section_is_refused() -> None:
    proc = _suite(["--only", "codec,nope"], 30.0)
    assert proc.returncode == 2
    assert "unknown section(s) nope" in proc.stderr


@pytest.mark.parametrize("seconds", ["0", "-1", "61"])
def test_seconds_out_of_range_is_refused(seconds: str) -> None:
    proc = _suite(["--seconds", seconds], 30.0)
    assert proc.returncode == 2
    assert "--seconds must be above 0" in proc.stderr


def test_the_server_step_serves_its_batch() -> None:
    # the setup docs/performance.md counts with callgrind: every request of a batch answered
    proc = subprocess.run([sys.executable, "-m", "benchmarks.server_step"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "32 requests served"
