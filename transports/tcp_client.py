"""The client side of ``tcp://``: :class:`TcpConnection`, one persistent multiplexed connection.

Any number of tasks may call :meth:`TcpConnection.request` at once: each frame is written
as it comes (frames of one loop iteration in a single socket write), one reader task reads
the replies and hands each to the request with the same correlation id. When the connection
drops, every request waiting on it fails with ``Unavailable`` at once.

Reconnection is lazy: the next request after a drop connects again. A connect attempt that
fails starts a back-off window (doubling from ``backoff[0]`` up to ``backoff[1]`` seconds,
with jitter) during which requests fail fast with ``Unavailable`` instead of hammering the
address; the first request after the window tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl as _ssl

from nanomsg_kernel.errors import (
    ConfigError,
    DeadlineExceeded,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    Unavailable,
)
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, HEADER_SIZE, MAX_U32, cancel_frame
from nanomsg_kernel.ratelimit import rate_limited
from nanomsg_kernel.transports.base import Connection, PendingReplies
from nanomsg_kernel.transports.tcp_stream import FrameWriter, check_header, parse_address

__all__ = ["TcpConnection"]

log = logging.getLogger("nanomsg_kernel.transports.tcp")
peer_log = rate_limited(log)
"""For what the server can cause: one line per interval and kind, with a count."""
_READ_BUFFER = 256 * 1024
"""The stream reader's buffer limit: reading pauses when twice this much is unread."""


