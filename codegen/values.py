"""Field defaults: read from schema files, checked against the field type, written as Python.

In a schema file a default is a TOML value: ``0``, ``1.5``, ``true``, ``"EUR"``, an enum
member's name (``"SUM"``), a hex string for ``bytes`` (``""``, ``"00ff"``), an array for a
tuple, ``[]`` for a list and ``{}`` for a dict (each object gets its own empty container);
``default_none = true`` makes an ``optional[...]`` field default to ``None``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from nanomsg_kernel.codegen.model import EMPTY_DICT, EMPTY_LIST, REQUIRED, KernelSchema, TypeRef
from nanomsg_kernel.codegen.pysource import identifier

__all__ = ["check_default", "default_from_toml", "default_to_toml", "py_bytes", "py_str", "python_default"]

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1


def _kind_of(ref: TypeRef, kernel: KernelSchema) -> str:
    if ref.kind == "named":
        if kernel.enum(ref.name) is not None:
            return "enum"
        return "record"
    return ref.kind


def default_from_toml(raw: Any, ref: TypeRef, kernel: KernelSchema) -> Any:
    """The model value of the TOML default ``raw`` for a field of type ``ref``.

    Raises:
        ValueError: ``raw`` does not fit the type; the message says what would.
    """
    kind = _kind_of(ref, kernel)
    if kind == "optional":
        return default_from_toml(raw, ref.args[0], kernel)
    if kind == "float" and type(raw) is int:
        raw = float(raw)
    if kind == "bytes":
        if type(raw) is not str:
            raise ValueError("a bytes default is a hex string, e.g. \"\" or \"00ff\"")
        try:
            return bytes.fromhex(raw)
        except ValueError:
            raise ValueError(f"a bytes default is a hex string; {raw!r} is not hex") from None
    if kind == "list":
        if raw != [] or type(raw) is not list:
            raise ValueError("a list default can only be [] (every object gets its own empty list)")
        return EMPTY_LIST
    if kind == "dict":
        if raw != {} or type(raw) is not dict:
            raise ValueError("a dict default can only be {} (every object gets its own empty dict)")
        return EMPTY_DICT
    if kind == "tuple":
        if type(raw) is not list:
            raise ValueError(f"a {ref.describe()} default is an array, e.g. []")
        items = ref.args * len(raw) if ref.variadic else ref.args
        if len(items) != len(raw):
            raise ValueError(f"a {ref.describe()} default needs {len(ref.args)} items, got {len(raw)}")
        return tuple(default_from_toml(x, t, kernel) for x, t in zip(raw, items, strict=True))
    value = raw
    check_default(value, ref, kernel)
    return value


def check_default(value: Any, ref: TypeRef, kernel: KernelSchema) -> None:
    """Check a model default against its field type.

    Raises:
        ValueError: it does not fit; the message says what would.
    """
    if value is REQUIRED:
        return
    kind = _kind_of(ref, kernel)
    if kind == "optional":
        if value is not None:
            check_default(value, ref.args[0], kernel)
        return
    if value is None:
        raise ValueError(f"only optional[...] fields can default to none; this one is {ref.describe()}")
    expect: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str, "bytes": bytes}
    if kind in expect:
        if type(value) is not expect[kind]:
            raise ValueError(f"default {_show(value)} is not {'an' if kind == 'int' else 'a'} {kind}")
        if type(value) is int and not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"default {value} does not fit a 64-bit signed int")
        if type(value) is float and math.isnan(value):
            raise ValueError("a float default cannot be nan (it never equals itself)")
        return
    if kind == "enum":
        e = kernel.enum(ref.name)
        assert e is not None
        names = [n for n, _ in e.members]
        if type(value) is not str or value not in names:
            raise ValueError(f"default {_show(value)} is not a member of {e.name} ({', '.join(names)})")
        return
    if kind == "list":
        if value is not EMPTY_LIST:
            raise ValueError("a list default can only be [] (every object gets its own empty list)")
        return
    if kind == "dict":
        if value is not EMPTY_DICT:
            raise ValueError("a dict default can only be {} (every object gets its own empty dict)")
        return
    if kind == "tuple":
        if type(value) is not tuple:
            raise ValueError(f"a {ref.describe()} default is an array")
        items = ref.args * len(value) if ref.variadic else ref.args
        if len(items) != len(value):
            raise ValueError(f"a {ref.describe()} default needs {len(ref.args)} items, got {len(value)}")
        for x, t in zip(value, items, strict=True):
            check_default(x, t, kernel)
        return
    raise ValueError(f"a {ref.describe()} field can have no default (make it optional[...] to default to none)")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def default_to_toml(value: Any, ref: TypeRef, kernel: KernelSchema) -> Any:
    """The TOML value written for a model default (``None`` is written as ``default_none``)."""
    if value is EMPTY_LIST:
        return []
    if value is EMPTY_DICT:
        return {}
    if type(value) is bytes:
        return value.hex()
    if type(value) is tuple:
        kind = _kind_of(ref, kernel)
        inner = ref.args[0] if kind == "optional" else ref
        items = inner.args * len(value) if inner.variadic else inner.args
        return [default_to_toml(x, t, kernel) for x, t in zip(value, items, strict=True)]
    return value


_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def _quoted(text: str, body: str, prefix: str = "") -> str:
    """Re-quote a ``repr`` body the way a formatter does: double quotes, unless the text holds
    more double than single quotes."""
    if body.startswith("'") or body.startswith(prefix + "'"):
        inner = body[len(prefix) + 1 : -1]
        inner = _ESCAPED.sub(lambda m: m.group(1) if m.group(1) == "'" else m.group(0), inner)
    else:
        inner = body[len(prefix) + 1 : -1]
    quote = "'" if text.count('"') > text.count("'") else '"'
    escaped = re.sub(r"(\\.)|" + quote, lambda m: m.group(1) or "\\" + quote, inner)
    return f"{prefix}{quote}{escaped}{quote}"


def py_str(s: str) -> str:
    """A string literal the way a formatter writes it."""
    return _quoted(s, repr(s))


def py_bytes(b: bytes) -> str:
    """A bytes literal the way a formatter writes it."""
    return _quoted(b.decode("latin-1"), repr(b), "b")


def python_default(value: Any, ref: TypeRef, kernel: KernelSchema) -> str:
    """The Python expression for a default value (not for the factory markers).

    Values are written from their ``repr``; an enum default is ``Enum.MEMBER``.

    Raises:
        ValueError: the value is not of a type a default can have, or names no member.
    """
    if value is None:
        return "None"
    kind = _kind_of(ref, kernel)
    if kind == "optional":
        return python_default(value, ref.args[0], kernel)
    if kind == "enum":
        e = kernel.enum(ref.name)
        if e is None or type(value) is not str or value not in dict(e.members):
            raise ValueError(f"default {_show(value)} is not a member of {ref.name}")
        return f"{identifier(ref.name)}.{identifier(value)}"
    if kind == "tuple" and type(value) is tuple:
        items = ref.args * len(value) if ref.variadic else ref.args
        parts = [python_default(x, t, kernel) for x, t in zip(value, items, strict=True)]
        if len(parts) == 1:
            return f"({parts[0]},)"
        return f"({', '.join(parts)})"
    if type(value) is str:
        return py_str(value)
    if type(value) is bytes:
        return py_bytes(value)
    if type(value) is float:
        if math.isinf(value):
            return "float(\"inf\")" if value > 0 else "float(\"-inf\")"
        return repr(value).replace("e+", "e")
    if type(value) in (int, bool):
        return repr(value)
    raise ValueError(f"default {_show(value)} of type {type(value).__name__} cannot be written as Python")
