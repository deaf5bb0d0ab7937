"""Contracts to JSON and back, for the command line (``call``, ``inspect``).

JSON has no enums, bytes, datetimes or UUIDs, so each field type has one JSON form:

==============  =====================================================================
field type      JSON
==============  =====================================================================
int, bool, str  the same
float           a number; ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` as strings
bytes           a string in base64 (or hex, with ``bytes_format="hex"``); a
                ``"hex:"`` or ``"base64:"`` prefix picks the format of one value
enum            the member's name (on input: the name or the value)
datetime        an ISO 8601 string with a UTC offset (``Z`` accepted)
uuid            the canonical string
record          an object keyed by field name
list, tuple     an array
dict            an object (int keys written as strings)
optional        ``null`` for ``None``
==============  =====================================================================

Errors are :class:`~nanomsg_kernel.errors.EncodeError` naming the contract and the path of
the field, e.g. ``CalcWork.op: expected one of SUM, DIFF, MULT, DIV (or their values), got 'POW'``.

Nesting is bounded by :data:`MAX_NESTING` both ways: JSON text nested deeper is refused
before it is parsed (no contract is that deep), and so is a kernel-less msgpack value
(:func:`plain_json`), so that hostile input gets an error, not a ``RecursionError``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import math
import re
import uuid
from typing import Any, Literal

from nanomsg_kernel.contract import contract_info
from nanomsg_kernel.errors import DecodeError, EncodeError
from nanomsg_kernel.types import INT_MAX, INT_MIN, TypeSpec

__all__ = ["MAX_NESTING", "BytesFormat", "from_json", "loads", "dumps", "nesting_depth", "to_json", "plain_json"]

BytesFormat = Literal["base64", "hex"]
MAX_NESTING = 64
"""Deepest nesting of arrays and objects (or msgpack arrays and maps) accepted."""
_STRING = re.compile(r'"[^"]*"')
_BRACKET = re.compile(r"[\[\]{}]")
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class _Bad(Exception):
    """A JSON value does not fit; ``path`` is where (``.field``, ``[3]``)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def within(self, segment: str) -> _Bad:
        self.path = segment + self.path
        return self


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    if isinstance(value, (list, dict)):
        text = "an array" if isinstance(value, list) else "an object"
    return text if len(text) <= 60 else text[:57] + "..."


# -- JSON -> Python ----------------------------------------------------------------------------


def _bytes_in(value: Any, fmt: BytesFormat) -> bytes:
    if not isinstance(value, str):
        raise _Bad(f"expected bytes as a {fmt} string, got {_shown(value)}")
    text = value
    if text.startswith("hex:"):
        fmt, text = "hex", text[4:]
    elif text.startswith("base64:"):
        fmt, text = "base64", text[7:]
    try:
        if fmt == "hex":
            return bytes.fromhex(text)
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise _Bad(f"expected bytes as a {fmt} string, got {_shown(value)} ({exc})") from None


def _enum_in(spec: TypeSpec, value: Any) -> Any:
    cls = spec.py
    if isinstance(value, str) and value in cls.__members__:
        return cls[value]
    if not isinstance(value, bool):
        for member in cls:
            if member.value == value and type(member.value) is type(value):
                return member
    names = ", ".join(cls.__members__)
    raise _Bad(f"expected one of {names} (or their values), got {_shown(value)}")


