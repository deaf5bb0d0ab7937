"""Listening sockets whose connections are admitted one at a time, before any transport exists.

An event loop's own server accepts connections in bursts and sets each one up before the
listener hears of it: asyncio accepts up to ``backlog`` connections per wake-up and makes a
transport and a task for each, libuv (uvloop) accepts until the queue is empty. Under a
flood of connections those sockets hold descriptors outside any count, a burst can be
larger than the descriptors the process keeps in reserve
(:func:`~nanomsg_kernel.fdbudget.descriptor_reserve`), and then ``accept()``, ``socket()``
and ``open()`` fail with ``EMFILE`` everywhere in the process.

:class:`Acceptor` accepts itself, one connection at a time: each is admitted by the
listener's :class:`~nanomsg_kernel.transports.admission.ConnectionGate` as soon as it is
accepted, and a refused one is closed there and then, before the next ``accept()``. So the
process holds at most one descriptor beyond what its gates count. An admitted connection
gets ``TCP_NODELAY``, a stream reader and writer, and is served in its own task; its place
in the gate is given back when that task ends. After :data:`ACCEPT_BURST` connections in a row the loop
lets other work run, so a flood does not starve the listener's connections.

If ``accept()`` fails (``EMFILE``, ``ENFILE``, ``ENOBUFS`` or ``ENOMEM`` when something else
in the process holds the descriptors, logged as a warning; anything else as an error), the
acceptor logs it (rate-limited), waits :data:`RETRY_SECONDS` and accepts again; a
connection reset before it was accepted is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable

from nanomsg_kernel.ratelimit import rate_limited
from nanomsg_kernel.transports.admission import ConnectionGate

__all__ = ["ACCEPT_BURST", "RETRY_SECONDS", "Acceptor", "listening_sockets"]

_log = logging.getLogger("nanomsg_kernel.transports.accept")
log = rate_limited(_log)

ACCEPT_BURST = 16
"""Connections accepted in a row before other work gets a turn."""
RETRY_SECONDS = 1.0
"""The pause after ``accept()`` failed for lack of resources."""
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

Connected = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
"""Serves one admitted connection; the connection's place is given back when it returns."""
ProtocolFactory = Callable[
    [asyncio.StreamReader, Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]], asyncio.StreamReaderProtocol
]
"""Makes the stream protocol of a new connection from its reader and a plain function that
``connection_made`` calls with the reader and the writer (as :class:`asyncio.StreamReaderProtocol`
does; a server-side protocol has such a function)."""
Refuse = Callable[[socket.socket], None]
"""Called with a refused connection just before it is closed (it may send a last word)."""


