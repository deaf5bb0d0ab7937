"""Framing over asyncio streams, shared by the TCP server and client.

* :func:`parse_address` / :func:`format_address` — ``tcp://host:port`` (``[v6]`` hosts too).
* :func:`check_header` — the per-frame header check of the read loops: a fast path over the
  precompiled struct, falling back to :func:`~nanomsg_kernel.frame.parse_header` for the
  precise error, so a bad or oversized header is refused before its body is read.
* :class:`FrameWriter` — writes frames to a transport, coalescing the frames written during
  one event-loop iteration into a single socket write; :func:`unsent_limit` — the most
  bytes it may hold for a peer that does not read.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from nanomsg_kernel.errors import ConfigError
from nanomsg_kernel.frame import (
    HEADER_SIZE,
    HEADER_STRUCT,
    MAGIC,
    WIRE_VERSION,
    Kind,
    parse_header,
)
from nanomsg_kernel.transports.base import split_url

__all__ = [
    "DEFAULT_MAX_UNSENT",
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "FrameWriter",
    "check_header",
    "format_address",
    "parse_address",
    "unsent_limit",
]

_unpack_header = HEADER_STRUCT.unpack_from
_KINDS = frozenset(int(k) for k in Kind)

MAX_BATCH = 16
"""Frames held back for one coalesced write at most: a full batch is written at once, so
the peer starts on it while the rest is produced (whole-pipeline batches make the two
sides take turns, each idle while the other works)."""
MAX_BATCH_BYTES = 64 * 1024
"""Bytes held back for one coalesced write at most."""
DEFAULT_MAX_UNSENT = 64 * 1024 * 1024
"""The default ``max_unsent`` of a TCP listener (raised to twice the largest frame when that
is larger)."""


def parse_address(url: str, schemes: tuple[str, ...] = ("tcp",)) -> tuple[str, str | None, int]:
    """Split ``tcp://host:port`` into ``(scheme, host, port)``.

    ``host`` is ``None`` for ``*`` (every interface); IPv6 hosts are written in brackets
    (``tcp://[::1]:0``). Port 0 asks the system for a free port when listening.

    Raises:
        ConfigError: the URL is not of that form.
    """
    scheme, _rest = split_url(url)
    if scheme not in schemes:
        raise ConfigError(f"bad TCP URL {url!r}: the scheme must be one of {', '.join(schemes)}")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad TCP URL {url!r}: {exc}") from None
    host = parts.hostname
    if port is None or not host or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(f"bad TCP URL {url!r}: expected {scheme}://host:port")
    return scheme, (None if host == "*" else host), port


def format_address(scheme: str, host: str | None, port: int) -> str:
    """The URL of ``host:port`` (brackets around IPv6 hosts; ``*`` for every interface)."""
    if host is None:
        host = "*"
    elif ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def unsent_limit(max_unsent: int | None, max_body_size: int) -> int:
    """The ``max_unsent`` to use: ``None`` gives :data:`DEFAULT_MAX_UNSENT` or twice the
    largest frame, whichever is more.

    Raises:
        ConfigError: ``max_unsent`` is not an int of at least the largest frame.
    """
    largest = max_body_size + HEADER_SIZE
    if max_unsent is None:
        return max(DEFAULT_MAX_UNSENT, 2 * largest)
    if not isinstance(max_unsent, int) or isinstance(max_unsent, bool) or max_unsent < largest:
        raise ConfigError(f"max_unsent must be an int of at least max_body_size + {HEADER_SIZE} "
                          f"({largest}), got {max_unsent!r}")
    return max_unsent


def check_header(header: bytes, max_body: int) -> tuple[int, int, int]:
    """Check a received header; return its ``(kind, correlation_id, body_length)``.

    Raises:
        DecodeError: bad magic, wire version or kind.
        FrameTooLarge: the declared body exceeds ``max_body``.
    """
    magic, wire, kind, _route, _cver, _flags, cid, _timeout, length = _unpack_header(header)
    if magic != MAGIC or wire != WIRE_VERSION or kind not in _KINDS or length > max_body:
        parse_header(header, max_body)  # raises the precise error
    return kind, cid, length


class FrameWriter:
    """Writes frames to a stream, coalescing those written in one loop iteration.

    The first frame of an iteration goes to the socket at once (no added latency for a
    lone request); frames written after it in the same iteration are held and written
    together, in order, by one call scheduled for the next iteration, or as soon as
    :data:`MAX_BATCH` frames or :data:`MAX_BATCH_BYTES` bytes are held. A writer that knows
    no other frame follows soon says so (``more=False``) and skips the scheduling.

    Backpressure: :attr:`congested` tells when more than ``high_water`` bytes (held here or
    in the transport) wait to be sent; :meth:`drain` then waits until the transport has
    sent most of them. A hard bound: when more than ``max_unsent`` bytes wait in the
    transport after a write, ``on_overflow(unsent)`` is called (at most once), to drop a
    peer that does not read.
    """

    __slots__ = ("_corked", "_held", "_held_bytes", "_max_unsent", "high_water", "loop", "on_overflow",
                 "transport", "writer")

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        high_water: int,
        max_unsent: int | None = None,
        on_overflow: Callable[[int], None] | None = None,
    ) -> None:
        self.writer = writer
        self.transport = writer.transport
        self.high_water = high_water
        self.on_overflow = on_overflow
        """Called with the unsent byte count when it exceeds ``max_unsent``."""
        self._max_unsent = sys.maxsize if max_unsent is None or on_overflow is None else max_unsent
        self.transport.set_write_buffer_limits(high=high_water)
        self.loop = asyncio.get_running_loop()
        """The event loop the writer runs on."""
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._corked = False

    def write(self, frame: bytes, more: bool = True) -> None:
        """Queue ``frame`` for the socket (dropped if the transport is closing).

        ``more=False`` says no other frame is expected soon (e.g. one request in flight):
        the frame is then written at once without holding back the ones that follow.
        """
        if self._corked:
            self._held.append(frame)
            self._held_bytes += len(frame)
            if len(self._held) >= MAX_BATCH or self._held_bytes >= MAX_BATCH_BYTES:
                self._write_held()
        elif not self.transport.is_closing():
            transport = self.transport
            transport.write(frame)
            if transport.get_write_buffer_size() > self._max_unsent:
                self._overflow()
            elif more:
                self._corked = True
                self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Hand every held frame to the transport now."""
        self._corked = False
        if self._held:
            self._write_held()

    def _write_held(self) -> None:
        held = self._held
        self._held = []
        self._held_bytes = 0
        if not self.transport.is_closing():
            # One write() of the joined frames, not writelines(): asyncio's writelines()
            # (Python 3.12 and 3.13) never pauses the protocol at the high-water mark, so
            # drain() would return at once and a congested writer would spin. On 3.11
            # writelines() joins and calls write() the same way.
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))
            if self.transport.get_write_buffer_size() > self._max_unsent:
                self._overflow()

    def _overflow(self) -> None:
        unsent = self.transport.get_write_buffer_size()
        self._max_unsent = sys.maxsize  # once
        self._held = []
        self._held_bytes = 0
        if self.on_overflow is not None:
            self.on_overflow(unsent)

    @property
    def unsent(self) -> int:
        """Bytes written and not yet sent (held here or in the transport)."""
        return self._held_bytes + self.transport.get_write_buffer_size()

    @property
    def congested(self) -> bool:
        """Whether more than ``high_water`` bytes wait to be sent."""
        return self._held_bytes + self.transport.get_write_buffer_size() > self.high_water

    async def drain(self) -> None:
        """Flush, then wait while the transport holds more than ``high_water`` bytes.

        Raises:
            ConnectionError: the connection was lost.
        """
        self.flush()
        await self.writer.drain()
