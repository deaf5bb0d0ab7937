"""The maps inside a body, read under the guidance of the field types.

msgpack's unpacker makes a dict of every map it reads: a repeated key keeps the last value,
and a nested record's fields this version does not know come back decoded (a float32 as a
float64, a nanosecond timestamp cut to microseconds). A field whose type holds a map
anywhere (a record or a dict, also inside an optional, a list or a tuple) is therefore read
by a *walker* made here once per type: it steps through the value with msgpack's unpacker,

* refuses a map key that repeats, and a record's key that is not an integer tag
  (``True`` and ``1.0`` are not tag 1), as the body's own map does;
* keeps a record's unknown fields as :class:`~nanomsg_kernel.types.Raw`, the exact bytes
  received, so that a relay writes them back unchanged;
* leaves every value that holds no map to msgpack, read whole.

A walker returns what msgpack would have returned (except for ``Raw`` values and refused
keys); the field's own decoder then checks it as usual. Anything that is not the map or
array the type expects is read whole and left to that decoder to refuse. Refusals raise
:class:`~nanomsg_kernel.types.Mismatch` located inside the field; msgpack's own errors pass
through for the caller to report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from nanomsg_kernel.types import Mismatch, Raw, TypeSpec

__all__ = ["Walker", "holds_maps", "walker"]

Walker = Callable[[msgpack.Unpacker, Any], Any]
"""``walk(unpacker, buf)``: read the next value of ``unpacker``, fed with ``buf``."""

_MAPS = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
_ARRAYS = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])


def holds_maps(spec: TypeSpec) -> bool:
    """True when values of ``spec`` hold a msgpack map (a record or a dict), anywhere."""
    return spec.kind in ("dict", "record") or any(holds_maps(a) for a in spec.args)


def _shown(key: Any) -> str:
    if isinstance(key, (bool, float, int)) or key is None:
        return repr(key)[:40]
    return f"of type {type(key).__name__}"


def _next_byte(unpacker: msgpack.Unpacker, buf: Any) -> int:
    pos = unpacker.tell()
    return int(buf[pos]) if pos < len(buf) else -1


def walker(spec: TypeSpec) -> Walker | None:
    """The walker of values of ``spec``; ``None`` when they hold no map (msgpack reads them whole)."""
    if not holds_maps(spec):
        return None
    kind = spec.kind
    if kind == "record":
        return _record_walker(spec)
    if kind == "dict":
        return _dict_walker(spec)
    if kind == "optional":
        inner = walker(spec.args[0])
        assert inner is not None

        def walk_optional(u: msgpack.Unpacker, buf: Any) -> Any:
            if _next_byte(u, buf) == 0xC0:
                return u.unpack()
            return inner(u, buf)

        return walk_optional
    if kind in ("list", "tuple"):
        items = [walker(a) for a in spec.args]
        if spec.py is tuple:  # a fixed tuple: one type per position
            return _array_walker(lambda i: items[i] if i < len(items) else None)
        only = items[0]
        return _array_walker(lambda i: only)
    raise TypeError(f"no walker for {spec.describe()}")  # pragma: no cover - holds_maps lists the kinds


def _array_walker(item: Callable[[int], Walker | None]) -> Walker:
    def walk_array(u: msgpack.Unpacker, buf: Any) -> Any:
        if _next_byte(u, buf) not in _ARRAYS:
            return u.unpack()
        out = []
        for i in range(u.read_array_header()):
            w = item(i)
            if w is None:
                out.append(u.unpack())
                continue
            try:
                out.append(w(u, buf))
            except Mismatch as m:
                raise m.within(f"[{i}]") from None
        return out

    return walk_array


def _record_walker(spec: TypeSpec) -> Walker:
    fields: dict[int, tuple[str, Walker | None]] = {}

    def walk_record(u: msgpack.Unpacker, buf: Any) -> Any:
        if not fields:  # filled on first use: the record's own walkers are made by then
            for f in spec.py.__nk_info__.fields:
                fields[f.tag] = (f.name, walker(f.spec))
        if _next_byte(u, buf) not in _MAPS:
            return u.unpack()
        out: dict[int, Any] = {}
        for _ in range(u.read_map_header()):
            key = u.unpack()
            if type(key) is not int:
                raise Mismatch("", None, "", f"map key {_shown(key)} is not a field tag")
            if key in out:
                raise Mismatch("", None, "", f"map key {key} repeats")
            known = fields.get(key)
            if known is None:
                start = u.tell()
                u.skip()
                out[key] = Raw(bytes(buf[start:u.tell()]))
                continue
            name, w = known
            if w is None:
                out[key] = u.unpack()
                continue
            try:
                out[key] = w(u, buf)
            except Mismatch as m:
                raise m.within(f".{name}") from None
        return out

    return walk_record


def _dict_walker(spec: TypeSpec) -> Walker:
    key_spec, value_spec = spec.args
    key_decode = key_spec.decode
    value = walker(value_spec)

    def walk_dict(u: msgpack.Unpacker, buf: Any) -> Any:
        if _next_byte(u, buf) not in _MAPS:
            return u.unpack()
        out: dict[Any, Any] = {}
        for _ in range(u.read_map_header()):
            key = u.unpack()
            if type(key) is not str and type(key) is not int:
                try:
                    key_decode(key)  # the key's own refusal, as the dict's decoder gives it
                except Mismatch as m:
                    raise m.within(f"<key {key!r}>"[:60]) from None
                raise Mismatch(key_spec.describe(), key).within(f"<key {key!r}>"[:60])
            if key in out:
                raise Mismatch("", None, "", f"map key {key!r:.40} repeats")
            if value is None:
                out[key] = u.unpack()
                continue
            try:
                out[key] = value(u, buf)
            except Mismatch as m:
                raise m.within(f"[{key!r}]"[:60]) from None
        return out

    return walk_dict
