"""Request metadata: a small map of string keys to text or bytes, carried beside a message.

On the wire (``docs/wire.md``) a frame whose header has the :data:`METADATA_FLAG` bit set
holds, between the header and the contract's body, a metadata block: a 4-byte big-endian
length, then a MessagePack map of that many bytes. The header's body length counts the
block too, so a reader that frames by the header stays in step. A frame without metadata is
exactly what it was before the flag existed.

A receiver bounds the block before it makes anything of it: its length against
``max_size`` and its entry count (read from the map's own header) against ``max_keys``,
both answered ``RESOURCE_EXHAUSTED`` (:class:`~nanomsg_kernel.errors.MetadataTooLarge`);
then every key must be text, every value text or bytes, each key once. A sender refuses
what the receiver would refuse, with :class:`~nanomsg_kernel.errors.EncodeError`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import msgpack

from nanomsg_kernel.errors import DecodeError, EncodeError, MetadataTooLarge
from nanomsg_kernel.frame import KNOWN_FLAGS, METADATA_FLAG

__all__ = [
    "DEFAULT_MAX_METADATA_KEYS",
    "DEFAULT_MAX_METADATA_SIZE",
    "EMPTY_METADATA",
    "KNOWN_FLAGS",
    "METADATA_FLAG",
    "Metadata",
    "MetadataValue",
    "check_metadata",
    "decode_metadata",
    "encode_metadata",
]

DEFAULT_MAX_METADATA_SIZE = 8192
"""The largest metadata map accepted or sent, in bytes of MessagePack (the block's length)."""

DEFAULT_MAX_METADATA_KEYS = 64
"""The most entries a metadata map may hold."""

MetadataValue = str | bytes
"""What a metadata value may be."""

Metadata = Mapping[str, MetadataValue]
"""Request metadata as a caller gives it and a handler reads it (``ctx.metadata``)."""

EMPTY_METADATA: Mapping[str, MetadataValue] = MappingProxyType({})
"""The metadata of a call that carries none (read-only, shared)."""

_LENGTH = struct.Struct(">I")
LENGTH_SIZE = _LENGTH.size
"""Bytes of the length in front of the metadata map (4)."""


def check_metadata(metadata: Mapping[Any, Any], max_size: int = DEFAULT_MAX_METADATA_SIZE,
                   max_keys: int = DEFAULT_MAX_METADATA_KEYS) -> Mapping[str, MetadataValue]:
    """``metadata`` as a receiver would get it over the wire: a read-only copy with plain
    ``str`` keys and ``str``/``bytes`` values, checked against the same limits.

    Raises:
        EncodeError: a key is not text, a value not text or bytes, or the limits are passed.
    """
    return MappingProxyType(_checked(metadata, max_size, max_keys)[0])


def _checked(metadata: Mapping[Any, Any], max_size: int, max_keys: int) -> tuple[dict[str, MetadataValue], bytes]:
    if not isinstance(metadata, Mapping):
        raise EncodeError(f"metadata must be a mapping of str to str or bytes, not {type(metadata).__name__}")
    if len(metadata) > max_keys:
        raise EncodeError(f"metadata has {len(metadata)} keys, more than the maximum of {max_keys}")
    plain: dict[str, MetadataValue] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise EncodeError(f"metadata keys must be str, got {type(key).__name__} {key!r:.40}")
        if isinstance(value, str):
            plain[str(key)] = str(value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            plain[str(key)] = bytes(value)
        else:
            raise EncodeError(f"metadata value of {key!r:.40} must be str or bytes, not {type(value).__name__}")
    try:
        packed: bytes = msgpack.packb(plain, use_bin_type=True)
    except Exception as exc:  # text that is not valid Unicode (lone surrogates)
        raise EncodeError(f"metadata cannot be encoded: {exc}") from None
    if len(packed) > max_size:
        raise EncodeError(f"metadata of {len(packed)} bytes exceeds the maximum of {max_size} bytes")
    return plain, packed


def encode_metadata(metadata: Mapping[Any, Any], max_size: int = DEFAULT_MAX_METADATA_SIZE,
                    max_keys: int = DEFAULT_MAX_METADATA_KEYS) -> bytes:
    """The metadata block of ``metadata``: its 4-byte length, then the MessagePack map.

    Raises:
        EncodeError: as :func:`check_metadata`.
    """
    packed = _checked(metadata, max_size, max_keys)[1]
    return _LENGTH.pack(len(packed)) + packed


def decode_metadata(payload: bytes | memoryview, max_size: int = DEFAULT_MAX_METADATA_SIZE,
                    max_keys: int = DEFAULT_MAX_METADATA_KEYS) -> tuple[Mapping[str, MetadataValue], int]:
    """Read the metadata block at the start of ``payload`` (what follows a header whose
    :data:`METADATA_FLAG` is set): the metadata, read-only, and the offset of the body.

    Raises:
        MetadataTooLarge: the block is longer than ``max_size`` or declares more than
            ``max_keys`` entries (checked before anything is decoded).
        DecodeError: the block is truncated, not a map of text to text or bytes, or a key
            is repeated.
    """
    if len(payload) < LENGTH_SIZE:
        raise DecodeError(f"truncated metadata: {len(payload)} bytes, the length alone takes {LENGTH_SIZE}")
    (size,) = _LENGTH.unpack_from(payload)
    if size > max_size:
        raise MetadataTooLarge(f"metadata of {size} bytes exceeds the maximum of {max_size} bytes")
    end = LENGTH_SIZE + size
    if end > len(payload):
        raise DecodeError(f"metadata declares {size} bytes, {len(payload) - LENGTH_SIZE} follow the length")
    if size == 0:
        raise DecodeError("metadata declares 0 bytes: a map takes one at least")
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=size)
    unpacker.feed(payload[LENGTH_SIZE:end])
    result: dict[str, MetadataValue] = {}
    try:
        count = unpacker.read_map_header()  # the declared entry count: nothing made yet
    except Exception:  # another type, or nothing
        raise DecodeError(f"metadata must be a map, starts with byte 0x{payload[LENGTH_SIZE]:02x}") from None
    if count > max_keys:
        raise MetadataTooLarge(f"metadata holds {count} keys, more than the maximum of {max_keys}")
    try:
        for _ in range(count):
            key = unpacker.unpack()
            value = unpacker.unpack()
            if type(key) is not str:
                raise DecodeError(f"metadata keys must be text, got {type(key).__name__}")
            if type(value) is not str and type(value) is not bytes:
                raise DecodeError(f"metadata value of {key!r:.40} must be text or bytes, got {type(value).__name__}")
            if key in result:
                raise DecodeError(f"metadata key {key!r:.40} appears twice")
            result[key] = value
    except DecodeError:
        raise
    except Exception as exc:  # not a map, truncated data, invalid UTF-8, ...
        raise DecodeError(f"metadata is not a valid MessagePack map: {type(exc).__name__}: {exc}"[:300]) from None
    if unpacker.tell() != size:
        raise DecodeError(f"metadata holds {size - unpacker.tell()} bytes after its map")
    return MappingProxyType(result), end
