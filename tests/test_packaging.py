"""Packaging: every runtime import is a declared dependency, and hypothesis stays optional.

The package must import without its extras: hypothesis lives in the ``testing`` extra and
only :mod:`nanomsg_kernel.testing` uses it, saying how to install it when it is missing.
The dependency check reads every import of the installed package's sources with ``ast`` and
compares the distributions they come from with ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["nanomsg_kernel", "transports", "codegen", "contracts"]
"""The folders whose modules are installed (``transports`` is ``nanomsg_kernel.transports`` ...)."""

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
FIRST_PARTY = {"nanomsg_kernel"}


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _source_files() -> list[Path]:
    files: list[Path] = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            # nanomsg_kernel/transports (etc.) are symlinks to the top-level folders: read those once
            if folder == "nanomsg_kernel" and path.relative_to(ROOT / folder).parts[0] in SOURCES:
                continue
            files.append(path)
    return files


def _optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """True when ``node`` does not run on import of its module: in a function, or in a ``try``
    whose handlers catch ImportError."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.FunctionDef | ast.AsyncFunctionDef):
            return True
        if isinstance(parent, ast.Try) and child in parent.body:
            for handler in parent.handlers:
                names = [handler.type] if not isinstance(handler.type, ast.Tuple) else handler.type.elts
                if any(isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError"} for n in names):
                    return True
        child, parent = parent, parents.get(parent)
    return False


def third_party_imports() -> dict[str, dict[str, bool]]:
    """Top-level module name -> {file: every import of it there is optional} (see ``_optional``)."""
    found: dict[str, dict[str, bool]] = {}
    for path in _source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.partition(".")[0]
                if top in sys.stdlib_module_names or top in FIRST_PARTY or top == "__future__":
                    continue
                where = str(path.relative_to(ROOT))
                found.setdefault(top, {})[where] = found.get(top, {}).get(where, True) and _optional(node, parents)
    return found


def test_every_third_party_import_is_a_declared_dependency() -> None:
    distributions = importlib.metadata.packages_distributions()
    required = _names(PYPROJECT["project"]["dependencies"])
    extras = {name: _names(reqs) for name, reqs in PYPROJECT["project"]["optional-dependencies"].items()}
    problems = []
    for module, files in sorted(third_party_imports().items()):
        dists = {canonicalize_name(d) for d in distributions.get(module, [])}
        assert dists, f"{module} (imported by {sorted(files)}) is not installed: cannot tell its distribution"
        if dists & required:
            continue
        unguarded = sorted(f for f, optional in files.items() if not optional)
        in_extras = sorted(name for name, reqs in extras.items() if dists & reqs)
        if unguarded:
            problems.append(f"{module} ({'/'.join(sorted(dists))}) is imported by {unguarded} but not in dependencies")
        elif not in_extras:
            problems.append(f"{module} ({'/'.join(sorted(dists))}) is an optional import of {sorted(files)} in no extra")
    assert not problems, "\n".join(problems)


def test_the_check_sees_the_known_imports() -> None:
    """The ast walk finds what the package is known to use (a check that cannot pass empty)."""
    imports = third_party_imports()
    for module in ("attrs", "msgpack", "construct", "zmq", "click"):
        assert module in imports, module
    assert imports["hypothesis"] == {"nanomsg_kernel/testing.py": True}
    assert all(imports["uvloop"].values()), imports["uvloop"]


def test_hypothesis_is_an_extra_and_the_test_extra_includes_it() -> None:
    project = PYPROJECT["project"]
    assert "hypothesis" not in _names(project["dependencies"])
    assert "hypothesis" in _names(project["optional-dependencies"]["testing"])
    assert "nanomsg-kernel[testing]" in project["optional-dependencies"]["test"]


BLOCKER = textwrap.dedent(
    """
    import importlib.abc, pkgutil, sys

    BLOCKED = {"hypothesis", "uvloop", "opentelemetry"}  # the optional dependencies (extras testing, uvloop, otel)

    class NoExtras(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    def fail(name):
        raise SystemExit(f"cannot import {name}")

    sys.meta_path.insert(0, NoExtras())
    import nanomsg_kernel
    imported = []
    for info in pkgutil.walk_packages(nanomsg_kernel.__path__, "nanomsg_kernel.", onerror=fail):
        if info.name not in ("nanomsg_kernel.testing", "nanomsg_kernel.otel"):
            __import__(info.name)
            imported.append(info.name)
    print(len(imported), " ".join(sorted(imported)))
    try:
        import nanomsg_kernel.testing
    except ImportError as exc:
        print("testing:", exc)
    try:
        import nanomsg_kernel.otel
    except ImportError as exc:
        print("otel:", exc)
    assert not any(m.partition(".")[0] in BLOCKED for m in sys.modules)
    from nanomsg_kernel.transports.loop import loop_factory, uvloop_available
    loop = loop_factory(prefer_uvloop=True)()
    assert not uvloop_available() and type(loop).__module__.startswith("asyncio"), type(loop)
    loop.close()
    """
)


def test_the_package_imports_without_its_extras() -> None:
    """Every module but ``testing`` and ``otel`` imports with hypothesis, uvloop and
    opentelemetry blocked; ``testing`` and ``otel`` say which extra they need."""
    out = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    count_line, testing_line, otel_line = out.stdout.splitlines()[-3:]
    count, names = count_line.split(" ", 1)
    assert int(count) > 40, count_line
    for module in ("nanomsg_kernel.app.cli", "nanomsg_kernel.transports.zmq", "nanomsg_kernel.codegen",
                   "nanomsg_kernel.contracts.calc"):
        assert module in names.split(), module
    assert testing_line.startswith("testing: ")
    assert "pip install 'nanomsg-kernel[testing]'" in testing_line
    assert otel_line.startswith("otel: ") and "pip install 'nanomsg-kernel[otel]'" in otel_line
