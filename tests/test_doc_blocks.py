"""Every Python block of README.md and docs/ runs as written, each in its own process.

Each ```python block is written to a file in an empty directory and run there with a time
limit, the source tree importable: a block must carry its own imports and start its own
``main()``. The markers of tests/test_docs_types.py hold here too: ``<!-- mypy: skip -->``
leaves an excerpt out, ``<!-- mypy: continue -->`` runs a block after those before it. Shell blocks (```bash, ```sh) that call ``nanomsg-kernel`` run too, unless they
need what a test cannot give them: a package install, a long-running ``serve`` or a node
listening on fixed ports (those are covered by tests/test_cli_*.py with port 0).
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[^\n]*\n(?P<code>.*?)^```", re.S | re.M)
TIMEOUT = 90.0


MARK = re.compile(r"<!--\s*mypy:\s*(skip|continue)\s*-->\s*$")
"""The markers of tests/test_docs_types.py, on the line before a fence: ``skip`` (an excerpt,
not run either) and ``continue`` (run after the blocks before it on the page)."""


def blocks(*langs: str) -> list[tuple[str, str]]:
    """``(page:line, code)`` of every fenced block in one of ``langs`` (a ``continue`` block
    with the blocks it continues in front of it)."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        story = ""
        for match in FENCE.finditer(text):
            if match["lang"] not in langs:
                continue
            before = text[: match.start()].rstrip("\n").rpartition("\n")[2]
            mark = MARK.search(before)
            if mark is not None and mark[1] == "skip":
                continue
            code = match["code"]
            story = story + code if mark is not None and mark[1] == "continue" else code
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{page.relative_to(ROOT)}:{line}", story))
    return found


PYTHON = blocks("python")
SHELL = blocks("bash", "sh", "shell")


def not_self_contained(code: str) -> str | None:
    """Why a shell block cannot run in a test, or None when it can."""
    if "nanomsg-kernel" not in code:
        return "does not call nanomsg-kernel"
    if re.search(r"\bpip install\b|\bvenv\b", code):
        return "installs the package"
    if re.search(r"nanomsg-kernel(\s+--?\S+)*\s+serve\s+(?!--check)", code):
        return "starts a node that serves until stopped"
    if re.search(r"nanomsg-kernel\s+call\s+\S+://", code):
        return "calls a node that must be running"
    return None


def environment(tmp_path: Path) -> dict[str, str]:
    """The source tree on PYTHONPATH, and ``python`` and ``nanomsg-kernel`` commands that run it
    with this interpreter (whatever is installed elsewhere on the machine)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    command = bin_dir / "nanomsg-kernel"
    command.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m nanomsg_kernel.app.cli "$@"\n')
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    for script in (command, python):
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    work = tmp_path / "work"
    work.mkdir()
    return {**os.environ, "PYTHONPATH": path, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_the_pages_have_blocks() -> None:
    """The fence pattern finds the blocks (so the tests below cannot pass on nothing)."""
    pages = {where.split(":")[0] for where, _ in PYTHON}
    assert {"README.md", "docs/transports.md", "docs/zeromq.md"} <= pages, pages
    assert any(not_self_contained(code) is None for _, code in SHELL)


@pytest.mark.parametrize(("where", "code"), PYTHON, ids=[w for w, _ in PYTHON])
def test_python_block_runs(where: str, code: str, tmp_path: Path) -> None:
    env = environment(tmp_path)
    script = tmp_path / "work" / "block.py"
    script.write_text(code, encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], cwd=script.parent, env=env, capture_output=True,
                         text=True, timeout=TIMEOUT, check=False)
    assert out.returncode == 0, f"{where}:\n{code}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"


RUNNABLE = [(w, c) for w, c in SHELL if not_self_contained(c) is None]


@pytest.mark.parametrize(("where", "code"), RUNNABLE, ids=[w for w, _ in RUNNABLE])
def test_shell_block_runs(where: str, code: str, tmp_path: Path) -> None:
    env = environment(tmp_path)
    work = tmp_path / "work"
    (work / "examples").symlink_to(ROOT / "examples")
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=work, env=env, capture_output=True,
                         text=True, timeout=TIMEOUT, check=False)
    assert out.returncode == 0, f"{where}:\n{code}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"


def test_the_generated_module_shown_is_the_generated_module() -> None:
    """schemas.md shows codegen's output for schemas/calc.toml: it is contracts/calc.py, unchanged."""
    shown = [code for where, code in PYTHON if where.startswith("docs/schemas.md") and "Generated by" in code]
    assert shown == [(ROOT / "contracts" / "calc.py").read_text(encoding="utf-8")]


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def test_relative_links_lead_to_files() -> None:
    """Every relative link of README.md and docs/ names a file of the repository (the docs
    build reports links to pages; links to examples/ and other files are checked here)."""
    broken = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        for match in LINK.finditer(text):
            target = match["target"].partition("#")[0]
            if not target or "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {match['target']}")
    assert not broken, broken
