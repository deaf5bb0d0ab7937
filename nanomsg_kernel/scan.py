"""Reading msgpack's structure without decoding it: object counts and value extents.

The codec decodes a body with msgpack's C unpacker, which allocates a Python object for
every msgpack object: a one-byte empty map becomes a dict of 64 bytes or more. Before it
lets a body that could hold more objects than its budget reach the unpacker, the codec walks
the body here, allocating nothing per object:

* :func:`count_objects` — refuse a body that holds more objects than a budget;
* :func:`skip` — the end of the one msgpack object at a position, counting the objects it
  holds against a budget (:class:`~nanomsg_kernel.errors.TooManyObjects` past it);
* :func:`entries` — the key and value extents of a map of field tags (a contract's body),
  refusing keys that are not integers (``True``, ``1.0``) and repeated keys; it skips the
  values with msgpack's own unpacker, decoding none.

Both read only what is there: every length is checked against the bytes present.
"""

from __future__ import annotations

from typing import Any

import msgpack

from nanomsg_kernel.errors import DecodeError, TooManyObjects
from nanomsg_kernel.types import Mismatch

__all__ = ["Counter", "count_objects", "entries", "msgpack_reason", "skip"]

# Size in bytes of each msgpack object that has a fixed size, by its first byte (0: not fixed).
_FIXED = [0] * 256
for _b in range(0x00, 0x80):
    _FIXED[_b] = 1  # positive fixint
for _b in range(0xE0, 0x100):
    _FIXED[_b] = 1  # negative fixint
for _b in range(0xA0, 0xC0):
    _FIXED[_b] = 1 + (_b & 0x1F)  # fixstr
for _b, _n in {0xC0: 1, 0xC2: 1, 0xC3: 1, 0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9,
               0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9, 0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10, 0xD8: 18}.items():
    _FIXED[_b] = _n
# Variable-size objects: (bytes of the length field, extra bytes after it) by first byte.
_SIZED = {0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0), 0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),
          0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1)}
# Containers: (bytes of the count field, objects per counted item) by first byte.
_COUNTED = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}
for _b in range(0x80, 0x90):
    _COUNTED[_b] = (0, 2)  # fixmap
for _b in range(0x90, 0xA0):
    _COUNTED[_b] = (0, 1)  # fixarray
_FIXED_T = tuple(_FIXED)


def msgpack_reason(exc: Exception) -> str:
    """What msgpack's exception says, or what it means where it says nothing."""
    text = str(exc)
    if text:
        return text
    if isinstance(exc, msgpack.StackError):
        return "nested too deeply"
    if isinstance(exc, msgpack.FormatError):
        return "invalid msgpack (reserved or unknown type byte)"
    return type(exc).__name__


class Counter:
    """Objects counted so far in one body, against its budget."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        self.count = 0
        self.limit = limit


def _truncated() -> DecodeError:
    return DecodeError("malformed msgpack body: truncated")


def skip(buf: Any, pos: int, end: int, counter: Counter) -> int:
    """The position just past the msgpack object at ``pos`` in ``buf[:end]``.

    Counts the object and every object inside it in ``counter``.

    Raises:
        TooManyObjects: the count passes ``counter.limit``.
        DecodeError: the bytes end inside the object, or hold a byte no msgpack object
            starts with.
    """
    fixed = _FIXED_T
    pending = 1
    count = counter.count
    limit = counter.limit
    while pending:
        if pos >= end:
            raise _truncated()
        b = buf[pos]
        pending -= 1
        count += 1
        size = fixed[b]
        if size:
            pos += size
            continue
        counted = _COUNTED.get(b)
        if counted is not None:
            width, per = counted
            n = int.from_bytes(buf[pos + 1:pos + 1 + width], "big") if width else b & 0x0F
            pos += 1 + width
            pending += n * per
            if pending > end - pos:  # every object takes at least one byte
                raise _truncated()
            if count + pending > limit:
                counter.count = count
                raise TooManyObjects(limit)
            continue
        sized = _SIZED.get(b)
        if sized is None:
            raise DecodeError(f"malformed msgpack body: reserved type byte 0x{b:02x}")
        width, extra = sized
        pos += 1 + width + extra + int.from_bytes(buf[pos + 1:pos + 1 + width], "big")
    if pos > end:
        raise _truncated()
    if count > limit:
        raise TooManyObjects(limit)
    counter.count = count
    return pos


def entries(
    buf: Any, walkers: dict[int, tuple[str, Any]] | None = None, walked: dict[int, Any] | None = None
) -> list[tuple[int, int, int]]:
    """``(tag, start, end)`` of each entry of the map of field tags that is all of ``buf``.

    msgpack's own unpacker reads the keys and skips the values (no value is decoded), except
    for the tags in ``walkers`` (tag -> (field name, :data:`~nanomsg_kernel.walk.Walker`)):
    those values are read by their walker, into ``walked``. Count the objects first
    (:func:`skip`) when the body may hold more than its budget.

    Raises:
        DecodeError: ``buf`` is not one map, a key is not an integer, a key repeats, or the
            bytes are malformed.
        Mismatch: a walker refused a map inside a value (its path starts with the field).
    """
    if not buf or not (0x80 <= buf[0] <= 0x8F or buf[0] in (0xDE, 0xDF)):
        try:
            msgpack.unpackb(buf, strict_map_key=False, timestamp=3)
        except Exception as exc:
            raise DecodeError(f"malformed msgpack body: {msgpack_reason(exc)}") from None
        raise DecodeError("body is not a map")
    unpacker = msgpack.Unpacker(None, strict_map_key=False, timestamp=3, max_buffer_size=len(buf))
    unpacker.feed(buf)
    try:
        n = unpacker.read_map_header()
    except msgpack.OutOfData:
        raise _truncated() from None
    out: list[tuple[int, int, int]] = []
    seen: set[int] = set()
    try:
        for _ in range(n):
            tag = unpacker.unpack()
            if type(tag) is not int:
                raise DecodeError(f"map key {_shown(tag)} is not a field tag")
            if tag in seen:
                raise DecodeError(f"map key {tag} repeats")
            seen.add(tag)
            start = unpacker.tell()
            walking = walkers.get(tag) if walkers else None
            if walking is None:
                unpacker.skip()
            else:
                try:
                    walked[tag] = walking[1](unpacker, buf)  # type: ignore[index]
                except Mismatch as m:
                    raise m.within(f".{walking[0]}") from None
            out.append((tag, start, unpacker.tell()))
    except msgpack.OutOfData:
        raise _truncated() from None
    except (DecodeError, Mismatch):
        raise
    except Exception as exc:
        raise DecodeError(f"malformed msgpack body: {msgpack_reason(exc)}") from None
    left = len(buf) - unpacker.tell()
    if left:
        raise DecodeError(f"malformed msgpack body: {left} bytes after the map")
    return out


def _shown(key: Any) -> str:
    if isinstance(key, (bool, float, int)) or key is None:
        return repr(key)
    return f"of type {type(key).__name__}"


def count_objects(body: Any, limit: int) -> None:
    """Raise :class:`TooManyObjects` when ``body`` holds more than ``limit`` msgpack objects
    (and :class:`DecodeError` when it is not well-formed msgpack), without decoding it."""
    if len(body) > limit:
        view = memoryview(body)
        end = skip(view, 0, len(view), Counter(limit))
        if end != len(view):
            raise DecodeError(f"malformed msgpack body: {len(view) - end} bytes after the first object")
