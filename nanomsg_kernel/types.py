"""Supported field types, and the checked conversion to and from msgpack values.

:func:`resolve` turns a field annotation into a :class:`TypeSpec`, or raises
:class:`TypeError` naming what is not supported. A spec gives an ``encode`` function (a
Python value to a msgpack-ready value, checked) and a ``decode`` function (a value read by
msgpack back to the Python value, checked: the bytes are never trusted). Both raise
:class:`Mismatch`, which carries the path inside the value; the contract layer adds the
contract and field name in front.

Wire forms: ``int`` is a signed 64-bit msgpack int, ``float`` a float64 (ints are accepted
on decode), ``bool``, ``str`` (UTF-8), ``bytes`` (bin), enums by value, timezone-aware
``datetime`` as the msgpack timestamp extension (-1), ``uuid.UUID`` as 16 bytes of bin,
``list``/``tuple`` as arrays, ``dict`` as maps, records as maps keyed by field tag.
"""

from __future__ import annotations

import datetime as _dt
import enum
import types as _pytypes
import typing
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["INT_MAX", "INT_MIN", "Mismatch", "Raw", "TypeSpec", "resolve"]

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

Converter = Callable[[Any], Any]


class Raw:
    """One msgpack value kept as the exact bytes received (a field this version does not
    know): written back unchanged on re-encode, never decoded."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return type(other) is Raw and other.data == self.data

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        shown = self.data[:40].hex()
        return f"Raw({shown}{'...' if len(self.data) > 40 else ''})"


class Mismatch(Exception):
    """A value does not fit its declared type; ``path`` is the location inside the field."""

    def __init__(self, expected: str, got: Any, path: str = "", detail: str | None = None) -> None:
        super().__init__(expected, got, path)
        self.expected = expected
        self.got = got
        self.path = path
        self.detail = detail

    def describe(self) -> str:
        """Render as ``expected X, got Y`` (the caller puts the location in front)."""
        if self.detail is not None:
            return self.detail
        got = self.got
        shown = type(got).__name__ if not isinstance(got, (int, float, str)) or isinstance(got, bool) else f"{type(got).__name__} {got!r}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return f"expected {self.expected}, got {shown}"

    def within(self, segment: str) -> Mismatch:
        """Prefix the path with ``segment`` (an index or key) and return self."""
        self.path = segment + self.path
        return self


class TypeSpec:
    """A resolved field type: what it is, how to check, encode and decode it."""

    __slots__ = ("args", "decode", "encode", "kind", "py", "trivial")

    def __init__(
        self,
        kind: str,
        py: Any,
        encode: Converter,
        decode: Converter,
        args: tuple[TypeSpec, ...] = (),
        trivial: bool = False,
    ) -> None:
        self.kind = kind
        """One of int, float, bool, str, bytes, datetime, uuid, enum, record, optional, list,
        tuple, dict."""
        self.py = py
        """The Python type (the enum or record class for those kinds)."""
        self.encode = encode
        self.decode = decode
        self.args = args
        """Element specs: (inner,) for optional/list/homogeneous tuple, (key, value) for dict,
        one per position for a fixed tuple."""
        self.trivial = trivial
        """True when the msgpack value is the Python value itself (int, float, bool, str, bytes)."""

    def describe(self) -> str:
        """The type as written in a schema, e.g. ``list[int]``, ``optional[Point]``."""
        if self.kind in ("enum", "record"):
            return str(self.py.__name__)
        if self.kind == "optional":
            return f"optional[{self.args[0].describe()}]"
        if self.kind == "tuple" and self.py is Ellipsis:
            return f"tuple[{self.args[0].describe()}, ...]"
        if self.args:
            return f"{self.kind}[{', '.join(a.describe() for a in self.args)}]"
        return self.kind

    def __repr__(self) -> str:
        return f"TypeSpec({self.describe()})"


# -- scalars ---------------------------------------------------------------------------


def _int(v: Any) -> int:
    if type(v) is int and INT_MIN <= v <= INT_MAX:
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        if INT_MIN <= v <= INT_MAX:
            return int(v)
        raise Mismatch("int (64-bit signed)", v)
    raise Mismatch("int", v)


def _float_enc(v: Any) -> float:
    if type(v) is float:
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        try:
            return float(v)
        except OverflowError:
            raise Mismatch("float (an int too large for a float64)", v) from None
    raise Mismatch("float", v)


def _bool(v: Any) -> bool:
    if v is True or v is False:
        return bool(v)
    raise Mismatch("bool", v)


def _str(v: Any) -> str:
    if type(v) is str:
        return v
    if isinstance(v, str):
        return str.__str__(v)
    raise Mismatch("str", v)


def _bytes_enc(v: Any) -> bytes:
    if type(v) is bytes:
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    raise Mismatch("bytes", v)


def _bytes_dec(v: Any) -> bytes:
    if type(v) is bytes:
        return v
    raise Mismatch("bytes", v)


def _datetime(v: Any) -> _dt.datetime:
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None or v.utcoffset() is None:
            raise Mismatch("timezone-aware datetime", v)
        return v
    raise Mismatch("datetime", v)


def _uuid_enc(v: Any) -> bytes:
    if isinstance(v, uuid.UUID):
        return v.bytes
    raise Mismatch("UUID", v)


def _uuid_dec(v: Any) -> uuid.UUID:
    if type(v) is bytes and len(v) == 16:
        return uuid.UUID(bytes=v)
    raise Mismatch("UUID (16 bytes)", v)


_SCALARS: dict[Any, TypeSpec] = {
    int: TypeSpec("int", int, _int, _int, trivial=True),
    float: TypeSpec("float", float, _float_enc, _float_enc, trivial=True),
    bool: TypeSpec("bool", bool, _bool, _bool, trivial=True),
    str: TypeSpec("str", str, _str, _str, trivial=True),
    bytes: TypeSpec("bytes", bytes, _bytes_enc, _bytes_dec, trivial=True),
    _dt.datetime: TypeSpec("datetime", _dt.datetime, _datetime, _datetime),
    uuid.UUID: TypeSpec("uuid", uuid.UUID, _uuid_enc, _uuid_dec),
}


# -- composites ------------------------------------------------------------------------


def _enum_spec(cls: type[enum.Enum]) -> TypeSpec:
    values = [m.value for m in cls]
    if not values:
        raise TypeError(f"enum {cls.__name__} has no members")
    if not all(type(x) is int for x in values) and not all(type(x) is str for x in values):
        raise TypeError(f"enum {cls.__name__} must have all-int or all-str values")
    name = cls.__name__
    if issubclass(cls, enum.Flag):
        return _flag_spec(cls)
    by_value = {m.value: m for m in cls}

    def enc(v: Any) -> Any:
        if isinstance(v, cls):
            return v.value
        raise Mismatch(name, v)

    def dec(v: Any) -> Any:
        try:
            return by_value[v]
        except (KeyError, TypeError):
            raise Mismatch(f"a value of {name}", v) from None

    return TypeSpec("enum", cls, enc, dec)


def _flag_spec(cls: type[enum.Flag]) -> TypeSpec:
    """A flag enum: any combination of its members, as the int of their bits (a value with
    a bit no member has is refused both ways, so what encodes decodes)."""
    bits = 0
    for m in cls:
        bits |= m.value
    if bits < 0 or bits > INT_MAX:
        raise TypeError(f"flag enum {cls.__name__} has values outside 0 to 2**63-1")
    name = cls.__name__

    def enc(v: Any) -> Any:
        if isinstance(v, cls) and type(v.value) is int and v.value & ~bits == 0 and v.value >= 0:
            return v.value
        raise Mismatch(f"{name} (a combination of its members)", v)

    def dec(v: Any) -> Any:
        if type(v) is int and v >= 0 and v & ~bits == 0:
            return cls(v)
        raise Mismatch(f"a combination of {name}'s members", v)

    return TypeSpec("enum", cls, enc, dec)


def _record_spec(cls: type) -> TypeSpec:
    info = cls.__nk_info__  # type: ignore[attr-defined]
    name = cls.__name__
    to_map = info.to_map
    from_map = info.from_map

    def enc(v: Any) -> Any:
        if isinstance(v, cls):
            try:
                return to_map(v)
            except Exception as exc:  # EncodeError from the record's own fields
                raise _nested(name, exc) from None
        raise Mismatch(name, v)

    def dec(v: Any) -> Any:
        if type(v) is not dict:
            raise Mismatch(f"{name} (a map)", v)
        try:
            return from_map(v)
        except Exception as exc:  # DecodeError from the record's fields, or its validators
            raise _nested(name, exc) from None

    return TypeSpec("record", cls, enc, dec)


def _nested(name: str, exc: Exception) -> Mismatch:
    """Turn a nested record's error into a Mismatch whose path continues the outer one."""
    path = getattr(exc, "path", None)
    detail = getattr(exc, "detail", None)
    if path is None or detail is None:
        return Mismatch(name, None, "", f"{type(exc).__name__}: {exc}")
    return Mismatch(name, None, path, detail)


