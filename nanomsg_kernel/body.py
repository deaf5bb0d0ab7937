"""A contract's body, read and written: the codec's per-contract entry and its two paths.

:func:`read_body` turns a body into the contract object. The common path: the body's map
holds exactly the contract's fields (its first byte says how many), the body is no longer
than the object budget (so it cannot hold more objects), msgpack parses it whole, and the
generated ``from_body`` takes the keys in the encoder's order, each the tag itself (``True``
and ``1.0`` are not tag 1). Anything else takes the careful path: objects counted first when
the body is long (:func:`~nanomsg_kernel.scan.count_objects`), the entries located with
msgpack's unpacker (:func:`~nanomsg_kernel.scan.entries`: integer keys, each once), fields
this version does not know kept as the exact bytes received (:class:`~nanomsg_kernel.types.Raw`),
and only known fields parsed. (A map inside the body, a record's or a dict's, is read by
msgpack, which keeps the last of a repeated key: checking every nested map for repeats
costs a Python call per map, a quarter more per decode of a nested contract.)

:func:`pack_parts` writes a map that holds :class:`~nanomsg_kernel.types.Raw` values, which
msgpack's packer cannot: each is written as its bytes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack

from nanomsg_kernel.errors import DecodeError, TooManyObjects
from nanomsg_kernel.layout import UnknownKeys
from nanomsg_kernel.scan import count_objects, entries, msgpack_reason
from nanomsg_kernel.types import Raw

__all__ = ["Entry", "pack_parts", "read_body", "read_short_body", "read_whole_body"]

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
        return _careful(entry, body)
    except DecodeError:
        raise
    except Exception as exc:  # attrs validators and converters
        raise DecodeError(f"{entry.name}: {type(exc).__name__}: {exc}") from None


def _careful(entry: Entry, body: bytes | bytearray | memoryview) -> Any:
    """:func:`read_body` of a body the common path does not take: its entries located first
    (keys checked), unknown fields kept as their bytes, known ones parsed."""
    view = memoryview(body)
    try:
        spans = entries(view)
    except TooManyObjects:
        raise
    except DecodeError as exc:
        raise DecodeError(f"{entry.name}: {exc}") from None
    tags = entry.tags
    try:
        m = {tag: _unpackb(view[start:end], strict_map_key=False, timestamp=3)
             if tag in tags else Raw(bytes(view[start:end])) for tag, start, end in spans}
    except Exception as exc:
        raise DecodeError(f"{entry.name}: malformed msgpack body: {msgpack_reason(exc)}") from None
    try:
        return entry.general_from_map(m)
    except DecodeError:
        raise
    except Exception as exc:  # attrs validators and converters
        raise DecodeError(f"{entry.name}: {type(exc).__name__}: {exc}") from None
