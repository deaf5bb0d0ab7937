"""The built wheel installs one import package, and an application with its own ``transports``,
``contracts`` and ``codegen`` packages uses it over tcp:// and zmq+tcp:// from a plain install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (found,) = out.glob("nanomsg_kernel-*.whl")
    return found


def test_the_wheel_holds_only_the_nanomsg_kernel_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"nanomsg_kernel"}
    for expected in (
        "nanomsg_kernel/py.typed",
        "nanomsg_kernel/app/cli.py",
        "nanomsg_kernel/transports/base.py",
        "nanomsg_kernel/codegen/render.py",
        "nanomsg_kernel/contracts/calc.py",
    ):
        assert expected in names
    # The compiled codec is built into it (gcc and the Python headers are here).
    assert [n for n in names if n.startswith("nanomsg_kernel/_speedups.") and n.endswith(".so")]
    # The source tree's symlinks are not packaged twice.
    assert not [n for n in names if n.startswith(("transports/", "codegen/", "contracts/"))]


def test_without_a_compiler_the_wheel_has_the_pure_codec_and_says_so_once(tmp_path: Path) -> None:
    out, tree = tmp_path / "wheel", tmp_path / "tree"  # a clean tree: no earlier build to reuse
    shutil.copytree(ROOT, tree, symlinks=True, ignore=shutil.ignore_patterns(
        "build", "*.so", ".ci-venv*", ".git", ".hypothesis", "*.egg-info", "__pycache__", ".*_cache", "site"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(tree)],
        check=True, timeout=300, capture_output=True, text=True,
        env={**os.environ, "CC": "/bin/false", "LDSHARED": "/bin/false"},
    )
    (found,) = out.glob("nanomsg_kernel-*.whl")
    names = zipfile.ZipFile(found).namelist()
    assert not [n for n in names if n.endswith(".so")]
    assert "nanomsg_kernel/compiled.py" in names
    said = (proc.stdout + proc.stderr).count("compiled codec was not built")
    assert said == 1


APP = """
import asyncio
import sys

import codegen
import contracts
import transports

import nanomsg_kernel
from nanomsg_kernel import Client
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType
from nanomsg_kernel.contracts.services import calc


async def main() -> None:
    assert (transports.MINE, contracts.MINE, codegen.MINE) == ("transports", "contracts", "codegen")
    for url in ("tcp://127.0.0.1:0", "zmq+tcp://127.0.0.1:0"):
        async with calc.serve(url) as listener, Client(CalcRoute, listener.url, timeout=10) as client:
            reply = await client.call(CalcWork(a=6, b=7, op=WorkType.MULT))
            print(url.split(":")[0], reply.result)
    print(nanomsg_kernel.__file__)


asyncio.run(main())
"""


def test_an_app_with_its_own_transports_contracts_and_codegen_packages(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    app = tmp_path / "app"
    for name in ("transports", "contracts", "codegen"):
        (app / name).mkdir(parents=True)
        (app / name / "__init__.py").write_text(f"MINE = {name!r}\n")
    (app / "main.py").write_text(textwrap.dedent(APP))
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "main.py"], cwd=app, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["tcp 42", "zmq+tcp 42"]
    assert Path(lines[2]).is_relative_to(site), "the app imported the source tree, not the installed wheel"