def _optional_spec(inner: TypeSpec) -> TypeSpec:
    ie, idec = inner.encode, inner.decode

    def enc(v: Any) -> Any:
        return None if v is None else ie(v)

    def dec(v: Any) -> Any:
        return None if v is None else idec(v)

    return TypeSpec("optional", None, enc, dec, (inner,))


def _seq_spec(kind: str, inner: TypeSpec, out: Callable[[Any], Any]) -> TypeSpec:
    ie, idec = inner.encode, inner.decode

    def enc(v: Any) -> Any:
        if not isinstance(v, (list, tuple)):
            raise Mismatch(kind, v)
        try:
            return [ie(x) for x in v]
        except Mismatch as m:
            raise m.within(f"[{_find_bad(v, ie)}]") from None

    def dec(v: Any) -> Any:
        if type(v) is not list:
            raise Mismatch(f"{kind} (an array)", v)
        try:
            return out([idec(x) for x in v])
        except Mismatch as m:
            raise m.within(f"[{_find_bad(v, idec)}]") from None

    return TypeSpec(kind, Ellipsis if kind == "tuple" else list, enc, dec, (inner,))


def _fixed_tuple_spec(items: tuple[TypeSpec, ...]) -> TypeSpec:
    n = len(items)
    encs = [i.encode for i in items]
    decs = [i.decode for i in items]

    def run(v: Any, fns: list[Converter]) -> tuple[Any, ...]:
        out = []
        for i, (x, f) in enumerate(zip(v, fns, strict=True)):
            try:
                out.append(f(x))
            except Mismatch as m:
                raise m.within(f"[{i}]") from None
        return tuple(out)

    def enc(v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) != n:
            raise Mismatch(f"tuple of {n} items", v)
        return list(run(v, encs))

    def dec(v: Any) -> Any:
        if type(v) is not list or len(v) != n:
            raise Mismatch(f"array of {n} items", v)
        return run(v, decs)

    return TypeSpec("tuple", tuple, enc, dec, items)


