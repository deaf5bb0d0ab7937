"""A cap on the peers connected to one bound ZeroMQ socket, so that no listener can exhaust
the process's file descriptors.

libzmq accepts every connection a bound socket receives and offers no option to limit them:
``ZMQ_MAXMSGSIZE`` bounds messages, ``ZMQ_HANDSHAKE_IVL`` the time a handshake may take,
``ZMQ_ROUTER_HANDOVER`` decides which of two peers with the same routing id keeps it, and a
ZAP handler is asked only once a peer starts the handshake, so a peer that connects and sends
nothing holds a descriptor for the whole handshake interval (30 s by default) without ever
being asked about. What libzmq does report is every connection: its socket monitor sends
``EVENT_ACCEPTED`` with the new connection's descriptor, and ``EVENT_DISCONNECTED`` with the
same descriptor when libzmq closes it (whatever the reason, handshake done or not).

:class:`PeerLimit` counts those. A connection accepted beyond ``limit`` is shut down
(``shutdown(2)``, never ``close(2)``: the descriptor stays libzmq's); libzmq then reads the
end of the stream, drops the connection cleanly and closes the descriptor itself, and the
peer sees its connection closed (a ZeroMQ peer tries again after its reconnect interval).
Before shutting a descriptor down, the monitor's events are read up to the last one (a
descriptor libzmq closed meanwhile has its ``EVENT_DISCONNECTED`` there) and the descriptor's
local address is checked to be the bound endpoint's. Refusals are counted and logged through
:func:`~nanomsg_kernel.ratelimit.rate_limited` (one line per interval, with a count).

Every peer also holds a descriptor of the process's
:class:`~nanomsg_kernel.fdbudget.DescriptorBudget`, shared with the other listeners of every
transport (:class:`~nanomsg_kernel.transports.admission.ConnectionGate`): the default limit
is a listener's share of it (:func:`~nanomsg_kernel.fdbudget.listener_share`), and a peer
accepted when the process has no descriptor left for listeners is shut down the same way,
so a reserve below ``RLIMIT_NOFILE`` always stays for the rest of the process (its other
listeners, its outgoing connections, ZeroMQ's own descriptors).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from typing import Any

import zmq

from nanomsg_kernel.fdbudget import DescriptorBudget
from nanomsg_kernel.ratelimit import rate_limited
from nanomsg_kernel.transports.admission import ConnectionGate
from nanomsg_kernel.transports.zmq_socket import SocketPump

__all__ = ["PeerLimit"]

log = logging.getLogger("nanomsg_kernel.transports.zmq")
peer_log = rate_limited(log)
"""For what a peer can cause: one line per interval and kind, with a count."""

_EVENT_HEADER = struct.Struct("=hi")
_ACCEPTED = int(zmq.EVENT_ACCEPTED)
_DISCONNECTED = int(zmq.EVENT_DISCONNECTED)
_WATCHED = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED


def _is_accepted_on(fd: int, endpoint: str) -> bool:
    """Whether descriptor ``fd`` is a connection accepted on ``endpoint`` (a ZeroMQ address
    with its real port: ``tcp://host:port``, ``ipc://path``)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return False  # not a socket (any more)
    try:
        name = sock.getsockname()
    except OSError:
        return False
    finally:
        sock.detach()
    if endpoint.startswith("tcp://"):
        return isinstance(name, tuple) and str(name[1]) == endpoint.rsplit(":", 1)[1]
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        if path.startswith("@"):
            path = "\0" + path[1:]
        return bool(name == path or name == path.encode())
    return False


class PeerLimit:
    """Counts the peers connected to a bound socket and shuts down those it cannot admit.

    Args:
        sock: the bound socket (``ROUTER``, ``SUB``); its monitor is this object's.
        limit: the most peers connected at once (``None``: the listener's share of the
            process's descriptors).
        endpoint: the address ``sock`` is bound to, with its real port (``LAST_ENDPOINT``).
        budget: the descriptors peers take one each of (default: the process's).
    """

    def __init__(self, sock: zmq.Socket[Any], limit: int | None, endpoint: str,
                 budget: DescriptorBudget | None = None) -> None:
        self.gate = ConnectionGate(limit, budget)
        """Admits peers against ``limit`` and the process's descriptors."""
        self.limit = self.gate.max_connections
        self.endpoint = endpoint
        self.connected: set[int] = set()
        """Descriptors of the peers admitted and connected now."""
        self.peak = 0
        """The most peers ever connected at once."""
        self._sock = sock
        self._over: set[int] = set()
        """Descriptors accepted over the limit, to shut down after this batch of events."""
        self._draining = False
        self._monitor: zmq.Socket[Any] = sock.get_monitor_socket(_WATCHED)
        self._monitor.linger = 0
        self._pump = SocketPump(self._monitor, self._on_event, after_batch=self._after_batch)

    def _on_event(self, parts: list[bytes]) -> None:
        if len(parts) != 2 or len(parts[0]) != 6:
            return
        event, fd = _EVENT_HEADER.unpack(parts[0])
        if event == _ACCEPTED:
            if self.gate.admit():
                self.connected.add(fd)
                if len(self.connected) > self.peak:
                    self.peak = len(self.connected)
            else:
                self._over.add(fd)
        elif event == _DISCONNECTED:
            if fd in self.connected:
                self.connected.discard(fd)
                self.gate.release()
            self._over.discard(fd)  # closed before it was shut down

    def _after_batch(self) -> None:
        if not self._over or self._draining:
            return
        self._draining = True
        try:
            self._pump.drain()  # every event up to now: a descriptor closed meanwhile is known
        finally:
            self._draining = False
        over, self._over = self._over, set()
        for fd in over:
            self._shut(fd)

    def _shut(self, fd: int) -> None:
        if not _is_accepted_on(fd, self.endpoint):
            return  # closed meanwhile (libzmq reports it), never someone else's descriptor
        sock = socket.socket(fileno=fd)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return
        finally:
            sock.detach()
        peer_log.warning("%s: refused a ZeroMQ peer: %d peers connected (max_peers %d), or no descriptor "
                         "left for listeners", self.endpoint, len(self.connected), self.limit)

    @property
    def refused(self) -> int:
        """Connections shut down: ``limit`` peers were connected, or the process had no
        descriptor left for listeners."""
        return self.gate.refused

    def close(self, *, disable: bool = True) -> None:
        """Stop watching (before the socket closes, which ends its connections: their
        descriptors go back to the budget). ``disable=False`` when another thread uses the
        socket (a proxy's): its monitor then just has no reader any more."""
        for _fd in self.connected:
            self.gate.release()
        self.connected.clear()
        self._pump.close()
        if disable:
            with contextlib.suppress(zmq.ZMQError):
                self._sock.disable_monitor()
        self._monitor.close(0)