async def listening_sockets(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """Non-blocking sockets listening on every address of ``host`` (``None``: every
    interface), all on ``port``; with port 0, on the one port the system gave the first.

    Raises:
        OSError: ``host`` does not resolve, or an address cannot be bound.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    addresses: list[tuple[int, tuple[str, int]]] = []
    for info in infos:
        family, sockaddr = int(info[0]), info[4]
        if family in (socket.AF_INET, socket.AF_INET6):
            address = (family, (str(sockaddr[0]), int(sockaddr[1])))
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise OSError(errno.EADDRNOTAVAIL, f"no IPv4 or IPv6 address for {host!r}")
    sockets: list[socket.socket] = []
    try:
        for family, (ip, bind_port) in addresses:
            if sockets and port == 0:
                bind_port = int(sockets[0].getsockname()[1])
            sock = socket.create_server((ip, bind_port), family=family, backlog=backlog)
            sock.setblocking(False)
            sockets.append(sock)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Acceptor:
    """Accepts the connections of listening sockets, admitting each before it is set up.

    Args:
        sockets: non-blocking listening sockets (:func:`listening_sockets`); the acceptor
            closes them when it closes.
        gate: admits each connection; its place is released when ``connected`` returns.
        connected: serves an admitted connection, in a task of its own.
        protocol: makes each admitted connection's stream protocol (see :data:`ProtocolFactory`).
        limit: the stream reader's buffer limit.
        refuse: called with each refused connection before it is closed.
        name: how log lines name the listener.
    """

    __slots__ = ("_accepting", "_connected", "_connections", "_gate", "_limit", "_protocol", "_refuse", "failed_accepts",
                 "name", "sockets")

    def __init__(
        self,
        sockets: list[socket.socket],
        gate: ConnectionGate,
        connected: Connected,
        *,
        protocol: ProtocolFactory = asyncio.StreamReaderProtocol,
        limit: int = 2**16,
        refuse: Refuse | None = None,
        name: str = "listener",
    ) -> None:
        self.sockets = sockets
        """The listening sockets."""
        self.name = name
        self.failed_accepts = 0
        """``accept()`` calls that failed (each followed by a pause of :data:`RETRY_SECONDS`)."""
        self._gate = gate
        self._connected = connected
        self._protocol = protocol
        self._limit = limit
        self._refuse = refuse
        self._accepting: list[asyncio.Task[None]] = []
        self._connections: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<Acceptor {self.name} sockets={len(self.sockets)} connections={len(self._connections)}>"

    @property
    def connections(self) -> set[asyncio.Task[None]]:
        """The tasks of the admitted connections still open (a copy)."""
        return set(self._connections)

    def start(self) -> None:
        """Start accepting on every socket (in the running loop)."""
        loop = asyncio.get_running_loop()
        self._accepting = [loop.create_task(self._accept(sock), name=f"{self.name} accept") for sock in self.sockets]

    async def close(self) -> None:
        """Stop accepting and close the listening sockets at once (a new connection is then
        refused by the system). Connections already admitted go on; their owner closes them."""
        accepting, self._accepting = self._accepting, []
        loop = asyncio.get_running_loop()
        for task in accepting:
            task.cancel()
        for sock in self.sockets:
            if sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())  # the cancelled accept() must not run first
                sock.close()
        for task in accepting:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        gate, connections = self._gate, self._connections
        in_a_row = 0
        while True:
            try:
                conn, _address = await loop.sock_accept(sock)
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self.failed_accepts += 1
                level = logging.WARNING if exc.errno in _OUT_OF_RESOURCES else logging.ERROR
                log.log(level, "%s: accept() failed (%s); accepting again in %.1f s", self.name, exc, RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if gate.admit():
                task = loop.create_task(self._serve(conn))
                connections.add(task)
                task.add_done_callback(connections.discard)
            else:
                self._close_refused(conn)
            in_a_row += 1
            if in_a_row >= ACCEPT_BURST:
                in_a_row = 0
                await asyncio.sleep(0)

    def _close_refused(self, conn: socket.socket) -> None:
        try:
            if self._refuse is not None:
                self._refuse(conn)
        finally:
            conn.close()

    async def _serve(self, conn: socket.socket) -> None:
        try:
            streams = await self._set_up(conn)
            if streams is not None:
                await self._connected(*streams)
        except OSError as exc:
            log.debug("%s: connection lost: %s", self.name, exc)
        except Exception:
            _log.exception("%s: serving a connection failed", self.name)
        finally:
            self._gate.release()

    async def _set_up(self, conn: socket.socket) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The streams of an accepted connection (``None``: it was lost meanwhile)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=self._limit, loop=loop)
        made: list[asyncio.StreamWriter] = []  # the protocol's writer, from its connection_made
        protocol = self._protocol(reader, lambda _reader, writer: made.append(writer))
        try:
            conn.setblocking(False)
            # Requests and replies are small frames: no Nagle delay (asyncio sets this only for a
            # socket made with proto=IPPROTO_TCP, which an accepted socket may not be).
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, conn)
        except OSError as exc:
            conn.close()
            log.debug("%s: a connection was lost while it was set up: %s", self.name, exc)
            return None
        except BaseException:
            conn.close()
            raise
        if not made:  # connection_made failed (and the loop logged why)
            transport.abort()
            return None
        return reader, made[0]