def _find_bad(items: Any, fn: Converter) -> int:
    for i, x in enumerate(items):
        try:
            fn(x)
        except Mismatch:
            return i
    return -1


def _dict_spec(key: TypeSpec, value: TypeSpec) -> TypeSpec:
    ke, kd, ve, vd = key.encode, key.decode, value.encode, value.decode

    def run(v: Any, kf: Converter, vf: Converter) -> dict[Any, Any]:
        out = {}
        for k, x in v.items():
            try:
                k2 = kf(k)
            except Mismatch as m:
                raise m.within(f"<key {k!r}>"[:60]) from None
            try:
                out[k2] = vf(x)
            except Mismatch as m:
                raise m.within(f"[{k!r}]"[:60]) from None
        return out

    def enc(v: Any) -> Any:
        if not isinstance(v, dict):
            raise Mismatch("dict", v)
        return run(v, ke, ve)

    def dec(v: Any) -> Any:
        if type(v) is not dict:
            raise Mismatch("dict (a map)", v)
        return run(v, kd, vd)

    return TypeSpec("dict", dict, enc, dec, (key, value))


def resolve(annotation: Any) -> TypeSpec:
    """Resolve a (fully evaluated) annotation into a :class:`TypeSpec`.

    Raises:
        TypeError: the type is not supported; the message says which part.
    """
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return _enum_spec(annotation)
        if hasattr(annotation, "__nk_info__"):
            if annotation.__nk_info__.route is not None:
                raise TypeError(
                    f"{annotation.__name__} is a routed contract; nest records made with @record"
                )
            return _record_spec(annotation)
        if annotation in (list, tuple, dict):
            raise TypeError(f"bare {annotation.__name__} needs element types, e.g. list[int]")
        raise TypeError(f"unsupported type {annotation.__name__}")
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is _pytypes.UnionType:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return _optional_spec(resolve(rest[0]))
        raise TypeError(f"unsupported union {annotation}: only Optional[X] / X | None")
    if origin is typing.Annotated:
        return resolve(args[0])
    if origin is list and len(args) == 1:
        return _seq_spec("list", resolve(args[0]), list)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _seq_spec("tuple", resolve(args[0]), tuple)
        if args and Ellipsis not in args:
            return _fixed_tuple_spec(tuple(resolve(a) for a in args))
    if origin is dict and len(args) == 2:
        key = resolve(args[0])
        if key.kind not in ("str", "int"):
            raise TypeError(f"dict keys must be str or int, not {key.describe()}")
        return _dict_spec(key, resolve(args[1]))
    raise TypeError(f"unsupported type {annotation!r}")
