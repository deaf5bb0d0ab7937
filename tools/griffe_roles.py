"""Sphinx cross-reference roles in docstrings, rendered as links in the API reference.

The docstrings name other objects the Sphinx way (``:class:`~nanomsg_kernel.client.Client```,
``:meth:`Service.start_frame```). mkdocstrings renders Markdown, so this griffe extension
(loaded by ``mkdocs.yml``) rewrites each role into a mkdocs-autorefs link before rendering:
``[`Client`][nanomsg_kernel.client.Client]``. A short name is looked up the way Sphinx does:
in the object's class, then its module, then as a full path; a re-export
(``nanomsg_kernel.Client``) links to where the object is defined. A name outside the
package (``asyncio.Task``) stays code without a link. A package name that resolves to
nothing is left as a link, so ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const):`(?P<tilde>~?)(?P<target>[^`]+)`")
PACKAGE = "nanomsg_kernel"


def _lookup(path: str, loader: griffe.GriffeLoader) -> str | None:
    """The path where ``path`` is defined, following re-exports; None when it is unknown."""
    try:
        found = loader.modules_collection[path]
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    if isinstance(found, griffe.Alias):
        try:
            return str(found.final_target.path)
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    return str(found.path)


def _resolve(target: str, obj: griffe.Object, loader: griffe.GriffeLoader) -> str | None:
    """The full path of ``target`` as seen from ``obj`` (its class, its module, then global)."""
    target = target.lstrip(".")
    scopes = []
    if isinstance(obj, griffe.Class):
        scopes.append(obj.path)
    if obj.parent is not None and isinstance(obj.parent, griffe.Class):
        scopes.append(obj.parent.path)
    scopes.append(obj.module.path)
    for scope in scopes:
        found = _lookup(f"{scope}.{target}", loader)
        if found is not None:
            return found
    return _lookup(target, loader)


def convert(text: str, obj: griffe.Object, loader: griffe.GriffeLoader) -> str:
    """``text`` with every Sphinx role turned into an autorefs link (or plain code)."""

    def link(match: re.Match[str]) -> str:
        target = match["target"].strip()
        title = None
        if target.endswith(">") and " <" in target:  # :class:`title <target>`
            title, _, target = target[:-1].partition(" <")
        shown = title or (target.rsplit(".", 1)[-1] if match["tilde"] else target.lstrip("."))
        path = _resolve(target, obj, loader)
        if path is None:
            if target.startswith(PACKAGE):
                return f"[`{shown}`][{target}]"  # unknown: autorefs reports it, --strict fails
            return f"`{shown}`"
        return f"[`{shown}`][{path}]"

    return ROLE.sub(link, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the Sphinx roles of every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Walk the package once it is fully loaded (so every name can be resolved)."""
        seen: set[str] = set()
        todo: list[griffe.Object] = [pkg]
        while todo:
            obj = todo.pop()
            if obj.path in seen:
                continue
            seen.add(obj.path)
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value, obj, loader)
            todo.extend(m for m in obj.members.values() if not isinstance(m, griffe.Alias))
