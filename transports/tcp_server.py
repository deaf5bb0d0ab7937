"""The server side of ``tcp://``: :class:`TcpListener` and its per-connection reader.

Each connection is read by one task: it reads a header, checks it (refusing a bad magic,
an unknown wire version or an oversized body before reading the body, and closing the
connection, whose next frame cannot be found), reads exactly the body, and hands the frame
to the listener's :class:`~nanomsg_kernel.transports.server_core.ServerCore`, which does the
rest as on every transport. A request whose handler does not wait is answered in the
reader's step, its reply held until the step ends (one write for every request read in it);
one that waits continues in a task. So requests of one connection run concurrently. Replies
are written as they finish, in any order, each carrying its request's correlation id. When
``max_in_flight`` requests of a connection are running, the frames read after them wait
for a place (up to 4096 frames and 256 KiB), and beyond that the reader stops
reading until one finishes: the peer is slowed down by TCP flow control, nothing is
dropped. A ``CANCEL`` from the peer cancels its request's handler and frees its place (or
drops the request, if it was still waiting): reading goes on past waiting requests so that
the ``CANCEL`` behind them is seen.

Timeouts are enforced by one sweeper task per listener rather than a timer per read: a
connection that started a frame (or has replies the peer does not read) and makes no
progress for ``read_timeout`` seconds is aborted; one with nothing in flight that sends
nothing for ``idle_timeout`` seconds is closed. A connection whose unsent replies exceed
``max_unsent`` bytes (a peer that sends requests but does not read the replies) is aborted
at once.

Admission (:class:`~nanomsg_kernel.transports.admission.ConnectionGate`): a connection counts from the
moment it is accepted, its TLS handshake included, until it is closed, against the
listener's ``max_connections`` and the process's descriptor budget
(:mod:`nanomsg_kernel.fdbudget`); one beyond either is closed at once, before the next
connection is accepted (:class:`~nanomsg_kernel.transports.acceptor.Acceptor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as _ssl
from typing import Any

from nanomsg_kernel.errors import ConfigError
from nanomsg_kernel.fdbudget import DescriptorBudget
from nanomsg_kernel.frame import (
    DEFAULT_MAX_BODY,
    HEADER_SIZE,
    HEADER_STRUCT,
    MAGIC,
    MAX_U32,
    WIRE_VERSION,
    Refusal,
    refusal,
)
from nanomsg_kernel.peer import Allow, Peer, check_allow, peer_from_certificate
from nanomsg_kernel.ratelimit import rate_limited
from nanomsg_kernel.transports.acceptor import Acceptor, listening_sockets
from nanomsg_kernel.transports.admission import ConnectionGate
from nanomsg_kernel.transports.base import FrameHandler, Listener
from nanomsg_kernel.transports.server_core import Caller, ServerCore
from nanomsg_kernel.transports.tcp_stream import FrameWriter, format_address, parse_address, unsent_limit
from nanomsg_kernel.transports.tcp_tls import Handshakes, held_protocol
from nanomsg_kernel.transports.waiting import Waiting

__all__ = ["TcpListener"]

log = logging.getLogger("nanomsg_kernel.transports.tcp")
peer_log = rate_limited(log)
"""For what a peer can cause: one line per interval and kind, with a count."""

_unpack_header = HEADER_STRUCT.unpack_from
# What a connection's reader is doing, for the sweeper.
_IDLE, _FRAME, _WRITING, _BUSY, _DONE = range(5)
_READ_BUFFER = 256 * 1024
"""The stream reader's buffer limit: reading pauses when twice this much is unread."""
_CLOSE_LINGER = 1.0
"""Seconds a closing connection may take to flush its last replies before it is aborted."""


