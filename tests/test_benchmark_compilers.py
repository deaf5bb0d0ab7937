"""``python -m benchmarks.compilers`` without its optional tools: Cython, mypyc and valgrind
missing, each is skipped with a message and the rows that need none of them are printed.

Building the Cython and mypyc variants takes minutes, so it is not done here; the script
checks, when it does build them, that the compiled modules are what runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.compilers import STATEMENTS, speedups_built

ROOT = Path(__file__).resolve().parent.parent
WITHOUT_TOOLS = "import sys; sys.modules['Cython'] = None; sys.modules['mypyc'] = None; "


def _compilers(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = f"{WITHOUT_TOOLS}from benchmarks.compilers import main; main({args!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, check=False)


def _rows(stdout: str) -> dict[str, list[str]]:
    return {cells[1]: cells[2:] for line in stdout.splitlines() if line.startswith("| ")
            and not line.startswith("| variant") for cells in [[c.strip() for c in line.split("|")]]}


def test_without_cython_mypyc_and_valgrind_each_is_skipped_with_a_message() -> None:
    proc = _compilers(["--quick", "--instr"], {"PATH": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Cython: skipped, not installed (pip install cython)" in proc.stderr
    assert "mypyc: skipped, not installed (pip install mypy)" in proc.stderr
    assert "--instr: skipped, valgrind is not installed" in proc.stderr
    rows = _rows(proc.stdout)
    expected = {"pure (CPython)", "hand-written C"} if speedups_built() else {"pure (CPython)"}
    assert set(rows) == expected
    for name, cells in rows.items():
        assert len(cells) == len(STATEMENTS) + 2  # what runs, one cell per statement, the closing bar
        assert all(float(c.split()[0]) > 0 for c in cells[1:-1]), (name, cells)
    assert rows["pure (CPython)"][0] == "0 of 6 modules compiled"
    assert "instructions per call" not in proc.stdout


def test_help_and_a_bad_count_are_answered() -> None:
    assert "--instr" in _compilers(["--help"]).stdout
    proc = _compilers(["-n", "0"])
    assert proc.returncode == 2
    assert "-n and --jobs must be at least 1" in proc.stderr
