"""A contract's body, read and written: the codec's per-contract entry and its two paths.

:func:`read_body` turns a body into the contract object. The common path: the body's map
holds exactly the contract's fields (its first byte says how many), the body is no longer
than the object budget (so it cannot hold more objects), msgpack parses it whole, and the
generated ``from_body`` takes the keys in the encoder's order, each the tag itself (``True``
and ``1.0`` are not tag 1). Anything else takes the careful path: objects counted first when
the body is long (:func:`~nanomsg_kernel.scan.count_objects`), the entries located with
msgpack's unpacker (:func:`~nanomsg_kernel.scan.entries`: integer keys, each once), fields
this version does not know kept as the exact bytes received (:class:`~nanomsg_kernel.types.Raw`),
and only known fields parsed.

The maps inside a body (a record's, a dict's) need more than msgpack: it keeps the last of a
repeated key, and decodes a nested record's unknown fields (a float32 comes back a float64).
For a contract with such fields the common path therefore packs what msgpack read once more
(C speed, a fifth of a nested contract's decode): when that gives the body's very bytes, no
map repeated a key and no value was changed, and the fields are read as they are; otherwise
the careful path reads those fields with their walkers (:mod:`nanomsg_kernel.walk`), which
refuse a repeated key in any map and keep a nested record's unknown fields as bytes.

:func:`pack_parts` writes a map that holds :class:`~nanomsg_kernel.types.Raw` values, which
msgpack's packer cannot: each is written as its bytes.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import msgpack

from nanomsg_kernel.errors import DecodeError, TooManyObjects
from nanomsg_kernel.layout import UnknownKeys
from nanomsg_kernel.scan import count_objects, entries, msgpack_reason
from nanomsg_kernel.types import Mismatch, Raw
from nanomsg_kernel.walk import Walker

__all__ = ["Entry", "pack_parts", "read_body", "read_short_body", "read_whole_body", "walk_first"]

_unpackb = msgpack.unpackb


class Entry(NamedTuple):
    """What the codec keeps for one contract: its header prefixes and body functions."""

    route: int
    version: int
    name: str
    to_map: Any
    from_body: Any
    prefixes: tuple[bytes, ...]
    """The first 10 header bytes of this contract's frames, indexed by kind."""
    head: int
    """The first byte of a body holding exactly the contract's fields (a fixmap of that
    many), or -1 for a contract of 16 fields or more."""
    wide: bytes
    """For a contract of 16 fields or more, the first 3 bytes of such a body (a map16 header)."""
    max_objects: int
    general_from_map: Any
    tags: frozenset[int]
    isolated: Any
    walkers: dict[int, tuple[str, Walker]]
    """The fields whose values hold maps (records, dicts): tag -> (name, walker)."""
    nested_from_body: Any
    """For a contract with maps inside, the layout's ``from_body`` (its ``from_body`` here is
    :func:`walk_first`, so that the common path checks the maps first); None otherwise."""


def pack_parts(value: Any, packer: msgpack.Packer, out: list[bytes]) -> None:
    """Pack ``value`` into ``out`` piece by piece, writing each :class:`Raw` as its bytes."""
    t = type(value)
    if t is Raw:
        out.append(value.data)
    elif t is dict:
        out.append(packer.pack_map_header(len(value)))
        for k, x in value.items():
            out.append(packer.pack(k))
            pack_parts(x, packer, out)
    elif t is list or t is tuple:
        out.append(packer.pack_array_header(len(value)))
        for x in value:
            pack_parts(x, packer, out)
    else:
        out.append(packer.pack(value))


def read_body(entry: Entry, body: bytes | bytearray | memoryview) -> Any:
    """The contract object of ``entry`` in a msgpack ``body`` (``DecodeError`` if it is not one)."""
    if len(body) > entry.max_objects:  # it may hold more objects than the budget: count first
        try:
            count_objects(body, entry.max_objects)
        except TooManyObjects:
            raise
        except DecodeError as exc:
            raise DecodeError(f"{entry.name}: {exc}") from None
    return read_short_body(entry, body)