class TcpConnection(Connection):
    """A client connection to a :class:`~nanomsg_kernel.transports.tcp_server.TcpListener`.

    Args:
        url: ``tcp://host:port``.
        ssl: a client-side :class:`ssl.SSLContext` to speak TLS (e.g.
            ``ssl.create_default_context()``, or one trusting the server's own CA).
        server_hostname: the name the server's certificate is checked against (default:
            the URL's host).
        connect_timeout: seconds one connect attempt (TCP and TLS handshake) may take.
        max_body_size: largest frame body sent or accepted; a larger reply closes the
            connection (every waiting request fails with ``Unavailable``).
        reconnect: connect again on the next request after the connection drops.
        backoff: ``(first, longest)`` delay in seconds before a new attempt after a
            failed one; the delay doubles after each failure.
        write_high_water: bytes of unsent requests above which callers wait (backpressure).
    """

    def __init__(
        self,
        url: str,
        *,
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float = 5.0,
        max_body_size: int = DEFAULT_MAX_BODY,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.05, 2.0),
        write_high_water: int = 256 * 1024,
    ) -> None:
        _scheme, host, self.port = parse_address(url)
        if host is None:
            raise ConfigError(f"bad TCP URL {url!r}: a client needs a host, not '*'")
        self.host = host
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise ConfigError(f"ssl must be an ssl.SSLContext, got {type(ssl).__name__}")
        if not isinstance(connect_timeout, (int, float)) or not connect_timeout > 0:
            raise ConfigError(f"connect_timeout must be a positive number, got {connect_timeout!r}")
        if not isinstance(max_body_size, int) or not 0 < max_body_size <= MAX_U32:
            raise ConfigError(f"max_body_size must be 1 to {MAX_U32}, got {max_body_size!r}")
        if not isinstance(write_high_water, int) or isinstance(write_high_water, bool) or write_high_water < 1:
            raise ConfigError(f"write_high_water must be a positive int, got {write_high_water!r}")
        try:
            first, longest = (float(b) for b in backoff)
        except (TypeError, ValueError):
            raise ConfigError(f"backoff must be (first, longest) seconds, got {backoff!r}") from None
        if not 0 <= first <= longest:
            raise ConfigError(f"backoff must be (first, longest) with 0 <= first <= longest, got {backoff!r}")
        self.url = url
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.connect_timeout = float(connect_timeout)
        self.max_body_size = max_body_size
        self.reconnect = reconnect
        self.backoff = (first, longest)
        self.write_high_water = write_high_water
        self.pending = PendingReplies()
        """Requests waiting for their reply, by correlation id."""
        self.connects = 0
        """Connections established so far (1 + the reconnections)."""
        self._writer: asyncio.StreamWriter | None = None
        self._out: FrameWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[FrameWriter] | None = None
        self._closed = False
        self._delay = 0.0
        self._retry_at = 0.0
        self._last_error = ""

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._out is not None else "not connected"
        return f"<TcpConnection {self.url} {state}, {len(self.pending)} waiting>"

    @property
    def connected(self) -> bool:
        """Whether a connection is established right now."""
        return self._out is not None

    # -- connecting ----------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect now unless connected (``Unavailable`` if the server cannot be reached)."""
        if self._out is None:
            await self._ensure()

    async def _ensure(self) -> FrameWriter:
        if self._closed:
            raise Unavailable(f"{self.url}: connection closed")
        if self._out is not None:
            return self._out
        task = self._connecting
        if task is None:
            if not self.reconnect and self.connects:
                raise Unavailable(f"{self.url}: connection lost ({self._last_error}); reconnect is off")
            loop = asyncio.get_running_loop()
            wait = self._retry_at - loop.time()
            if wait > 0:
                raise Unavailable(f"{self.url}: not connected ({self._last_error}); next attempt in {wait:.2f}s")
            task = self._connecting = loop.create_task(self._open(), name=f"connect {self.url}")
            task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _open(self) -> FrameWriter:
        loop = asyncio.get_running_loop()
        try:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    reader, writer = await asyncio.open_connection(
                        self.host, self.port, ssl=self.ssl,
                        server_hostname=self.server_hostname if self.ssl is not None else None,
                        limit=_READ_BUFFER,
                    )
            except TimeoutError:
                raise Unavailable(f"{self.url}: connect timed out after {self.connect_timeout:g}s") from None
            except OSError as exc:  # refused, unreachable, TLS failure (ssl.SSLError is an OSError)
                raise Unavailable(f"{self.url}: cannot connect: {exc}") from exc
        except Unavailable as exc:
            first, longest = self.backoff
            self._delay = min(longest, max(first, self._delay * 2))
            self._retry_at = loop.time() + self._delay * random.uniform(0.5, 1.0)
            self._last_error = exc.message
            raise
        finally:
            self._connecting = None
        if self._closed:
            writer.close()
            raise Unavailable(f"{self.url}: connection closed")
        self._delay = 0.0
        self._retry_at = 0.0
        self.connects += 1
        self._writer = writer
        out = self._out = FrameWriter(writer, self.write_high_water)
        self._reader_task = loop.create_task(self._read_replies(reader, writer), name=f"replies {self.url}")
        return out

    async def _read_replies(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        max_body, resolve = self.max_body_size, self.pending.resolve
        readexactly = reader.readexactly
        reason = "connection closed by the server"
        try:
            while True:
                header = await readexactly(HEADER_SIZE)
                try:
                    length = check_header(header, max_body)[2]
                except DecodeError as exc:
                    reason = f"bad frame from the server: {exc}"
                    peer_log.warning("%s: %s; closing the connection", self.url, reason)
                    return
                resolve(header + await readexactly(length) if length else header)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                reason = "connection closed by the server in the middle of a frame"
        except OSError as exc:
            reason = f"connection lost: {exc}"
        finally:
            self._drop(writer, reason)

    def _drop(self, writer: asyncio.StreamWriter, reason: str) -> None:
        """Forget ``writer``'s connection and fail every request waiting on it."""
        if self._writer is writer:
            self._writer = None
            self._out = None
            self._last_error = reason
            self.pending.fail_all(Unavailable(f"{self.url}: {reason}"))
        writer.close()

    # -- requests ------------------------------------------------------------------------

    def _check(self, frame: bytes) -> int:
        """The frame's correlation id, after checking that the frame is whole and within
        the size limit (a bad frame would corrupt the stream every request shares)."""
        body = len(frame) - HEADER_SIZE
        if body < 0:
            raise EncodeError(f"not a frame: {len(frame)} bytes, shorter than a header")
        try:
            _kind, cid, length = check_header(frame, self.max_body_size)
        except FrameTooLarge:
            raise EncodeError(f"frame body of {body} bytes exceeds {self.max_body_size}") from None
        except DecodeError as exc:
            raise EncodeError(f"not a valid frame: {exc}") from None
        if length != body:
            raise EncodeError(f"the header declares a body of {length} bytes, the frame holds {body}")
        return cid

    async def _writable(self, timeout: float | None) -> tuple[FrameWriter, float | None]:
        """The connection's writer, connecting and waiting out backpressure first;
        returns it with what is left of ``timeout``."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            async with asyncio.timeout(timeout):
                out = await self._ensure()
                while out.congested:
                    try:
                        await out.drain()
                    except OSError as exc:
                        raise Unavailable(f"{self.url}: connection lost: {exc}") from exc
                    out = await self._ensure()
        except TimeoutError:
            raise DeadlineExceeded(
                f"{self.url}: could not send within {timeout:.3f}s (connecting, or waiting for the "
                "connection to drain)") from None
        return out, None if timeout is None else max(0.0, timeout - (loop.time() - start))

    async def request(self, frame: bytes, timeout: float | None = None) -> bytes:
        """Send a request frame; return the reply frame with the same correlation id.

        Connects first if needed (within ``timeout``).

        Raises:
            DeadlineExceeded: no reply within ``timeout`` seconds.
            Unavailable: the server cannot be reached, or the connection dropped before the
                reply arrived.
            EncodeError: the frame is malformed or its body exceeds ``max_body_size``.
        """
        cid = self._check(frame)
        out = self._out
        if out is None or out.congested:
            out, timeout = await self._writable(timeout)
            if out is not self._out:  # dropped while this task waited (e.g. closed after TLS)
                raise Unavailable(f"{self.url}: {self._last_error}")
        pending = self.pending
        fut = pending.expect(cid, out.loop)
        out.write(frame, len(pending) > 1)
        try:  # pending.wait(cid, fut, timeout), one coroutine less per request
            if timeout is None:
                return await fut
            bucket = pending.arm(fut, timeout)  # a deadline timer shared with other calls
            try:
                return await fut
            finally:
                del bucket[fut]
        finally:
            pending.discard(cid)

    def cancel(self, correlation_id: int) -> None:
        """Send ``CANCEL`` for a request whose caller gave up (dropped when not connected:
        the request's connection is gone, and the server cancelled its handler then)."""
        out = self._out
        if out is not None:
            out.write(cancel_frame(correlation_id))

    async def send(self, frame: bytes) -> None:
        """Send a frame that gets no reply (connecting first if needed)."""
        self._check(frame)
        out, _ = await self._writable(None)
        out.write(frame)

    async def close(self) -> None:
        """Close; requests still waiting fail with ``Unavailable``. Frames already written
        are flushed to the socket first."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Unavailable):
                await self._connecting
        writer, task = self._writer, self._reader_task
        if self._out is not None:
            self._out.flush()
        if writer is not None:
            self._drop(writer, "connection closed")
        self.pending.fail_all(Unavailable(f"{self.url}: connection closed"))
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._reader_task = None
        if writer is not None:
            try:
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
            except TimeoutError:
                writer.transport.abort()
            except OSError:
                pass


def _retrieve(task: asyncio.Task[FrameWriter]) -> None:
    """Mark a connect attempt's failure as seen even when every caller stopped waiting."""
    if not task.cancelled():
        task.exception()
