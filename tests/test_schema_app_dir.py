"""Where the schema commands import a ``module:RoutingEnum`` from: sys.path, then --app-dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nanomsg_kernel.app.schema_cli import schema_group
from nanomsg_kernel.codegen.schema import SchemaError
from nanomsg_kernel.codegen.sources import load_source

ROOT = Path(__file__).resolve().parent.parent

KERNEL = """\
import colorsys  # a standard module: a file of that name next to this one must not replace it

from nanomsg_kernel import RoutingEnum, contract


class {route}(RoutingEnum):
    PING = 1


@contract({route}.PING)
class Ping:
    text: str = ""
"""

PLANTED = "from pathlib import Path\nPath(__file__).with_name('planted-ran').touch()\n"


def make_app(where: Path, module: str, route: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{module}.py").write_text(KERNEL.format(route=route))
    return where


@pytest.fixture
def isolated_path(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``sys.path`` as it was; the test may change it, it is restored after."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    return list(sys.path)


def test_export_appends_the_current_directory_instead_of_putting_it_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_path: list[str]
) -> None:
    make_app(tmp_path, "app_dir_probe_a", "ProbeA")
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(schema_group, ["export", "app_dir_probe_a:ProbeA"])
    assert done.exit_code == 0, done.output
    assert "[routes]" in done.output and 'name = "ProbeA"' in done.output
    assert sys.path == [*isolated_path, str(tmp_path)]


def test_a_module_in_the_current_directory_does_not_shadow_the_standard_library(tmp_path: Path) -> None:
    app = make_app(tmp_path / "work", "probekern", "ProbeRoute")
    (app / "colorsys.py").write_text(PLANTED)
    done = subprocess.run(
        [sys.executable, "-P", "-m", "nanomsg_kernel.app.cli", "schema", "export", "probekern:ProbeRoute"],
        cwd=app, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert 'name = "ProbeRoute"' in done.stdout
    assert not (app / "planted-ran").exists()


def test_app_dir_names_where_the_module_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_path: list[str]
) -> None:
    app = make_app(tmp_path / "app", "app_dir_probe_b", "ProbeB")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    runner = CliRunner()
    missing = runner.invoke(schema_group, ["jsonschema", "app_dir_probe_b:ProbeB"])
    assert missing.exit_code == 2 and "cannot import the module" in missing.output
    found = runner.invoke(schema_group, ["jsonschema", "--app-dir", str(app), "app_dir_probe_b:ProbeB"])
    assert found.exit_code == 0, found.output
    assert '"Ping"' in found.output
    same = runner.invoke(schema_group, ["diff", "--app-dir", "../app", "app_dir_probe_b:ProbeB", "app_dir_probe_b:ProbeB"])
    assert same.exit_code == 0 and "No changes." in same.output, same.output
    assert sys.path[: len(isolated_path)] == isolated_path and str(app) in sys.path[len(isolated_path):]


def test_the_library_leaves_sys_path_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_path: list[str]
) -> None:
    make_app(tmp_path, "app_dir_probe_c", "ProbeC")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SchemaError, match="cannot import the module"):
        load_source("app_dir_probe_c:ProbeC")
    assert sys.path == isolated_path
    assert load_source("app_dir_probe_c:ProbeC", app_dir=".").routing == "ProbeC"
    assert sys.path == [*isolated_path, str(tmp_path)]
