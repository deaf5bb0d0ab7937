"""TLS for the TCP listener, started only once a connection is admitted.

asyncio's own TLS server (``start_server(ssl=...)``) runs each handshake before the
listener hears of the connection, so handshakes in progress would hold descriptors outside
any count, for as long as the handshake timeout. Here the listener accepts plain TCP,
admits the connection (counting it), and only then upgrades it:

* :func:`held_protocol` — the stream protocol of a connection to be upgraded: the bytes
  it sends before :func:`handshake` are kept for the handshake rather than read into the
  stream (asyncio's loop does not read them; uvloop reads a new connection at once);
* :func:`handshake` — upgrade an admitted connection to TLS within a timeout;
* :class:`Handshakes` — a listener's handshakes in progress, dropped when it closes.

A TLS client sends its first message and then waits for the server's answer, so the bytes
kept before the upgrade are the whole of what was sent: they are handed to the TLS
protocol first, and a peer that sends more than :data:`MAX_EARLY_BYTES` before its
handshake starts is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from collections.abc import Callable
from typing import Any, cast

__all__ = ["MAX_EARLY_BYTES", "Handshakes", "handshake", "held_protocol"]

log = logging.getLogger("nanomsg_kernel.transports.tcp")

MAX_EARLY_BYTES = 64 * 1024
"""The most bytes kept for a connection before its handshake starts (a TLS ClientHello is
far smaller)."""

Connected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]


class _HeldProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol that keeps what arrives before :func:`handshake` out of the stream."""

    def __init__(self, reader: asyncio.StreamReader, connected: Connected) -> None:
        super().__init__(reader, connected)
        self.early: bytearray | None = bytearray()
        """Bytes received before the handshake started (``None`` once it has)."""
        self._plain: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Ask the transport not to read yet, then set up the streams as usual."""
        self._plain = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._plain.pause_reading()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        """Before the handshake: keep ``data`` for it. After: the clear text, to the stream."""
        early = self.early
        if early is None:
            super().data_received(data)
            return
        early += data
        if len(early) > MAX_EARLY_BYTES and self._plain is not None:
            self._plain.abort()

    def eof_received(self) -> bool:
        """Before the handshake: the peer gave up; close. After: as a stream does."""
        if self.early is not None:
            return False
        return bool(super().eof_received())

    def take_early(self) -> bytes:
        """The bytes kept so far; later ones go to the TLS protocol."""
        early = bytes(self.early or b"")
        self.early = None
        return early


def held_protocol(reader: asyncio.StreamReader, connected: Connected) -> asyncio.StreamReaderProtocol:
    """The stream protocol of a server connection that :func:`handshake` will upgrade (its
    ``connection_made`` calls ``connected(reader, writer)``): what the connection sends before
    the handshake is kept for it rather than read into ``reader``."""
    return _HeldProtocol(reader, connected)


def _feed(transport: asyncio.BaseTransport, data: bytes) -> None:
    """Hand ``data`` to the transport's (TLS) protocol as if just received."""
    if transport.is_closing():
        return
    protocol = transport.get_protocol()
    if not isinstance(protocol, asyncio.BufferedProtocol) and not hasattr(protocol, "get_buffer"):
        cast(asyncio.Protocol, protocol).data_received(data)
        return
    buffered = cast(asyncio.BufferedProtocol, protocol)
    view = memoryview(data)
    while view:
        buf = memoryview(buffered.get_buffer(len(view)))
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        buffered.buffer_updated(n)
        view = view[n:]


async def handshake(writer: asyncio.StreamWriter, context: _ssl.SSLContext, timeout: float | None) -> None:
    """Upgrade the server side of ``writer``'s connection to TLS within ``timeout`` seconds
    (``None``: asyncio's default, 60 s). ``writer`` and its reader then carry the clear text.

    Raises:
        OSError: the handshake failed (:class:`ssl.SSLError`), timed out or the connection
            was lost; the connection is then aborted.
    """
    transport = writer.transport
    protocol = transport.get_protocol()
    early = protocol.take_early() if isinstance(protocol, _HeldProtocol) else b""
    if transport.is_closing():
        raise ConnectionResetError("the connection closed before the TLS handshake")
    if early:
        # start_tls (below, before it first waits) schedules the TLS protocol's
        # connection_made; the kept bytes reach that protocol in the step after it.
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, _feed, transport, early)
    try:
        await writer.start_tls(context, ssl_handshake_timeout=timeout)
    except BaseException:
        transport.abort()
        raise


class Handshakes:
    """The TLS handshakes in progress of one listener.

    Args:
        context: the server's :class:`ssl.SSLContext`.
        timeout: seconds a handshake may take (``None``: asyncio's default, 60 s).
        name: the listener, for the log.
    """

    __slots__ = ("closed", "context", "name", "running", "timeout")

    def __init__(self, context: _ssl.SSLContext, timeout: float | None, name: str) -> None:
        self.context = context
        self.timeout = timeout
        self.name = name
        self.running: set[asyncio.Task[Any]] = set()
        """The tasks whose connection is in its handshake."""
        self.closed = False

    async def run(self, writer: asyncio.StreamWriter) -> bool:
        """Upgrade ``writer``'s connection; ``False`` (the connection aborted) if the
        handshake failed, timed out or the listener closed meanwhile."""
        task = asyncio.current_task()
        assert task is not None
        self.running.add(task)
        try:
            await handshake(writer, self.context, self.timeout)
        except OSError as exc:  # ssl.SSLError, reset, the handshake timeout
            log.debug("%s: TLS handshake with %s failed: %s", self.name, writer.get_extra_info("peername"), exc)
            return False
        except asyncio.CancelledError:
            if not self.closed:
                raise
            return False
        finally:
            self.running.discard(task)
        if self.closed:  # finished as the listener closed: not served
            writer.transport.abort()
            return False
        return True

    async def close(self) -> None:
        """Drop every handshake in progress (and refuse to finish any later)."""
        self.closed = True
        running = set(self.running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)
