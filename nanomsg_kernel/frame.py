"""The binary frame header.

The layout is declared once with ``construct`` (:data:`HEADER_SPEC`, the specification,
documented byte by byte in ``docs/wire.md``). The hot path packs and unpacks the same
layout with one precompiled :class:`struct.Struct` (:data:`HEADER_STRUCT`); a test checks
that the two agree byte for byte.

All integers are big-endian::

    offset size field
    0      2    magic            b"NK"
    2      1    wire version     1
    3      1    kind             1 request, 2 response, 3 error, 4 event, 5 cancel
    4      2    route            routing enum value
    6      2    contract version of the body's contract (0 in error frames)
    8      2    flags            bit 0: a metadata block follows the header; others 0
    10     8    correlation id   pairs a reply with its request
    18     4    timeout ms       time the caller will still wait; 0 = no deadline
    22     4    body length      bytes that follow (metadata block, if any, and body)
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

import construct as cs

from nanomsg_kernel.errors import DecodeError, FrameTooLarge, Status

__all__ = [
    "DEFAULT_MAX_BODY",
    "KNOWN_FLAGS",
    "METADATA_FLAG",
    "HEADER_SIZE",
    "HEADER_SPEC",
    "HEADER_STRUCT",
    "MAGIC",
    "WIRE_VERSION",
    "Header",
    "Kind",
    "Refusal",
    "cancel_frame",
    "pack_header",
    "parse_header",
    "refusal",
]

MAGIC = b"NK"
WIRE_VERSION = 1
DEFAULT_MAX_BODY = 16 * 1024 * 1024
MAX_U16 = 0xFFFF
MAX_U32 = 0xFFFF_FFFF
MAX_U64 = 0xFFFF_FFFF_FFFF_FFFF

METADATA_FLAG = 0x0001
"""Header flag: a metadata block (:mod:`nanomsg_kernel.metadata`) sits between header and body."""

KNOWN_FLAGS = METADATA_FLAG
"""Every flag bit this version understands; a frame with any other bit set is refused."""


class Kind(enum.IntEnum):
    """What a frame carries."""

    REQUEST = 1
    RESPONSE = 2
    ERROR = 3
    EVENT = 4
    CANCEL = 5
    """The caller gave up on its request with this correlation id: the server cancels the
    handler if it is still running, and sends nothing back. No body."""


HEADER_SPEC = cs.Struct(
    "magic" / cs.Const(MAGIC),
    "wire_version" / cs.Int8ub,
    "kind" / cs.Int8ub,
    "route" / cs.Int16ub,
    "contract_version" / cs.Int16ub,
    "flags" / cs.Int16ub,
    "correlation_id" / cs.Int64ub,
    "timeout_ms" / cs.Int32ub,
    "body_length" / cs.Int32ub,
)
"""The header layout, declared with ``construct``: the specification of the wire."""

HEADER_STRUCT = struct.Struct(">2sBBHHHQII")
"""The same layout as :data:`HEADER_SPEC`, precompiled for the hot path."""

HEADER_SIZE = HEADER_STRUCT.size
"""Bytes in a frame header (26): every frame starts with them, the body follows."""

_KINDS = frozenset(int(k) for k in Kind)
_CANCEL = int(Kind.CANCEL)


class Header(NamedTuple):
    """A parsed frame header (everything but the magic)."""

    wire_version: int
    kind: Kind
    route: int
    contract_version: int
    flags: int
    correlation_id: int
    timeout_ms: int
    body_length: int


def pack_header(
    kind: int,
    route: int,
    contract_version: int,
    correlation_id: int,
    timeout_ms: int,
    body_length: int,
    flags: int = 0,
) -> bytes:
    """Pack a header. Values out of their field's range raise :class:`struct.error`."""
    return HEADER_STRUCT.pack(
        MAGIC, WIRE_VERSION, kind, route, contract_version, flags,
        correlation_id, timeout_ms, body_length,
    )


