"""The codec: contract objects to frames (header + msgpack body) and back.

Build one per kernel (``Kernel.codec()`` caches it) and reuse it::

    codec = CalcRoute.codec()
    frame = codec.encode(CalcWork(a=1, b=2, op=WorkType.SUM), correlation_id=7)
    msg = codec.decode(frame)

Decoding never trusts its input: the header is checked first (magic, wire version, kind,
declared length against ``max_body_size``), then the body is parsed by msgpack (which bounds
every length by the bytes actually present) and every field is type-checked. Only
:class:`~nanomsg_kernel.errors.DecodeError` (or, for error frames from :meth:`Codec.decode`,
:class:`~nanomsg_kernel.errors.RemoteError`) ever leaves :meth:`Codec.decode`.

What a body may cost is bounded too: a body holds at most ``max_objects`` msgpack objects
(:class:`~nanomsg_kernel.errors.TooManyObjects`, status ``RESOURCE_EXHAUSTED``). A body no
longer than that many bytes cannot hold more (each object takes a byte at least) and goes
straight to msgpack; a longer one is walked first (:mod:`nanomsg_kernel.scan`), allocating
nothing per object. A body's map must hold each field tag once, as an integer key.

How a body is read (a common path, and a careful one that keeps unknown fields as the
exact bytes received) is in :mod:`nanomsg_kernel.body`.
"""

from __future__ import annotations

import enum
import struct
import threading
from typing import Any, NamedTuple

import msgpack

from nanomsg_kernel.body import Entry, checked_from_body, pack_parts, read_body, read_whole_body
from nanomsg_kernel.compiled import REASON, available, core_for
from nanomsg_kernel.contract import (
    ContractInfo,
    contract_info,
    contract_of,
    kernel_contracts,
    validate_kernel,
)
from nanomsg_kernel.error_body import decode_error_body, encode_error_body
from nanomsg_kernel.errors import DecodeError, EncodeError, FrameTooLarge
from nanomsg_kernel.frame import (
    DEFAULT_MAX_BODY,
    HEADER_SIZE,
    HEADER_STRUCT,
    KNOWN_FLAGS,
    MAGIC,
    MAX_U32,
    MAX_U64,
    METADATA_FLAG,
    WIRE_VERSION,
    Header,
    Kind,
    parse_header,
    unknown_flags,
)
from nanomsg_kernel.metadata import (
    DEFAULT_MAX_METADATA_KEYS,
    DEFAULT_MAX_METADATA_SIZE,
    EMPTY_METADATA,
    Metadata,
    check_metadata,
    decode_metadata,
    encode_metadata,
)
from nanomsg_kernel.scan import count_objects, msgpack_reason
from nanomsg_kernel.walk import walker

__all__ = ["Codec", "Frame", "decode_error_body", "encode_error_body", "msgpack_reason"]

_unpack_header = HEADER_STRUCT.unpack_from
_pack_header = HEADER_STRUCT.pack
_REQUEST, _ERROR, _CANCEL = int(Kind.REQUEST), int(Kind.ERROR), int(Kind.CANCEL)
_KINDS = frozenset(int(k) for k in Kind)


# The hot paths read and write the same header (frame.HEADER_STRUCT) in fewer pieces.
# Encoding: magic, wire version, kind, route, contract version and flags are fixed for a
# contract and a kind, so each contract keeps those first 10 bytes ready (one per Kind) and
# only the correlation id, timeout and body length are packed per frame.
_PREFIX = struct.Struct(">2sBBHHH")
_pack_tail = struct.Struct(f">{_PREFIX.size}sQII").pack
# Decoding: the first 6 bytes (magic, wire version, kind, route) are looked up whole among
# those of the kernel's messages, which checks all four at once, and the flags and the body
# length are read; the other fields are not needed to decode a message. The body's first
# byte is read with them: the common path takes a body that is a map of exactly the
# contract's fields, in a frame without flags. Anything else takes the full check.
_KEY = struct.Struct(">6s2xH12xIB")
_unpack_key = _KEY.unpack_from
_key_of = struct.Struct(">2sBBH").pack
# A request is served with its correlation id and timeout too (the contract version is not
# needed to serve it).
_unpack_request = struct.Struct(">6s2xHQIIB").unpack_from
if not _PREFIX.size + 16 == _KEY.size - 1 == HEADER_SIZE:  # pragma: no cover - a layout edit
    raise ImportError("codec header structs disagree with frame.HEADER_STRUCT")


class Frame(NamedTuple):
    """A decoded frame: its header and its message (a contract, a RemoteError, or ``None``
    for a ``CANCEL``)."""

    header: Header
    message: Any