def _positive(name: str, value: float | None, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{name} must be a positive number{' or None' if optional else ''}, got {value!r}")


def _address(peername: Any) -> str | None:
    """``host:port`` (``[host]:port`` for IPv6) of a socket's peer name."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return None if peername is None else str(peername)


class _Peer(Caller):
    """One accepted connection: its reader loop and write side (its calls: the core's)."""

    __slots__ = ("core", "listener", "loop", "name", "out", "phase", "reader", "since", "slot", "task", "waiting",
                 "writer")

    def __init__(self, listener: TcpListener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self.listener = listener
        assert listener.core is not None
        self.core: ServerCore = listener.core
        self.reader = reader
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.out = FrameWriter(writer, listener.write_high_water, listener.max_unsent, self._overflow)
        self.slot: asyncio.Future[None] | None = None
        self.waiting = Waiting()
        """Frames read while ``max_in_flight`` calls ran, waiting for a place."""
        self.phase = _IDLE
        self.since = self.loop.time()
        self.task: asyncio.Task[None] | None = None
        self.name = str(writer.get_extra_info("peername"))

    async def run(self) -> None:
        """Serve the connection until the peer leaves, misbehaves or the listener closes."""
        self.task = asyncio.current_task()
        lost = False
        try:
            await self._read_frames()
        except asyncio.CancelledError:
            if not self.listener.closing:  # not a shutdown: the task itself is being cancelled
                self.abort()
                self.listener.peers.discard(self)
                raise
        except asyncio.IncompleteReadError as exc:  # the peer stopped sending: still answer it
            if exc.partial:
                log.debug("%s: connection closed in the middle of a frame", self.name)
        except OSError as exc:  # reset, aborted by the sweeper, TLS failure
            lost = True
            log.debug("%s: connection lost: %s", self.name, exc)
        finally:
            self.phase = _DONE
        await self._finish(lost)

    async def _read_frames(self) -> None:
        listener = self.listener
        reader, out, loop = self.reader, self.out, self.loop
        max_body, max_in_flight = listener.max_body_size, listener.max_in_flight
        read = reader.read
        readexactly = reader.readexactly
        offer = self.core.offer
        waiting = self.waiting
        while True:
            if waiting.full:
                self.phase = _BUSY
                self.slot = loop.create_future()
                await self.slot
                self.slot = None
            if out.congested:
                self.phase = _WRITING
                self.since = loop.time()
                await out.drain()
            self.phase = _IDLE
            self.since = loop.time()
            header = await read(HEADER_SIZE)
            if not header:
                return
            self.phase = _FRAME
            self.since = loop.time()
            if len(header) < HEADER_SIZE:
                header += await readexactly(HEADER_SIZE - len(header))
            magic, wire, _kind, _route, _cver, _flags, _cid, _tmo, length = _unpack_header(header)
            if magic != MAGIC or wire != WIRE_VERSION or length > max_body:
                why = refusal(header, max_body, whole=False)
                if why is not None and why.closes:
                    self._refuse(header, why)
                    return
            # With no place for it now, a frame waits (reading goes on, so that a CANCEL
            # behind it is still read) and starts when a call ends.
            reply = offer(header + await readexactly(length) if length else header, self, waiting,
                          self.in_flight < max_in_flight)
            if reply is not None:
                out.write(reply)  # held until this step ends, with the replies read after it

    def describe(self) -> Peer:
        """The connection's address and, over TLS, its client certificate's names."""
        writer = self.writer
        address = _address(writer.get_extra_info("peername"))
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is None:
            return Peer("tcp", address)
        return peer_from_certificate(ssl_object.getpeercert(), address)

    def finished(self, request: bytes, reply: bytes | None) -> None:
        """A call that continued in a task ended: write its reply, make room for the reader."""
        if reply is not None:
            self.out.write(reply, self.in_flight > 0)
        waiting = self.waiting
        if waiting:
            core = self.core
            if core.cancelling:
                waiting.clear()
            max_in_flight = self.listener.max_in_flight
            while waiting and self.in_flight < max_in_flight:
                started = core.resume(waiting.pop()[0], self)
                if started is not None:
                    self.out.write(started)
        slot = self.slot
        if slot is not None and not slot.done():
            slot.set_result(None)
        elif not self.in_flight and self.phase == _IDLE:
            self.since = self.loop.time()

    def _refuse(self, header: bytes, why: Refusal) -> None:
        peer_log.warning("%s: refused a frame (%s); closing the connection", self.name, why.message)
        reply = self.core.refuse(header, why, logged=False)
        if reply is not None:
            self.out.write(reply)

    def check(self, now: float) -> None:
        """Close the connection if it broke the idle or read timeout (called by the sweeper)."""
        listener, phase = self.listener, self.phase
        if phase == _IDLE:
            idle = listener.idle_timeout
            if idle is not None and not self.in_flight and now - self.since > idle:
                peer_log.info("%s: idle for %.1fs, closing", self.name, now - self.since)
                self.writer.transport.close()
        elif phase in (_FRAME, _WRITING):
            limit = listener.read_timeout
            if limit is not None and now - self.since > limit:
                what = "a partial frame" if phase == _FRAME else "unread replies"
                peer_log.warning("%s: no progress on %s for %.1fs, dropping", self.name, what, now - self.since)
                self.writer.transport.abort()

    def _overflow(self, unsent: int) -> None:
        """The peer left more than ``max_unsent`` bytes of replies unread: drop it."""
        listener = self.listener
        listener.dropped_slow_readers += 1
        peer_log.warning("%s: %d bytes of replies unread exceed max_unsent (%d), dropping",
                         self.name, unsent, listener.max_unsent)
        self.abort()

    def stop_reading(self) -> None:
        """Stop reading new frames (shutdown); requests in flight go on."""
        if self.phase != _DONE and self.task is not None:
            self.task.cancel()

    def cancel_requests(self) -> None:
        """Cancel the requests in flight (their replies are not sent) and forget those
        waiting for a place."""
        self.waiting.clear()
        self.core.cancel_calls(self)

    def abort(self) -> None:
        """Cancel the requests in flight and drop the connection."""
        self.cancel_requests()
        self.writer.transport.abort()

    async def _finish(self, lost: bool) -> None:
        """Let requests in flight finish (unless the connection is lost), flush, close."""
        try:
            if lost or self.writer.transport.is_closing():
                self.cancel_requests()
            await self.core.wait_calls(self)
            self.out.flush()
            self.writer.close()
            try:
                async with asyncio.timeout(_CLOSE_LINGER):
                    await self.writer.wait_closed()
            except TimeoutError:
                self.writer.transport.abort()
            except OSError:
                pass
        finally:
            self.listener.peers.discard(self)


class TcpListener(Listener):
    """Serves a :data:`~nanomsg_kernel.transports.base.FrameHandler` on ``tcp://host:port``.

    Args:
        url: ``tcp://host:port`` (port 0: any free port; :attr:`url` then has the real one).
        handler: called with every frame received; its reply frame is sent back.
        ssl: a server-side :class:`ssl.SSLContext` to serve TLS.
        max_in_flight: requests of one connection handled at once; beyond it the
            connection is not read until one finishes (backpressure, never loss).
        max_connections: connections held at once, those in a TLS handshake included;
            further ones are closed on accept. Default: the listener's share of the
            process's descriptors (:func:`~nanomsg_kernel.fdbudget.listener_share`: 1024,
            or half of what ``RLIMIT_NOFILE`` leaves after a reserve, if that is less).
        max_body_size: largest frame body accepted; a larger one is answered with
            ``RESOURCE_EXHAUSTED`` and its connection closed, before it is read.
        read_timeout: seconds a connection may take to complete a frame it started (or to
            take replies it has left unread) before it is dropped; also the TLS handshake
            limit. ``None``: no limit.
        idle_timeout: seconds a connection with nothing in flight may stay silent before it
            is closed. ``None``: no limit.
        grace: default seconds :meth:`close` lets requests in flight finish.
        backlog: the listening socket's accept queue length.
        write_high_water: bytes of unsent replies above which a connection is not read.
        max_unsent: bytes of unsent replies above which a connection is dropped (its peer
            sends requests but does not read the replies). Default: 64 MiB, or twice the
            largest frame if that is more; at least the largest frame.
        descriptor_budget: the descriptors connections take one each of (default: the
            process's, shared with every other listener; :mod:`nanomsg_kernel.fdbudget`).
        allow: the identities that may call (:class:`~nanomsg_kernel.peer.Allow`: TLS
            client certificate names); anyone else is answered ``PERMISSION_DENIED`` and no
            handler runs. Needs ``ssl`` with a context that asks for client certificates.
    """

    def __init__(
        self,
        url: str,
        handler: FrameHandler,
        *,
        ssl: _ssl.SSLContext | None = None,
        max_in_flight: int = 128,
        max_connections: int | None = None,
        max_body_size: int = DEFAULT_MAX_BODY,
        read_timeout: float | None = 30.0,
        idle_timeout: float | None = 300.0,
        grace: float = 5.0,
        backlog: int = 128,
        write_high_water: int = 256 * 1024,
        max_unsent: int | None = None,
        descriptor_budget: DescriptorBudget | None = None,
        allow: Allow | None = None,
    ) -> None:
        scheme, self.host, self.port = parse_address(url)
        check_allow(allow, url)
        if allow is not None and (ssl is None or ssl.verify_mode == _ssl.CERT_NONE):
            raise ConfigError(f"{url}: allow needs TLS with client certificates (an ssl context whose "
                              "verify_mode asks for them): without one no caller can prove an identity")
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise ConfigError(f"ssl must be an ssl.SSLContext, got {type(ssl).__name__}")
        for name, count in (("max_in_flight", max_in_flight), ("backlog", backlog),
                            ("write_high_water", write_high_water)):
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ConfigError(f"{name} must be a positive int, got {count!r}")
        if not isinstance(max_body_size, int) or not 0 < max_body_size <= MAX_U32:
            raise ConfigError(f"max_body_size must be 1 to {MAX_U32}, got {max_body_size!r}")
        max_unsent = unsent_limit(max_unsent, max_body_size)
        self.gate = ConnectionGate(max_connections, descriptor_budget)
        """Admits connections: at most ``max_connections``, each taking a descriptor."""
        _positive("read_timeout", read_timeout)
        _positive("idle_timeout", idle_timeout)
        if not isinstance(grace, (int, float)) or grace < 0:
            raise ConfigError(f"grace must be a number >= 0, got {grace!r}")
        self.scheme = scheme
        self.url = url
        """The address served: ``tcp://host:port``, with the real port once started."""
        self.handler = handler
        self.allow = allow
        self.core: ServerCore | None = None
        """What serves the frames of every connection (made when the listener starts)."""
        self.ssl = ssl
        self.max_in_flight = max_in_flight
        self.max_body_size = max_body_size
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.grace = float(grace)
        self.backlog = backlog
        self.write_high_water = write_high_water
        self.max_unsent = max_unsent
        self.peers: set[_Peer] = set()
        """The connections being served (those past their TLS handshake)."""
        self.dropped_slow_readers = 0
        """Connections dropped because their unsent replies exceeded ``max_unsent``."""
        self.closing = False
        self._handshakes: Handshakes | None = None
        self._acceptor: Acceptor | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<TcpListener {self.url} connections={self.gate.open}>"

    @property
    def max_connections(self) -> int:
        """Connections held at once, at most (TLS handshakes included)."""
        return self.gate.max_connections

    @property
    def open_connections(self) -> int:
        """Connections held now: being served or in their TLS handshake."""
        return self.gate.open

    @property
    def refused_connections(self) -> int:
        """Connections closed on accept: ``max_connections`` were open, or the process had
        no descriptor left for them."""
        return self.gate.refused

    async def start(self) -> None:
        """Bind and start accepting connections; :attr:`url` gets the bound port."""
        if self._acceptor is not None:
            raise ConfigError(f"{self.url} is already started")
        try:
            # TLS starts in _accept, once the connection is admitted (asyncio's own TLS server
            # would hold handshakes in progress outside any count).
            sockets = await listening_sockets(self.host, self.port, self.backlog)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.url}: {exc}") from exc
        self.url = format_address(self.scheme, self.host, int(sockets[0].getsockname()[1]))
        acceptor = self._acceptor = Acceptor(
            sockets, self.gate, self._accept, limit=_READ_BUFFER, refuse=self._refuse, name=self.url,
            protocol=asyncio.StreamReaderProtocol if self.ssl is None else held_protocol,
        )
        self.core = ServerCore(self.handler, name=self.url, max_body_size=self.max_body_size, allow=self.allow)
        self.closing = False
        if self.ssl is not None:
            self._handshakes = Handshakes(self.ssl, self.read_timeout, self.url)
        limits = [t for t in (self.read_timeout, self.idle_timeout) if t is not None]
        if limits:
            tick = min(1.0, max(0.01, min(limits) / 4))
            self._sweeper = asyncio.create_task(self._sweep(tick), name=f"{self.url} sweeper")
        acceptor.start()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.closing:
            writer.close()
            return
        if self._handshakes is not None and not await self._handshakes.run(writer):
            return
        peer = _Peer(self, reader, writer)
        self.peers.add(peer)
        await peer.run()

    def _refuse(self, conn: socket.socket) -> None:
        gate = self.gate
        with contextlib.suppress(OSError):
            peer_log.warning("%s: refusing a connection from %s (%d open, the maximum is %d; %d descriptors "
                             "of %d held by this process's listeners)", self.url, conn.getpeername(),
                             gate.open, gate.max_connections, gate.budget.held, gate.budget.capacity)

    async def _sweep(self, tick: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for peer in list(self.peers):
                peer.check(now)

    async def close(self, grace: float | None = None) -> None:
        """Stop accepting and reading; let requests in flight finish within ``grace``
        seconds (default: the listener's ``grace``), send their replies, then close."""
        acceptor = self._acceptor
        if acceptor is None:
            return
        self._acceptor = None
        grace = self.grace if grace is None else grace
        self.closing = True
        await acceptor.close()
        if self._handshakes is not None:
            await self._handshakes.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        peers = list(self.peers)
        for peer in peers:
            peer.stop_reading()
        if self.core is not None:
            await self.core.close(grace)  # the calls in flight end, or are cancelled after grace
        runs = {p.task: p for p in peers if p.task is not None}
        if runs:  # each connection flushes its last replies and closes
            _done, late = await asyncio.wait(runs, timeout=2 * _CLOSE_LINGER)
            for task in late:
                runs[task].abort()
            if late:
                await asyncio.wait(late)
        setting_up = acceptor.connections - runs.keys()
        if setting_up:  # connections accepted just before: they see the listener closing and close
            await asyncio.wait(setting_up)
