"""Which codec is active, how to force the pure one, and where it is said."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from nanomsg_kernel.app.cli import main
from nanomsg_kernel.compiled import ACTIVE, available, codec_line
from nanomsg_kernel.contracts.calc import CalcRoute

ROOT = Path(__file__).resolve().parent.parent


def run(code: list[str], pure: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NANOMSG_KERNEL_PURE"}
    if pure:
        env["NANOMSG_KERNEL_PURE"] = "1"
    return subprocess.run([sys.executable, *code], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True, timeout=60).stdout


def test_python_m_says_which_codec_is_active() -> None:
    assert run(["-m", "nanomsg_kernel"], pure=True).strip().endswith("(codec: pure, NANOMSG_KERNEL_PURE is set)")
    shown = run(["-m", "nanomsg_kernel"], pure=False)
    assert ("(codec: compiled)" in shown) == (ACTIVE == "compiled" or "NANOMSG_KERNEL_PURE" in os.environ)


def test_the_environment_forces_the_pure_codec() -> None:
    code = "from nanomsg_kernel.contracts.calc import CalcRoute; print(CalcRoute.codec().compiled)"
    assert run(["-c", code], pure=True).strip() == "False"


def test_version_says_which_codec_is_active() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"nanomsg-kernel, version 0.1.0 ({codec_line()})"


def test_codecs_use_the_active_codec() -> None:
    assert CalcRoute.codec().compiled is available()
    assert ("compiled" in repr(CalcRoute.codec())) is available()