def parse_header(data: bytes | bytearray | memoryview, max_body: int = DEFAULT_MAX_BODY) -> Header:
    """Parse and check the first :data:`HEADER_SIZE` bytes of ``data``.

    Checks the magic, wire version and kind, and that the declared body length is at most
    ``max_body`` (raising :class:`FrameTooLarge`), so a reader can refuse a frame before
    allocating anything for its body. Does not check that the body is present.

    Raises:
        DecodeError: the bytes are not a valid header.
    """
    if len(data) < HEADER_SIZE:
        raise DecodeError(f"truncated header: {len(data)} of {HEADER_SIZE} bytes")
    magic, wire, kind, route, cver, flags, corr, timeout, length = HEADER_STRUCT.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(f"bad magic {bytes(magic)!r}, expected {MAGIC!r}")
    if wire != WIRE_VERSION:
        raise DecodeError(f"unsupported wire version {wire}, expected {WIRE_VERSION}")
    if kind not in _KINDS:
        raise DecodeError(f"unknown frame kind {kind}")
    if length > max_body:
        raise FrameTooLarge(length, max_body)
    if flags & ~KNOWN_FLAGS:
        raise DecodeError(unknown_flags(flags))
    return Header(wire, Kind(kind), route, cver, flags, corr, timeout, length)


def unknown_flags(flags: int) -> str:
    """The message refusing a header with flag bits this version does not know."""
    return f"unknown header flags 0x{flags:04x} (this receiver knows 0x{KNOWN_FLAGS:04x})"


def peek_correlation_id(data: bytes | bytearray | memoryview) -> int | None:
    """Return the correlation id of a frame if at least its header is present, else ``None``.

    Used to address an error reply to a frame whose header or body is otherwise bad.
    """
    if len(data) < HEADER_SIZE or bytes(data[:2]) != MAGIC:
        return None
    return int(HEADER_STRUCT.unpack_from(data)[6])


def cancel_frame(correlation_id: int) -> bytes:
    """The ``CANCEL`` frame for the request ``correlation_id`` (route 0, no body)."""
    return HEADER_STRUCT.pack(MAGIC, WIRE_VERSION, _CANCEL, 0, 0, 0, correlation_id, 0, 0)


class Refusal(NamedTuple):
    """Why a receiver refuses a frame for its header, and what follows (``docs/wire.md``)."""

    status: Status
    """The status of the error frame that answers it (when its correlation id is readable)."""
    message: str
    closes: bool
    """Whether a stream transport closes the connection: it cannot know where the next frame
    starts (bad magic, unknown wire version, body over the limit). An unknown kind or flag
    does not close it: the body is read and the connection goes on."""


def refusal(data: bytes | bytearray | memoryview, max_body: int = DEFAULT_MAX_BODY, *,
            whole: bool = True) -> Refusal | None:
    """Why ``data`` (a whole frame, or only a header when ``whole`` is false) is refused, or
    ``None`` if its header is good: the one check every server makes, in this order."""
    if len(data) < HEADER_SIZE:
        return Refusal(Status.BAD_REQUEST, f"truncated header: {len(data)} of {HEADER_SIZE} bytes", True)
    magic, wire, kind, _route, _cver, flags, _corr, _timeout, length = HEADER_STRUCT.unpack_from(data)
    if magic != MAGIC:
        return Refusal(Status.BAD_REQUEST, f"bad magic {bytes(magic)!r}, expected {MAGIC!r}", True)
    if wire != WIRE_VERSION:
        return Refusal(Status.BAD_REQUEST, f"unsupported wire version {wire}, expected {WIRE_VERSION}", True)
    if length > max_body:
        return Refusal(Status.RESOURCE_EXHAUSTED, str(FrameTooLarge(length, max_body)), True)
    if whole and length != len(data) - HEADER_SIZE:
        return Refusal(Status.BAD_REQUEST,
                       f"header declares a body of {length} bytes, frame holds {len(data) - HEADER_SIZE}", True)
    if kind not in _KINDS:
        return Refusal(Status.BAD_REQUEST, f"unknown frame kind {kind}", False)
    if flags & ~KNOWN_FLAGS:
        return Refusal(Status.BAD_REQUEST, unknown_flags(flags), False)
    return None
