"""Where the command line finds the user's code: ``module:attribute`` references and the app directory.

``serve``, ``call`` and ``inspect`` name code as ``module:attribute`` (``shop:calc``,
``shop.kernel:ShopRoute``). Like uvicorn's ``--app-dir``, the command puts one directory
first on :data:`sys.path` before importing (:func:`use_app_dir`): the current directory
unless told otherwise, so ``nanomsg-kernel serve shop.toml`` beside ``shop.py`` works with
no ``PYTHONPATH``. Importing runs the module's code: a reference is trusted like a Python
file one runs (see ``docs/security.md``).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from nanomsg_kernel.errors import ConfigError

__all__ = ["import_ref", "use_app_dir"]

_app_dirs: list[str] = []
"""The app directories put on ``sys.path`` by this process, the latest first."""


def use_app_dir(path: str | os.PathLike[str]) -> str:
    """Put the directory ``path`` first on ``sys.path`` (once); its absolute path.

    Raises:
        ConfigError: ``path`` is not a directory.
    """
    full = os.path.abspath(path)
    if not os.path.isdir(full):
        raise ConfigError(f"app directory {os.fspath(path)!r} is not a directory")
    if not sys.path or sys.path[0] != full:
        sys.path.insert(0, full)
    if full in _app_dirs:
        _app_dirs.remove(full)
    _app_dirs.insert(0, full)
    return full


def _hint(module_name: str, exc: Exception) -> str:
    """Where a module that is not found was looked for."""
    if not isinstance(exc, ModuleNotFoundError) or exc.name != module_name.split(".")[0] or not _app_dirs:
        return ""
    return f" (looked for in the app directory {_app_dirs[0]} and the installed packages)"


def import_ref(ref: Any) -> Any:
    """The object at ``"module:attribute"`` (the attribute may be dotted).

    Raises:
        ConfigError: the reference is malformed, the module cannot be imported (the error it
            raised is named) or has no such attribute.
    """
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        raise ConfigError(f"expected 'module:attribute', got {ref!r}")
    module_name, attr = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}{_hint(module_name, exc)}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj
