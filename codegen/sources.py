"""Where a schema comes from: a file, a file at a git revision, or a live kernel.

:func:`load_source` accepts, in this order:

* ``git:REV:path`` — the file ``path`` as it was at revision ``REV`` (read with
  ``git show REV:path`` in the current directory; ``path`` is from the repository's top,
  or ``./path`` from the current directory);
* a path to a schema file;
* ``package.module:RoutingEnum`` — a kernel written by hand (or generated), exported. The
  module is imported (its code runs) from ``sys.path``; ``app_dir`` adds one directory at the
  end of ``sys.path``, where it never hides the standard library or an installed package.

Schema files and ``git:`` sources are data: they are read as TOML and never executed.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

from nanomsg_kernel.codegen.export import export_kernel
from nanomsg_kernel.codegen.model import KernelSchema
from nanomsg_kernel.codegen.schema import SchemaError, load_path, load_text
from nanomsg_kernel.routing import RoutingEnum

__all__ = ["add_app_dir", "import_routes", "load_source", "read_git"]

_MODULE_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_GIT_TIMEOUT = 60.0


def read_git(rev: str, path: str, *, cwd: str | Path | None = None) -> str:
    """The text of ``path`` at git revision ``rev`` (``git show rev:path``).

    Raises:
        SchemaError: git is not installed, this is not a repository, or the revision or
            path does not exist there.
    """
    label = f"git:{rev}:{path}"
    if not rev or not path:
        raise SchemaError.one(label, "git", "write it as git:REV:path, e.g. git:HEAD~1:schemas/calc.toml")
    if rev.startswith("-"):
        raise SchemaError.one(label, "git", f"{rev!r} is not a revision")
    try:
        done = subprocess.run(
            ["git", "show", f"{rev}:{path}"],
            cwd=cwd,
            capture_output=True,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise SchemaError.one(label, "git", "git is not installed (needed to read git:REV:path)") from None
    except subprocess.TimeoutExpired:
        raise SchemaError.one(label, "git", f"git show did not finish in {_GIT_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SchemaError.one(label, "git", f"git show {rev}:{path} failed: {why[-1] if why else done.returncode}")
    try:
        return done.stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError.one(label, "git", f"not UTF-8 text: {exc.reason}") from None


def add_app_dir(app_dir: str | Path) -> str:
    """Append ``app_dir`` (made absolute) to ``sys.path`` unless it is already there.

    Appended, not prepended: a module there is found only when nothing earlier on the path
    (the standard library, installed packages) has the same name, so a file such as
    ``json.py`` in the directory cannot replace a module the program imports later.
    Returns the entry as added.
    """
    entry = os.path.abspath(app_dir)
    if entry not in sys.path:
        sys.path.append(entry)
    return entry


def import_routes(ref: str, *, app_dir: str | Path | None = None) -> type[RoutingEnum]:
    """Import ``package.module:RoutingEnum`` from ``sys.path`` (its module's code runs).

    Args:
        app_dir: a directory to also search, after everything on ``sys.path``
            (see :func:`add_app_dir`); ``None`` leaves ``sys.path`` alone.

    Raises:
        SchemaError: the module or attribute is missing, or is not a routing enum.
    """
    module_name, _, attr = ref.partition(":")
    if app_dir is not None:
        add_app_dir(app_dir)
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise SchemaError.one(ref, module_name, f"cannot import the module: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SchemaError.one(ref, attr, f"module {module_name} has no attribute {attr!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, RoutingEnum)):
        raise SchemaError.one(ref, attr, f"{attr} is not a RoutingEnum subclass")
    return obj


def load_source(spec: str, *, cwd: str | Path | None = None, app_dir: str | Path | None = None) -> KernelSchema:
    """The schema named by ``spec``: ``git:REV:path``, a schema file, or ``module:RoutingEnum``.

    Args:
        cwd: where relative paths and ``git`` are resolved (default: the current directory).
        app_dir: for ``module:RoutingEnum``, a directory searched after ``sys.path``
            (:func:`import_routes`); only then is ``sys.path`` changed.

    Raises:
        SchemaError: the source cannot be read, or its schema is invalid.
    """
    if spec.startswith("git:"):
        rev, sep, path = spec[4:].partition(":")
        if not sep:
            raise SchemaError.one(spec, "git", "write it as git:REV:path, e.g. git:HEAD~1:schemas/calc.toml")
        text = read_git(rev, path, cwd=cwd)
        return load_text(text, spec, Path(path).stem)
    file = Path(cwd or ".") / spec
    if file.is_file() or spec.endswith(".toml"):
        return load_path(file if cwd else spec)
    if _MODULE_REF.match(spec):
        routes = import_routes(spec, app_dir=app_dir)
        return export_kernel(routes, source=spec)
    raise SchemaError.one(spec, "source", "not a schema file, git:REV:path, nor module:RoutingEnum")
