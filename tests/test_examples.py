"""Each program in examples/ runs to its end in a subprocess and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, tmp_path: Path, timeout: float = 90.0) -> str:
    """Run ``examples/NAME`` from an empty directory with the source tree importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=timeout, check=False)
    assert out.returncode == 0, f"{name} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_every_example_has_a_test() -> None:
    programs = {p.name for p in EXAMPLES.glob("*.py")}
    tested = {"two_services.py", "tls_node.py", "workers_node.py"}
    assert programs == tested


def test_two_services_with_a_binding_and_an_event(tmp_path: Path) -> None:
    out = run_example("two_services.py", tmp_path).splitlines()
    assert out == [
        "order 1: 3 apple, 2 left",
        "refused: CONFLICT: only 2 apple left",
        "stock heard of order 1",
    ]


def test_tls_node(tmp_path: Path) -> None:
    out = run_example("tls_node.py", tmp_path).splitlines()
    assert out[0].startswith("listening on tcp://127.0.0.1:") and out[0].endswith(" (TLS)")
    assert out[1:] == ["6 * 7 = 42", "a client that does not trust the CA: Unavailable"]


def test_workers_node(tmp_path: Path) -> None:
    lines = run_example("workers_node.py", tmp_path).splitlines()
    assert lines[0].startswith("workers: [")
    workers = {int(p) for p in lines[0].removeprefix("workers: [").removesuffix("]").split(", ")}
    assert len(workers) == 2 and os.getpid() not in workers
    answered = {}
    for line in lines[1:]:
        pid, _, count = line.removeprefix("worker ").partition(": ")
        answered[int(pid)] = int(count.removesuffix(" of 8 calls"))
    assert set(answered) <= workers and sum(answered.values()) == 8, lines
