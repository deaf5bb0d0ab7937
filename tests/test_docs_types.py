"""Every Python block of README.md and docs/ type-checks under ``mypy --strict``, and so do
the typing checks of the public calls in ``tests/typing/``.

Each fenced block tagged ``python`` is written to a module of its own and checked as it
stands: a block must carry its imports and put ``await`` inside an ``async def``. Two
markers, an HTML comment on the line just before the fence, change that:

* ``<!-- mypy: skip -->`` — the block is not checked (an excerpt, e.g. of generated code
  with ``...`` in it); say why in the text around it.
* ``<!-- mypy: continue -->`` — the block is checked after the blocks before it on the
  same page, from the last one without this marker (one example told in several pieces).

One ``mypy`` run checks every block (its cache lives in the system's temporary directory,
so a second run takes seconds); each block is then a test of its own, failing with its
errors.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TYPING = Path(__file__).resolve().parent / "typing"
_FENCE = re.compile(r"^```(?:python|py)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_MARK = re.compile(r"<!--\s*mypy:\s*(skip|continue)\s*-->\s*$")
_ERROR = re.compile(r"^(?P<file>[^:\n]+\.py):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*)$", re.M)
_CONFIG = """\
[mypy]
strict = True
python_version = 3.11
warn_unreachable = False
[mypy-construct.*,msgpack.*,zmq.*,uvloop.*]
ignore_missing_imports = True
"""


class Block:
    """One Python block of a page, as mypy checks it."""

    def __init__(self, page: Path, index: int, line: int, source: str, mark: str | None, prelude: str) -> None:
        self.page = page
        self.index = index
        self.line = line
        """The page's line of the block's first line of code."""
        self.source = source
        self.mark = mark
        self.prelude = prelude
        """The code of the earlier blocks this one continues (``<!-- mypy: continue -->``)."""

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def module(self) -> str:
        stem = re.sub(r"\W", "_", str(self.page.relative_to(ROOT).with_suffix("")))
        return f"doc_{stem}_{self.index}"

    def text(self) -> str:
        return self.prelude + self.source


def pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(page: Path) -> Iterator[Block]:
    """The Python blocks of ``page``, with their markers."""
    text = page.read_text(encoding="utf-8")
    chain = ""
    for index, match in enumerate(_FENCE.finditer(text)):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        found = _MARK.search(before)
        mark = found.group(1) if found else None
        line = text.count("\n", 0, match.start(1)) + 1
        if mark != "continue":
            chain = ""
        block = Block(page, index, line, match.group(1), mark, chain)
        if mark != "skip":
            chain = block.text() + "\n"
        yield block


ALL = [b for page in pages() for b in blocks(page)]
CHECKED = [b for b in ALL if b.mark != "skip"]
TYPING_FILES = sorted(TYPING.glob("*.py"))


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """One mypy run over every checked block and every file of tests/typing/: file -> errors."""
    where = tmp_path_factory.mktemp("doc_blocks")
    files: list[str] = []
    for block in CHECKED:
        path = where / f"{block.module}.py"
        path.write_text(block.text(), encoding="utf-8")
        files.append(str(path))
    files += [str(p) for p in TYPING_FILES]
    config = where / "mypy.ini"
    config.write_text(_CONFIG, encoding="utf-8")
    cache = Path(tempfile.gettempdir()) / f"nanomsg-kernel-doc-types-{os.getuid()}"
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(cache),
         "--no-error-summary", "--show-error-codes", "--hide-error-context", *files],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    if done.returncode not in (0, 1) or done.stderr.strip():
        pytest.fail(f"mypy did not run (exit {done.returncode}):\n{done.stderr}{done.stdout}")
    found: dict[str, list[str]] = {}
    for m in _ERROR.finditer(done.stdout):
        found.setdefault(Path(m["file"]).name, []).append(f"{m['line']}: {m['kind']}: {m['text']}")
    return found


def test_the_pages_have_python_blocks() -> None:
    assert len(CHECKED) >= 5
    assert {b.page.name for b in CHECKED} >= {"README.md", "transports.md"}


def test_markers_are_read(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\na = 1\n```\n\n<!-- mypy: continue -->\n```python\nb = a\n```\n\n"
        "<!-- mypy: skip -->\n```python\n...\n```\n\n```py\nc = 3\n```\n",
        encoding="utf-8",
    )
    found = list(blocks(page))
    assert [b.mark for b in found] == [None, "continue", "skip", None]
    assert found[1].text() == "a = 1\n\nb = a\n"
    assert found[3].text() == "c = 3\n" and found[3].line == 16


@pytest.mark.parametrize("block", CHECKED, ids=[b.id for b in CHECKED])
def test_block_type_checks(block: Block, mypy_errors: dict[str, list[str]]) -> None:
    errors = [e for e in mypy_errors.get(f"{block.module}.py", []) if ": error: " in e]
    shift = block.line - 1 - block.prelude.count("\n")
    shown = [f"{block.page.name}:{int(e.split(':', 1)[0]) + shift}:{e.split(':', 1)[1]}" for e in errors]
    assert not shown, "mypy --strict:\n" + "\n".join(shown)


@pytest.mark.parametrize("path", TYPING_FILES, ids=[p.name for p in TYPING_FILES])
def test_typing_checks(path: Path, mypy_errors: dict[str, list[str]]) -> None:
    errors = [e for e in mypy_errors.get(path.name, []) if ": error: " in e]
    assert not errors, f"mypy --strict {path.name}:\n" + "\n".join(errors)