def _datetime_in(value: Any) -> _dt.datetime:
    if not isinstance(value, str):
        raise _Bad(f"expected an ISO 8601 datetime string, got {_shown(value)}")
    try:
        parsed = _dt.datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(f"expected an ISO 8601 datetime string, got {_shown(value)}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _Bad(f"expected a datetime with a UTC offset (e.g. ...Z or +00:00), got {_shown(value)}")
    return parsed


def _uuid_in(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise _Bad(f"expected a UUID string, got {_shown(value)}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _Bad(f"expected a UUID string, got {_shown(value)}") from None


def _int_in(value: Any) -> int:
    if type(value) is not int:
        raise _Bad(f"expected an integer, got {_shown(value)}")
    if not INT_MIN <= value <= INT_MAX:
        raise _Bad(f"expected a 64-bit signed integer, got {value}")
    return value


def _float_in(value: Any) -> float:
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if type(value) not in (int, float):
        raise _Bad(f"expected a number, got {_shown(value)}")
    return float(value)


def _record_in(cls: type, value: Any, fmt: BytesFormat) -> Any:
    info = contract_info(cls)
    if not isinstance(value, dict):
        raise _Bad(f"expected an object with the fields of {cls.__name__}, got {_shown(value)}")
    known = {f.name: f for f in info.fields}
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise _Bad(f"unknown field {unknown[0]!r} (fields: {', '.join(known)})", f".{unknown[0]}")
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        if name not in value:
            if f.required:
                raise _Bad("required field is missing", f".{name}")
            continue
        try:
            kwargs[name] = _value_in(f.spec, value[name], fmt)
        except _Bad as bad:
            raise bad.within(f".{name}") from None
    try:
        return cls(**kwargs)
    except Exception as exc:  # attrs validators and converters
        raise _Bad(f"{type(exc).__name__}: {exc}") from None


def _value_in(spec: TypeSpec, value: Any, fmt: BytesFormat) -> Any:
    kind = spec.kind
    if kind == "optional":
        return None if value is None else _value_in(spec.args[0], value, fmt)
    if kind == "int":
        return _int_in(value)
    if kind == "float":
        return _float_in(value)
    if kind == "bool":
        if type(value) is not bool:
            raise _Bad(f"expected true or false, got {_shown(value)}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise _Bad(f"expected a string, got {_shown(value)}")
        return value
    if kind == "bytes":
        return _bytes_in(value, fmt)
    if kind == "enum":
        return _enum_in(spec, value)
    if kind == "datetime":
        return _datetime_in(value)
    if kind == "uuid":
        return _uuid_in(value)
    if kind == "record":
        return _record_in(spec.py, value, fmt)
    if kind in ("list", "tuple"):
        return _sequence_in(spec, value, fmt)
    if kind == "dict":
        return _dict_in(spec, value, fmt)
    raise _Bad(f"unsupported field type {spec.describe()}")  # pragma: no cover - types.py is closed


def _sequence_in(spec: TypeSpec, value: Any, fmt: BytesFormat) -> Any:
    if not isinstance(value, list):
        raise _Bad(f"expected an array, got {_shown(value)}")
    fixed = spec.kind == "tuple" and spec.py is tuple
    if fixed and len(value) != len(spec.args):
        raise _Bad(f"expected an array of {len(spec.args)} items, got {len(value)}")
    items = []
    for i, item in enumerate(value):
        try:
            items.append(_value_in(spec.args[i] if fixed else spec.args[0], item, fmt))
        except _Bad as bad:
            raise bad.within(f"[{i}]") from None
    return items if spec.kind == "list" else tuple(items)


def _dict_in(spec: TypeSpec, value: Any, fmt: BytesFormat) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"expected an object, got {_shown(value)}")
    key_spec, value_spec = spec.args
    out: dict[Any, Any] = {}
    for key, item in value.items():
        k: Any = key
        if key_spec.kind == "int":
            try:
                k = _int_in(int(key))
            except (ValueError, _Bad):
                raise _Bad(f"expected an integer key, got {_shown(key)}") from None
        try:
            out[k] = _value_in(value_spec, item, fmt)
        except _Bad as bad:
            raise bad.within(f"[{key!r}]"[:60]) from None
    return out


def from_json(cls: type, value: Any, *, bytes_format: BytesFormat = "base64") -> Any:
    """Build a ``cls`` contract (or record) from parsed JSON (an object keyed by field name).

    Raises:
        EncodeError: ``value`` does not fit; the message names the field, e.g. ``CalcWork.op``.
    """
    try:
        return _record_in(cls, value, bytes_format)
    except _Bad as bad:
        raise EncodeError(f"{cls.__name__}{bad.path}: {bad.message}") from None


def nesting_depth(text: str, limit: int = MAX_NESTING) -> int:
    """How deeply the arrays and objects of JSON ``text`` nest, counted without parsing it;
    the count stops at ``limit + 1`` (enough to know it is too deep)."""
    depth = deepest = 0
    unescaped = text.replace("\\\\", "").replace('\\"', "")  # then no string holds a quote
    for bracket in _BRACKET.finditer(_STRING.sub("", unescaped)):
        if bracket.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def loads(cls: type, text: str | bytes, *, bytes_format: BytesFormat = "base64") -> Any:
    """Parse JSON text into a ``cls`` contract.

    Raises:
        EncodeError: the text is not valid JSON, nests deeper than :data:`MAX_NESTING`, or
            does not fit ``cls``.
    """
    try:
        if isinstance(text, bytes):
            text = text.decode(json.detect_encoding(text))
        too_deep = nesting_depth(text) > MAX_NESTING
        value = None if too_deep else json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EncodeError(f"{cls.__name__}: not valid JSON: {exc}") from None
    if too_deep:
        raise EncodeError(f"{cls.__name__}: JSON nested deeper than {MAX_NESTING} levels")
    return from_json(cls, value, bytes_format=bytes_format)


# -- Python -> JSON ----------------------------------------------------------------------------


def _float_out(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _bytes_out(value: bytes, fmt: BytesFormat) -> str:
    return value.hex() if fmt == "hex" else base64.b64encode(value).decode("ascii")


def _value_out(spec: TypeSpec, value: Any, fmt: BytesFormat) -> Any:
    kind = spec.kind
    if value is None:
        return None
    if kind == "optional":
        return _value_out(spec.args[0], value, fmt)
    if kind == "float":
        return _float_out(float(value))
    if kind == "bytes":
        return _bytes_out(bytes(value), fmt)
    if kind == "enum":
        return value.name
    if kind == "datetime":
        return value.isoformat()
    if kind == "uuid":
        return str(value)
    if kind == "record":
        return to_json(value, bytes_format=fmt)
    if kind in ("list", "tuple"):
        fixed = kind == "tuple" and spec.py is tuple
        return [_value_out(spec.args[i] if fixed else spec.args[0], x, fmt) for i, x in enumerate(value)]
    if kind == "dict":
        return {str(k): _value_out(spec.args[1], v, fmt) for k, v in value.items()}
    return value


def to_json(msg: Any, *, bytes_format: BytesFormat = "base64") -> dict[str, Any]:
    """A contract or record as a JSON-ready dict keyed by field name (see the module docs)."""
    info = contract_info(msg)
    return {f.name: _value_out(f.spec, getattr(msg, f.name), bytes_format) for f in info.fields}


def plain_json(value: Any, *, bytes_format: BytesFormat = "base64") -> Any:
    """Any msgpack value (as decoded without a kernel) made JSON-ready: bytes as strings, map
    keys as strings, timestamps as ISO 8601 and other values by ``repr``.

    Raises:
        DecodeError: arrays and maps nest deeper than :data:`MAX_NESTING`.
    """
    return _plain(value, bytes_format, 0)


def _plain(value: Any, fmt: BytesFormat, depth: int) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return _float_out(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes_out(bytes(value), fmt)
    if isinstance(value, (list, tuple, dict)) and depth >= MAX_NESTING:
        raise DecodeError(f"msgpack value nested deeper than {MAX_NESTING} levels")
    if isinstance(value, (list, tuple)):
        return [_plain(v, fmt, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, fmt, depth + 1) for k, v in value.items()}
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    return repr(value)


def dumps(msg: Any, *, bytes_format: BytesFormat = "base64", indent: int | None = 2) -> str:
    """A contract or record as JSON text."""
    return json.dumps(to_json(msg, bytes_format=bytes_format), indent=indent, ensure_ascii=False)
