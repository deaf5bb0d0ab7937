"""The README's code runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_starts_with_the_two_setup_commands() -> None:
    head = README.read_text(encoding="utf-8").splitlines()[:6]
    text = "\n".join(head)
    assert "pip install . && nanomsg-kernel demo" in text and "python -m pytest" in text


def test_contract_example_runs() -> None:
    ns: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(python_blocks()[0], "README.md#contracts", "exec"), ns)
    assert ns["codec"].decode(ns["frame"]) == ns["CalcWork"](a=1, b=2, op=ns["WorkType"].SUM)


def test_service_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The block serves, calls and prints the reply itself (``asyncio.run(main())``)."""
    ns: dict[str, Any] = {"__name__": "readme_service"}
    exec(compile(python_blocks()[1], "README.md#services", "exec"), ns)
    assert capsys.readouterr().out == "2\n"
    snapshot = ns["calc"].metrics.snapshot()
    assert snapshot["CalcWork"]["calls"] == 1 and snapshot["CalcWork"]["errors"] == {}


def test_main_job_runs() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "contracts"], capture_output=True, text=True, timeout=60, check=True)
    assert "result=2" in out.stdout and "BAD_REQUEST: division by zero" in out.stdout