def _new_packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, datetime=True, autoreset=True)


class Codec:
    """Encodes and decodes the frames of one kernel. Thread-safe; build once, reuse.

    Args:
        routes: the kernel's routing enum (validated: every member needs a contract).
        max_body_size: the largest body accepted or produced, in bytes (default 16 MiB).
        max_objects: the most msgpack objects one body may hold, accepted or produced
            (default ``max_body_size // 64``: 262,144 for 16 MiB). Decoding allocates a
            Python object per msgpack object, so this bounds a frame's decoded size; a body
            past it is refused with :class:`~nanomsg_kernel.errors.TooManyObjects` before
            its objects are made.
        max_metadata_size: the largest metadata map accepted or sent, in bytes
            (:mod:`nanomsg_kernel.metadata`; default 8 KiB).
        max_metadata_keys: the most keys a metadata map may hold (default 64).
        compiled: use the compiled codec (``None``: when it is available and
            ``NANOMSG_KERNEL_PURE`` is not set; ``True`` raises ``ValueError`` where it is
            not). Both give the same frames, objects and errors; :attr:`compiled` says
            which one this codec uses.
    """

    def __init__(
        self, routes: type[enum.IntEnum], *, max_body_size: int = DEFAULT_MAX_BODY, max_objects: int | None = None,
        max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE, max_metadata_keys: int = DEFAULT_MAX_METADATA_KEYS,
        compiled: bool | None = None,
    ) -> None:
        validate_kernel(routes)
        if not 0 < max_body_size <= MAX_U32:
            raise ValueError(f"max_body_size must be 1 to {MAX_U32}, got {max_body_size}")
        if max_objects is None:
            max_objects = max(max_body_size // 64, 1024)
        if type(max_objects) is not int or max_objects < 1:
            raise ValueError(f"max_objects must be a positive int, got {max_objects!r}")
        for name, limit in (("max_metadata_size", max_metadata_size), ("max_metadata_keys", max_metadata_keys)):
            if type(limit) is not int or limit < 1:
                raise ValueError(f"{name} must be a positive int, got {limit!r}")
        self.routes = routes
        self.max_body_size = max_body_size
        self.max_objects = max_objects
        self.max_metadata_size = max_metadata_size
        self.max_metadata_keys = max_metadata_keys
        self._check_above = min(max_body_size, max_objects)
        self._by_class: dict[type, Entry] = {}
        self._by_route: dict[int, Entry] = {}
        self._by_key: dict[bytes, Entry] = {}
        self._requests: dict[bytes, Entry] = {}
        for member, cls in kernel_contracts(routes).items():
            info = contract_info(cls)
            prefixes = tuple(
                _PREFIX.pack(MAGIC, WIRE_VERSION, k, int(member), info.version, 0) for k in range(max(Kind) + 1)
            )
            layout, n = info.layout, len(info.fields)
            walkers = {f.tag: (f.name, w) for f in info.fields if (w := walker(f.spec)) is not None}
            entry = Entry(
                int(member), info.version, cls.__name__, info.to_map,
                checked_from_body(layout.from_body) if walkers else layout.from_body,
                prefixes, 0x80 | n if n < 16 else -1, b"" if n < 16 else b"\xde" + n.to_bytes(2, "big"),
                max_objects, layout.general_from_map, frozenset(f.tag for f in info.fields), layout.isolated,
                walkers,
            )
            self._by_class[cls] = entry
            self._by_route[int(member)] = entry
            for kind in (Kind.REQUEST, Kind.RESPONSE, Kind.EVENT):
                self._by_key[_key_of(MAGIC, WIRE_VERSION, kind, int(member))] = entry
            self._requests[_key_of(MAGIC, WIRE_VERSION, Kind.REQUEST, int(member))] = entry
        self._tls = threading.local()
        self._core: Any = None
        if compiled is None:
            compiled = available()
        elif compiled and not available():
            raise ValueError(f"the compiled codec is not available: {REASON}")
        self.compiled = bool(compiled)
        """True when this codec's hot paths are the compiled ones."""
        if compiled:  # the compiled paths, each handing what it leaves to the method it replaces
            self._core = core = core_for(self)
            self.encode = core.encode  # type: ignore[method-assign]
            self.decode = core.decode  # type: ignore[method-assign]
            self.decode_request = core.decode_request  # type: ignore[method-assign]
            self.isolate = core.isolate  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return (f"<Codec {self.routes.__name__} max_body_size={self.max_body_size} max_objects={self.max_objects}"
                f"{' compiled' if self.compiled else ''}>")

    def info(self, route: int) -> ContractInfo:
        """The :class:`ContractInfo` of the contract at ``route`` (``DecodeError`` if unknown)."""
        entry = self._by_route.get(route)
        if entry is None:
            raise DecodeError(f"unknown route {route} for {self.routes.__name__}")
        return contract_info(contract_of(self.routes(route)))

    def _packer(self) -> msgpack.Packer:
        try:
            packer: msgpack.Packer = self._tls.packer
            return packer
        except AttributeError:
            packer = self._tls.packer = _new_packer()
            return packer

    # -- encoding ------------------------------------------------------------------------

    def encode_body(self, msg: Any) -> bytes:
        """The msgpack body of ``msg`` alone (no header)."""
        entry = self._entry_for(msg)
        return self._pack(entry, msg)

    def _entry_for(self, msg: Any) -> Entry:
        entry = self._by_class.get(type(msg))
        if entry is None:
            raise EncodeError(f"{type(msg).__name__} is not a contract of {self.routes.__name__}")
        return entry

    def _pack(self, entry: Entry, msg: Any) -> bytes:
        try:
            m = entry.to_map(msg)
        except EncodeError:
            raise
        except Exception as exc:  # a value whose own methods fail (__index__, __str__, ...)
            raise EncodeError(f"{entry.name}: {type(exc).__name__}: {exc}") from None
        try:
            body: bytes = self._packer().pack(m)
        except Exception as exc:
            body = self._repack(entry, m, exc)
        self._check_size(entry, body)
        return body

    def _repack(self, entry: Entry, m: dict[int, Any], exc: Exception) -> bytes:
        """The body of ``m`` when msgpack refused it whole: fields kept as :class:`~nanomsg_kernel.types.Raw` bytes
        are written as they are; anything else msgpack refuses is an ``EncodeError``."""
        packer = self._tls.packer = _new_packer()
        if isinstance(exc, TypeError):
            parts: list[bytes] = []
            try:
                pack_parts(m, packer, parts)
                return b"".join(parts)
            except Exception as again:
                self._tls.packer = _new_packer()
                exc = again
        raise EncodeError(f"{entry.name}: {exc}") from None

    def _check_size(self, entry: Entry, body: bytes) -> None:
        """Refuse a body the other side would refuse: too long, or too many objects."""
        size = len(body)
        if size > self.max_body_size:
            raise EncodeError(f"{entry.name}: body of {size} bytes exceeds the maximum of {self.max_body_size}")
        if size > self.max_objects:
            try:
                count_objects(body, self.max_objects)
            except DecodeError as exc:
                raise EncodeError(f"{entry.name}: {exc}") from None

    def encode(
        self,
        msg: Any,
        *,
        kind: Kind = Kind.REQUEST,
        correlation_id: int = 0,
        timeout_ms: int = 0,
        metadata: Metadata | None = None,
    ) -> bytes:
        """Encode ``msg`` (a contract of this kernel) as one frame.

        Args:
            kind: ``REQUEST``, ``RESPONSE`` or ``EVENT``.
            correlation_id: 0 to 2**64-1; pairs a reply with its request.
            timeout_ms: milliseconds the caller will still wait (0 = no deadline).
            metadata: a map of ``str`` keys to ``str`` or ``bytes`` values, sent in a
                metadata block (``docs/wire.md``); empty or ``None``: no block, and the
                frame is exactly what it would be without the argument.

        Raises:
            EncodeError: ``msg`` is not a contract of this kernel, a field value does not
                fit its type, the body exceeds ``max_body_size``, or the metadata is not a
                map of text to text or bytes within ``max_metadata_size`` and
                ``max_metadata_keys``.
        """
        entry = self._by_class.get(type(msg))
        if entry is None:
            raise EncodeError(f"{type(msg).__name__} is not a contract of {self.routes.__name__}")
        try:
            m = entry.to_map(msg)
        except EncodeError:
            raise
        except Exception as exc:  # a value whose own methods fail (__index__, __str__, ...)
            raise EncodeError(f"{entry.name}: {type(exc).__name__}: {exc}") from None
        try:
            packer = self._tls.packer
        except AttributeError:
            packer = self._packer()
        try:
            body: bytes = packer.pack(m)
        except Exception as exc:
            body = self._repack(entry, m, exc)
        size = len(body)
        if size > self._check_above:
            self._check_size(entry, body)
        if metadata:
            return self._with_metadata(entry, kind, correlation_id, timeout_ms, body, metadata)
        try:
            if type(kind) is Kind:
                return _pack_tail(entry.prefixes[kind], correlation_id, timeout_ms, size) + body
            return _pack_header(
                MAGIC, WIRE_VERSION, kind, entry.route, entry.version, 0, correlation_id, timeout_ms, size
            ) + body
        except struct.error:
            raise EncodeError(
                f"header out of range: kind={kind!r} correlation_id={correlation_id!r} "
                f"timeout_ms={timeout_ms!r} (ids are 0..{MAX_U64}, timeouts 0..{MAX_U32} ms)"
            ) from None

    def _with_metadata(self, entry: Entry, kind: int, correlation_id: int, timeout_ms: int, body: bytes,
                       metadata: Metadata) -> bytes:
        """The frame of :meth:`encode` with a metadata block between header and body."""
        block = encode_metadata(metadata, self.max_metadata_size, self.max_metadata_keys)
        size = len(block) + len(body)
        if size > self.max_body_size:
            raise EncodeError(f"{entry.name}: metadata and body of {size} bytes exceed the maximum of "
                              f"{self.max_body_size}")
        try:
            return _pack_header(
                MAGIC, WIRE_VERSION, kind, entry.route, entry.version, METADATA_FLAG, correlation_id, timeout_ms, size
            ) + block + body
        except struct.error:
            raise EncodeError(
                f"header out of range: kind={kind!r} correlation_id={correlation_id!r} "
                f"timeout_ms={timeout_ms!r} (ids are 0..{MAX_U64}, timeouts 0..{MAX_U32} ms)"
            ) from None

    def check_metadata(self, metadata: Metadata) -> Metadata:
        """``metadata`` as the other side of a wire would receive it (a read-only copy),
        checked against this codec's limits: what an in-process binding hands over.

        Raises:
            EncodeError: :meth:`encode` would refuse it.
        """
        return check_metadata(metadata, self.max_metadata_size, self.max_metadata_keys)

    def isolate(self, msg: Any) -> Any:
        """``msg`` as the other side of a wire would receive it, without the wire: checked as
        :meth:`encode` checks it, and sharing nothing mutable with ``msg``.

        An object of immutable fields that passes the encoder's inline tests is returned as
        it is; any other goes through the body's encoding and decoding, so that it meets
        every rule of both and comes back as a new object with its own lists and dicts.

        Raises:
            EncodeError: :meth:`encode` would refuse ``msg``.
            DecodeError: the decoding side would refuse it (a validator refuses the value).
        """
        entry = self._by_class.get(type(msg))
        if entry is None:
            raise EncodeError(f"{type(msg).__name__} is not a contract of {self.routes.__name__}")
        if entry.isolated(msg):
            return msg
        if self._core is not None:
            return self._core.read_body(entry.route, self._core.encode_body(msg))
        return read_body(entry, self._pack(entry, msg))

    def encode_error(
        self,
        status: int,
        message: str = "",
        *,
        correlation_id: int = 0,
        route: int = 0,
        details: Any = None,
    ) -> bytes:
        """An error frame carrying ``status`` and ``message`` (and optional ``details``)."""
        body = encode_error_body(status, message, details)
        return _pack_header(MAGIC, WIRE_VERSION, _ERROR, route & 0xFFFF, 0, 0, correlation_id, 0, len(body)) + body

    # -- decoding ------------------------------------------------------------------------

    def _check(self, frame: Any) -> tuple[int, int, int, int, int, int]:
        """Unpack and check a header; returns (kind, route, cver, flags, corr, timeout)."""
        try:
            magic, wire, kind, route, cver, flags, corr, timeout, length = _unpack_header(frame)
        except (struct.error, TypeError):
            if not isinstance(frame, (bytes, bytearray, memoryview)):
                raise DecodeError(f"a frame must be bytes, not {type(frame).__name__}") from None
            raise DecodeError(f"truncated header: {len(frame)} of {HEADER_SIZE} bytes") from None
        if magic != MAGIC or wire != WIRE_VERSION or kind not in _KINDS:
            parse_header(frame, self.max_body_size)  # raises the precise error
        if length > self.max_body_size:
            raise FrameTooLarge(length, self.max_body_size)
        present = len(frame) - HEADER_SIZE
        if length != present:
            raise DecodeError(f"header declares a body of {length} bytes, frame holds {present}")
        if flags & ~KNOWN_FLAGS:
            raise DecodeError(unknown_flags(flags))
        return kind, route, cver, flags, corr, timeout

    def split(self, frame: bytes | bytearray | memoryview, flags: int) -> tuple[Metadata, memoryview]:
        """The metadata and the body of a frame whose header was checked and has ``flags``.

        Raises:
            MetadataTooLarge: the metadata is over this codec's limits.
            DecodeError: the metadata block is not valid.
        """
        payload = memoryview(frame)[HEADER_SIZE:]
        if not flags & METADATA_FLAG:
            return EMPTY_METADATA, payload
        metadata, offset = decode_metadata(payload, self.max_metadata_size, self.max_metadata_keys)
        return metadata, payload[offset:]

    def frame_metadata(self, frame: bytes | bytearray | memoryview) -> Metadata:
        """The metadata a frame carries (read-only; empty when it has none).

        Raises:
            DecodeError: the header or the metadata block is not valid
                (:class:`~nanomsg_kernel.errors.MetadataTooLarge` over the limits).
        """
        _kind, _route, _cver, flags, _corr, _timeout = self._check(frame)
        return self.split(frame, flags)[0]

    def _body(self, route: int, body: Any) -> Any:
        entry = self._by_route.get(route)
        if entry is None:
            raise DecodeError(f"unknown route {route} for {self.routes.__name__}")
        return read_body(entry, body)

    def decode_body(self, route: int, body: bytes | memoryview) -> Any:
        """Decode a msgpack body of the contract at ``route`` (no header)."""
        if len(body) > self.max_body_size:
            raise FrameTooLarge(len(body), self.max_body_size)
        return self._body(route, body)

    def decode(self, frame: bytes | bytearray | memoryview) -> Any:
        """Decode a whole frame into its contract object (``None`` for a ``CANCEL``).

        Raises:
            DecodeError: the bytes are not a valid frame of this kernel.
            RemoteError: the frame is an error frame (its status and message).
        """
        try:
            key, flags, length, head = _unpack_key(frame)
        except (struct.error, TypeError):
            return self._decode_other(frame)
        entry = self._by_key.get(key)
        if (entry is None or flags or length != len(frame) - HEADER_SIZE or length > self._check_above
                or head != entry.head):
            return self._decode_other(frame)  # also what is not the common path's (a long body, ...)
        return read_whole_body(entry, frame[HEADER_SIZE:] if type(frame) is bytes and length < 4096
                               else memoryview(frame)[HEADER_SIZE:])

    def decode_request(self, frame: bytes | bytearray | memoryview) -> tuple[Any, int, int, int] | None:
        """A request's ``(message, correlation_id, timeout_ms, route)``, the way a service
        reads it: ``None`` for any frame that is not a well-formed request of a route of
        this kernel without flags (:meth:`decode_frame` says what is wrong with it; one
        with metadata is read with :meth:`split`).

        Raises:
            DecodeError: the header is a good request's, the body is not.
        """
        try:
            key, flags, correlation_id, timeout_ms, length, head = _unpack_request(frame)
        except (struct.error, TypeError):
            return None
        entry = self._requests.get(key)
        if entry is None or flags or length != len(frame) - HEADER_SIZE or length > self.max_body_size:
            return None
        body = frame[HEADER_SIZE:] if type(frame) is bytes and length < 4096 else memoryview(frame)[HEADER_SIZE:]
        if head != entry.head or length > entry.max_objects:
            return read_body(entry, body), correlation_id, timeout_ms, entry.route
        return read_whole_body(entry, body), correlation_id, timeout_ms, entry.route

    def _decode_other(self, frame: bytes | bytearray | memoryview) -> Any:
        """:meth:`decode` of what its fast check does not take: error frames, unknown routes,
        and bad headers (raises the precise error)."""
        kind, route, _cver, flags, _corr, _timeout = self._check(frame)
        body = self.split(frame, flags)[1] if flags else memoryview(frame)[HEADER_SIZE:]
        if kind == _ERROR:
            raise decode_error_body(body, self.max_objects)
        if kind == _CANCEL:
            return None
        return self._body(route, body)

    def decode_frame(self, frame: bytes | bytearray | memoryview) -> Frame:
        """Decode a frame into its :class:`Header` and message; an error frame's message is a
        :class:`RemoteError` (returned, not raised)."""
        kind, route, cver, flags, corr, timeout = self._check(frame)
        header = Header(WIRE_VERSION, Kind(kind), route, cver, flags, corr, timeout, len(frame) - HEADER_SIZE)
        body = self.split(frame, flags)[1]
        if header.kind == Kind.ERROR:
            return Frame(header, decode_error_body(body, self.max_objects))
        if header.kind == Kind.CANCEL:
            return Frame(header, None)
        return Frame(header, self._body(header.route, body))

    def read_header(self, data: bytes | bytearray | memoryview) -> Header:
        """Parse and check a header alone, against this codec's ``max_body_size``."""
        return parse_header(data, self.max_body_size)
