"""Per-class encode and decode functions, generated once when a class is defined.

For each contract or record the kernel writes two small Python functions as source text
and compiles them (the way attrs generates ``__init__``): ``to_map(obj) -> dict`` builds the
msgpack map keyed by field tag, ``from_map(dict) -> obj`` checks every value and builds the
object. Scalars, optional scalars and enums are checked inline (``type(v) is int``); other
types call their :class:`~nanomsg_kernel.types.TypeSpec` converter. When a class has no
validators or converters, ``from_map`` fills the slots directly instead of calling the
frozen ``__init__`` (which pays for ``object.__setattr__`` on every field). The generated
source is kept on the layout (``Layout.source``) and shows in tracebacks.
"""

from __future__ import annotations

import linecache
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from nanomsg_kernel.errors import DecodeError, EncodeError
from nanomsg_kernel.types import INT_MAX, INT_MIN, Mismatch, TypeSpec

if TYPE_CHECKING:
    from nanomsg_kernel.contract import FieldInfo

__all__ = ["UNKNOWN_SLOT", "Layout", "build_layout"]

UNKNOWN_SLOT = "_nk_unknown"
"""Slot holding fields a decoder did not know (tag -> raw msgpack value), kept for re-encode."""

_FAST = {
    "int": f"type({{v}}) is int and {INT_MIN} <= {{v}} <= {INT_MAX}",
    "float": "type({v}) is float",
    "bool": "type({v}) is bool",
    "str": "type({v}) is str",
    "bytes": "type({v}) is bytes",
}


class Layout:
    """The generated functions for one class."""

    __slots__ = ("from_map", "source", "to_map")

    def __init__(
        self,
        to_map: Callable[[Any], dict[int, Any]],
        from_map: Callable[[dict[Any, Any]], Any],
        source: str,
    ) -> None:
        self.to_map = to_map
        self.from_map = from_map
        self.source = source


def _fast_check(spec: TypeSpec, var: str) -> str | None:
    """An inline test, True when ``var`` is already right as it is (None: always convert)."""
    if spec.kind in _FAST:
        return _FAST[spec.kind].format(v=var)
    if spec.kind == "optional" and spec.args[0].kind in _FAST:
        return f"{var} is None or ({_FAST[spec.args[0].kind].format(v=var)})"
    return None


def _located(cls_name: str, field: str, m: Mismatch, error: type[Exception]) -> Exception:
    """``error("Cls.field[path]: detail")``, with ``path`` and ``detail`` kept as attributes
    so that an enclosing record can continue the path."""
    exc = error(f"{cls_name}.{field}{m.path}: {m.describe()}")
    exc.path = f".{field}{m.path}"  # type: ignore[attr-defined]
    exc.detail = m.describe()  # type: ignore[attr-defined]
    return exc


def _missing(cls_name: str, field: str, tag: int) -> DecodeError:
    return _located(cls_name, field, Mismatch("", None, "", f"missing required field (tag {tag})"), DecodeError)  # type: ignore[return-value]


def _plain_construction(cls: type, fields: tuple[FieldInfo, ...]) -> bool:
    """True when building an object needs none of attrs' ``__init__`` logic."""
    if hasattr(cls, "__attrs_post_init__") or hasattr(cls, "__attrs_pre_init__"):
        return False
    fs = attrs.fields(cls)
    if any(a.validator is not None or a.converter is not None for a in fs):
        return False
    return [a.name for a in fs] == [f.name for f in fields]


def _slot_setter(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name].__set__
    raise TypeError(f"{cls.__name__}.{name}: no slot")  # pragma: no cover - attrs makes slots


def _encode_lines(i: int, f: FieldInfo, ns: dict[str, Any]) -> list[str]:
    v = f"v{i}"
    ns[f"_enc{i}"] = f.spec.encode
    out = [f"    {v} = o.{f.name}"]
    fail = [
        "        except _Mismatch as e:",
        f"            raise _located(_name, {f.name!r}, e, _EncodeError) from None",
    ]
    if f.spec.kind == "enum":
        ns[f"_type{i}"] = f.spec.py
        out += [f"    if type({v}) is _type{i}:", f"        {v} = {v}._value_", "    else:"]
    else:
        fast = _fast_check(f.spec, v)
        out.append(f"    if not ({fast}):" if fast else "    if True:")
    return [*out, "        try:", f"            {v} = _enc{i}({v})", *fail]


