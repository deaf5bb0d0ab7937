"""Parse and render the type expressions of schema files.

Grammar (whitespace is free)::

    type  := NAME | NAME "[" type ("," type)* ["," "..."] "]"

``NAME`` is a scalar (``int float bool str bytes datetime uuid``), a container
(``optional[X]``, ``list[X]``, ``tuple[X, Y, ...]``, ``tuple[X, ...]``, ``dict[K, V]`` with
``K`` ``str`` or ``int``), or the name of one of the kernel's enums or records.
"""

from __future__ import annotations

import re

from nanomsg_kernel.codegen.model import SCALAR_KINDS, TypeRef
from nanomsg_kernel.codegen.pysource import identifier

__all__ = ["TypeExprError", "parse_type", "python_annotation"]

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<ellipsis>\.\.\.)|(?P<punct>[\[\],]))")


class TypeExprError(ValueError):
    """A type expression is malformed; the message says where."""


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise TypeExprError(f"unexpected {text[pos:].strip()[:20]!r} in type {text!r}")
        out.append(m.group(m.lastgroup or "name"))
        pos = m.end()
    return out


def parse_type(text: str) -> TypeRef:
    """Parse a schema type expression into a :class:`TypeRef`.

    Raises:
        TypeExprError: the expression is malformed or uses a container wrongly.
    """
    if not isinstance(text, str) or not text.strip():
        raise TypeExprError("a type must be a non-empty string such as \"int\" or \"list[str]\"")
    toks = _tokens(text)
    ref, pos = _parse(toks, 0, text)
    if pos != len(toks):
        raise TypeExprError(f"unexpected {toks[pos]!r} after {ref.describe()} in type {text!r}")
    return ref


def _parse(toks: list[str], pos: int, text: str) -> tuple[TypeRef, int]:
    if pos >= len(toks) or not (toks[pos][0].isalpha() or toks[pos][0] == "_"):
        got = toks[pos] if pos < len(toks) else "end"
        raise TypeExprError(f"expected a type name, got {got!r} in type {text!r}")
    name = toks[pos]
    pos += 1
    if pos >= len(toks) or toks[pos] != "[":
        if name in ("optional", "list", "tuple", "dict"):
            raise TypeExprError(f"{name} needs element types, e.g. {name}[int] in type {text!r}")
        if name in SCALAR_KINDS:
            return TypeRef(name), pos
        return TypeRef("named", name=name), pos
    if name not in ("optional", "list", "tuple", "dict"):
        raise TypeExprError(f"{name} takes no type arguments in type {text!r}")
    pos += 1
    args: list[TypeRef] = []
    variadic = False
    while True:
        if pos < len(toks) and toks[pos] == "...":
            if name != "tuple" or len(args) != 1:
                raise TypeExprError(f"'...' is only allowed as tuple[X, ...] in type {text!r}")
            variadic = True
            pos += 1
        else:
            arg, pos = _parse(toks, pos, text)
            args.append(arg)
        if pos >= len(toks):
            raise TypeExprError(f"missing ']' in type {text!r}")
        if toks[pos] == "]":
            pos += 1
            break
        if toks[pos] != "," or variadic:
            raise TypeExprError(f"expected ',' or ']', got {toks[pos]!r} in type {text!r}")
        pos += 1
    want = {"optional": 1, "list": 1, "dict": 2}.get(name)
    if want is not None and len(args) != want:
        raise TypeExprError(f"{name} takes {want} type argument{'s' if want > 1 else ''} in type {text!r}")
    if name == "optional" and args[0].kind == "optional":
        raise TypeExprError(f"optional[optional[...]] is the same as optional[...]; write that in type {text!r}")
    if name == "dict" and args[0].kind not in ("str", "int"):
        raise TypeExprError(f"dict keys must be str or int, not {args[0].describe()} in type {text!r}")
    return TypeRef(name, tuple(args), variadic=variadic), pos


_PY_SCALARS = {
    "int": "int",
    "float": "float",
    "bool": "bool",
    "str": "str",
    "bytes": "bytes",
    "datetime": "datetime.datetime",
    "uuid": "uuid.UUID",
}


def python_annotation(ref: TypeRef) -> str:
    """The annotation a person writes for ``ref``, e.g. ``tuple[float, float] | None``.

    Raises:
        ValueError: a name is not an identifier or a kind is unknown (nothing else is written).
    """
    if ref.kind == "named":
        return identifier(ref.name)
    if ref.kind in _PY_SCALARS:
        return _PY_SCALARS[ref.kind]
    if ref.kind == "optional" and len(ref.args) == 1:
        return f"{python_annotation(ref.args[0])} | None"
    if ref.kind == "tuple" and ref.variadic and len(ref.args) == 1:
        return f"tuple[{python_annotation(ref.args[0])}, ...]"
    if ref.kind in ("list", "tuple", "dict") and ref.args:
        return f"{ref.kind}[{', '.join(python_annotation(a) for a in ref.args)}]"
    raise ValueError(f"{ref.kind!r} with {len(ref.args)} type arguments is not a field type")