def read_short_body(entry: Entry, body: bytes | bytearray | memoryview) -> Any:
    """:func:`read_body` of a body that holds no more objects than ``entry.max_objects``
    (counted, or no longer than that many bytes)."""
    try:
        whole = body[0] == entry.head
    except IndexError:
        whole = False
    if whole or (entry.wide and body[:3] == entry.wide):
        return read_whole_body(entry, body)
    return _careful(entry, body)


def read_whole_body(entry: Entry, body: bytes | bytearray | memoryview) -> Any:
    """:func:`read_short_body` of a body whose first bytes say it is a map of exactly the
    contract's fields: the codec's hot path, which reads that byte with the header."""
    try:
        m = _unpackb(body, strict_map_key=False, timestamp=3)
    except Exception as exc:
        raise DecodeError(f"{entry.name}: malformed msgpack body: {msgpack_reason(exc)}") from None
    try:
        return entry.from_body(m)
    except UnknownKeys:
        if entry.walkers:
            return _read_nested(entry, body, m)
        return _careful(entry, body)
    except DecodeError:
        raise
    except Exception as exc:  # attrs validators and converters
        raise DecodeError(f"{entry.name}: {type(exc).__name__}: {exc}") from None


def walk_first(m: Any) -> Any:
    """``Entry.from_body`` of a contract with maps inside: the map msgpack read is not taken
    as it is (:func:`_read_nested` decides)."""
    raise UnknownKeys


def _read_nested(entry: Entry, body: bytes | bytearray | memoryview, m: Any) -> Any:
    """:func:`read_whole_body` of a contract with maps inside: the map ``m`` msgpack read
    is taken when it packs back to the very bytes of the body; the walkers read it otherwise."""
    if _repacked(m) != body:  # a key may repeat, or a value have changed
        return _careful(entry, body)
    try:
        return entry.nested_from_body(m)
    except UnknownKeys:
        return _careful(entry, body)
    except DecodeError:
        raise
    except Exception as exc:  # attrs validators and converters
        raise DecodeError(f"{entry.name}: {type(exc).__name__}: {exc}") from None


_local = threading.local()


def _repacked(m: Any) -> bytes:
    """``m`` written again as the encoder writes it. A body that reads back to a map which
    packs to the very same bytes holds no repeated key anywhere (each map's header counts
    its entries, and the packed map has only the keys msgpack kept) and no value msgpack
    changed (a float32, a nanosecond timestamp): its nested maps need no walk."""
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True, datetime=True, autoreset=True)
    try:
        return packer.pack(m)  # type: ignore[no-any-return]
    except Exception:  # a value msgpack reads and will not write (an ExtType of a bad code, ...)
        _local.packer = msgpack.Packer(use_bin_type=True, datetime=True, autoreset=True)
        return b""


def _careful(entry: Entry, body: bytes | bytearray | memoryview) -> Any:
    """:func:`read_body` of a body the common path does not take: its entries located first
    (keys checked), unknown fields kept as their bytes, known ones parsed."""
    view = memoryview(body)
    walked: dict[int, Any] = {}
    try:
        spans = entries(view, entry.walkers, walked)
    except TooManyObjects:
        raise
    except DecodeError as exc:
        raise DecodeError(f"{entry.name}: {exc}") from None
    except Mismatch as refused:
        raise DecodeError(f"{entry.name}{refused.path}: {refused.describe()}") from None
    tags = entry.tags
    try:
        m = {tag: (walked[tag] if tag in walked else _unpackb(view[start:end], strict_map_key=False, timestamp=3))
             if tag in tags else Raw(bytes(view[start:end])) for tag, start, end in spans}
    except Exception as exc:
        raise DecodeError(f"{entry.name}: malformed msgpack body: {msgpack_reason(exc)}") from None
    try:
        return entry.general_from_map(m)
    except DecodeError:
        raise
    except Exception as exc:  # attrs validators and converters
        raise DecodeError(f"{entry.name}: {type(exc).__name__}: {exc}") from None