def _decode_lines(i: int, f: FieldInfo, ns: dict[str, Any]) -> list[str]:
    v = f"v{i}"
    ns[f"_dec{i}"] = f.spec.decode
    out = [f"    {v} = m.get({f.tag}, _MISSING)", f"    if {v} is _MISSING:"]
    if f.default is attrs.NOTHING:
        out.append(f"        raise _missing(_name, {f.name!r}, {f.tag})")
    elif isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
        if f.default.takes_self:
            raise TypeError(f"{f.name}: Factory(takes_self=True) is not supported")
        ns[f"_factory{i}"] = f.default.factory
        out.append(f"        {v} = _factory{i}()")
    else:
        ns[f"_default{i}"] = f.default
        out.append(f"        {v} = _default{i}")
    out += ["    else:", "        n += 1"]
    if f.spec.kind == "enum":
        by_value = {m.value: m for m in f.spec.py}
        ns[f"_byvalue{i}"] = by_value
        ns[f"_vtype{i}"] = type(next(iter(by_value)))
        out += [
            f"        if type({v}) is _vtype{i} and {v} in _byvalue{i}:",
            f"            {v} = _byvalue{i}[{v}]",
            "        else:",
        ]
    else:
        fast = _fast_check(f.spec, v)
        out.append(f"        if not ({fast}):" if fast else "        if True:")
    return [
        *out,
        "            try:",
        f"                {v} = _dec{i}({v})",
        "            except _Mismatch as e:",
        f"                raise _located(_name, {f.name!r}, e, _DecodeError) from None",
    ]


def build_layout(cls: type, fields: tuple[FieldInfo, ...]) -> Layout:
    """Generate and compile ``to_map`` and ``from_map`` for ``cls``."""
    name = cls.__name__
    seen_unknown = [False]
    ns: dict[str, Any] = {
        "_cls": cls,
        "_Mismatch": Mismatch,
        "_located": _located,
        "_missing": _missing,
        "_EncodeError": EncodeError,
        "_DecodeError": DecodeError,
        "_MISSING": _MISSING,
        "_name": name,
        "_getattr": getattr,
        "_SLOT": UNKNOWN_SLOT,
        "_seen_unknown": seen_unknown,
        "_new": object.__new__,
        "_set_unknown": _slot_setter(cls, UNKNOWN_SLOT),
    }

    known = frozenset(f.tag for f in fields)

    def keep_unknown(obj: Any, m: dict[Any, Any]) -> None:
        extra = {}
        for k, x in m.items():
            if k in known:
                continue
            if type(k) is not int or not 0 <= k <= 0xFFFF_FFFF:
                raise DecodeError(f"{name}: map key {k!r:.40} is not a field tag")
            extra[k] = x
        seen_unknown[0] = True
        ns["_set_unknown"](obj, extra)

    ns["_keep_unknown"] = keep_unknown
    enc = ["def to_map(o):"]
    dec = ["def from_map(m):", "    n = 0"]
    for i, f in enumerate(fields):
        enc += _encode_lines(i, f, ns)
        dec += _decode_lines(i, f, ns)
    pairs = ", ".join(f"{f.tag}: v{i}" for i, f in enumerate(fields))
    enc += [
        f"    d = {{{pairs}}}",
        "    if _seen_unknown[0]:",
        "        u = _getattr(o, _SLOT, None)",
        "        if u:",
        "            for k, x in u.items():",
        "                d.setdefault(k, x)",
        "    return d",
    ]
    if _plain_construction(cls, fields):
        dec.append("    obj = _new(_cls)")
        for i, f in enumerate(fields):
            ns[f"_set{i}"] = _slot_setter(cls, f.name)
            dec.append(f"    _set{i}(obj, v{i})")
    else:
        args = [f"v{i}" for i, f in enumerate(fields) if not f.kw_only]
        args += [f"{f.name}=v{i}" for i, f in enumerate(fields) if f.kw_only]
        dec.append(f"    obj = _cls({', '.join(args)})")
    dec += ["    if len(m) != n:", "        _keep_unknown(obj, m)", "    return obj"]
    source = "\n".join(enc) + "\n\n\n" + "\n".join(dec) + "\n"
    filename = f"<nanomsg_kernel layout {cls.__module__}.{cls.__qualname__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), ns)  # noqa: S102 - our own generated source
    return Layout(ns["to_map"], ns["from_map"], source)


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


_MISSING = _Missing()
