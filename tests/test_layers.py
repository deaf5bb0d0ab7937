"""The package's layers, read from the source: who may import whom, and no import circles.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a lazy
import is still a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "nanomsg_kernel"
# The repository's folders and the import names they install as.
FOLDERS = {
    "nanomsg_kernel": PACKAGE,
    "transports": f"{PACKAGE}.transports",
    "codegen": f"{PACKAGE}.codegen",
    "contracts": f"{PACKAGE}.contracts",
}
KERNEL = {f"{PACKAGE}.{m}" for m in ("errors", "frame", "types", "layout", "contract", "routing", "scan", "walk", "body", "compiled",
                                     "native", "error_body", "codec", "metadata", "builtin")}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder, name in FOLDERS.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            if any(p.is_symlink() for p in path.relative_to(ROOT).parents if p != Path(".")):
                continue
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([name, *parts])] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """Every project module that ``module`` imports, anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")
                parent = parent if is_package else parent[:-1]
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    resolved = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module and name != PACKAGE:
            resolved.add(name)
    return resolved


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def layer(module: str) -> int:
    """0 kernel; 1 services, transports and codegen; 2 the example kernels; 3 the application."""
    if module in KERNEL:
        return 0
    if module.startswith(f"{PACKAGE}.contracts"):
        return 2
    if module.startswith(f"{PACKAGE}.app"):
        return 3
    return 1


def test_the_old_top_level_names_are_gone() -> None:
    assert all(m.startswith(PACKAGE) for m in MODULES)
    assert {f"{PACKAGE}.app.cli", f"{PACKAGE}.transports.base", f"{PACKAGE}.codegen.render"} <= MODULES.keys()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_layer_above_its_own(module: str) -> None:
    upward = sorted(m for m in GRAPH[module] if layer(m) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports {upward}"


def test_the_kernel_imports_only_the_kernel() -> None:
    for module in sorted(KERNEL):
        assert GRAPH[module] <= KERNEL, f"{module} imports {sorted(GRAPH[module] - KERNEL)}"


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles() -> None:
    assert _cycles() == []
