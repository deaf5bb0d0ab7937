"""Options of the ZeroMQ transport, checked once, and the socket settings they become.

Every socket gets high-water marks (``hwm`` messages each way: a slow peer makes its
sender wait instead of growing memory), heartbeats (``heartbeat`` seconds between pings; a
peer silent for three intervals is dropped), and ``MAXMSGSIZE`` = header + ``max_body_size``
on sockets that receive frames (ZeroMQ disconnects a peer that sends more).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import zmq

from nanomsg_kernel.errors import ConfigError
from nanomsg_kernel.fdbudget import DescriptorBudget
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, HEADER_SIZE, MAX_U32
from nanomsg_kernel.peer import check_allow
from nanomsg_kernel.transports.zmq_security import ClientCurve, ServerCurve

__all__ = ["ConnectOptions", "ListenOptions", "configure"]


def _positive(name: str, value: Any, *, integer: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or not value > 0 or (not integer and not math.isfinite(value)):
        kind = "a positive integer" if integer else "a positive number of seconds"
        raise ConfigError(f"ZeroMQ option {name} must be {kind}, got {value!r}")


@dataclass
class _Common:
    max_body_size: int = DEFAULT_MAX_BODY
    """Largest frame body sent or accepted (``MAXMSGSIZE`` is this plus the header)."""
    hwm: int = 1000
    """High-water mark, in messages, of every queue (send and receive)."""
    heartbeat: float | None = 1.0
    """Seconds between heartbeats; a peer silent for 3 intervals is dropped (None: off)."""
    curve_secret_key: object = None
    """This side's CurveZMQ secret key (enables encryption)."""
    curve_public_key: object = None
    """This side's CurveZMQ public key (derived from the secret key when omitted)."""

    @classmethod
    def parse(cls, options: Mapping[str, Any], what: str) -> Any:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"unknown ZeroMQ {what} option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        opts = cls(**options)
        opts.check()
        return opts

    def check(self) -> None:
        _positive("max_body_size", self.max_body_size, integer=True)
        if self.max_body_size > MAX_U32 - HEADER_SIZE:
            raise ConfigError(f"ZeroMQ option max_body_size must be at most {MAX_U32 - HEADER_SIZE}")
        _positive("hwm", self.hwm, integer=True)
        _positive("heartbeat", self.heartbeat, allow_none=True)
        if (self.curve_secret_key is not None or self.curve_public_key is not None) and not zmq.has("curve"):
            raise ConfigError("this libzmq was built without CurveZMQ support")

    @property
    def max_frame(self) -> int:
        """The largest frame, header included."""
        return HEADER_SIZE + self.max_body_size


@dataclass
class ListenOptions(_Common):
    """Options of ``ZmqTransport.listen``."""

    workers: int = 0
    """Worker processes behind the endpoint (0: serve in this process)."""
    max_in_flight: int = 1024
    """Frames handled at once per process; beyond it, reading pauses (backpressure)."""
    events: Iterable[int] | None = None
    """Route ids to subscribe to (default: those the service has subscribers for)."""
    curve_allow: Iterable[object] | None = None
    """Client public keys allowed to connect (None: any client that speaks Curve)."""
    reply_timeout: float = 5.0
    """Seconds a reply may wait for room in a slow client's queue before it is dropped."""
    max_held_bytes: int = 256 * 1024 * 1024
    """Bytes of replies on their way to all clients together (held for room, or large ones
    libzmq has not written yet); a reply over it is dropped and counted."""
    max_held_bytes_per_client: int = 128 * 1024 * 1024
    """The same, for one client."""
    max_peers: int | None = None
    """Peers connected at once to each bound socket; more are disconnected as they come
    (None: the listener's share of the process's descriptors, ``fdbudget.listener_share``)."""
    descriptor_budget: object = None
    """The :class:`~nanomsg_kernel.fdbudget.DescriptorBudget` peers take a descriptor of
    (None: the process's, shared by every listener)."""
    respawn: bool = True
    """Start a worker again when it dies."""
    start_timeout: float = 60.0
    """Seconds worker processes have to start."""
    allow: object = None
    """The identities that may call (an :class:`~nanomsg_kernel.peer.Allow` of Curve keys):
    anyone else is answered ``PERMISSION_DENIED``. Needs ``curve_secret_key``, no workers."""

    def check(self) -> None:
        super().check()
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 0:
            raise ConfigError(f"ZeroMQ option workers must be a number of processes >= 0, got {self.workers!r}")
        _positive("max_in_flight", self.max_in_flight, integer=True)
        _positive("reply_timeout", self.reply_timeout)
        _positive("max_held_bytes", self.max_held_bytes, integer=True)
        _positive("max_held_bytes_per_client", self.max_held_bytes_per_client, integer=True)
        _positive("max_peers", self.max_peers, integer=True, allow_none=True)
        if self.descriptor_budget is not None and not isinstance(self.descriptor_budget, DescriptorBudget):
            raise ConfigError(
                f"ZeroMQ option descriptor_budget must be a DescriptorBudget, got {type(self.descriptor_budget).__name__}"
            )
        _positive("start_timeout", self.start_timeout)
        if self.events is not None:
            routes = tuple(self.events)
            if not all(isinstance(r, int) and 0 <= r <= 0xFFFF for r in routes):
                raise ConfigError(f"ZeroMQ option events must be route ids (0 to 65535), got {routes!r}")
            self.events = routes
        if self.curve_allow is not None and self.curve_secret_key is None:
            raise ConfigError("curve_allow needs curve_secret_key (the server's key)")
        check_allow(self.allow, "ZeroMQ option")
        if self.allow is not None and self.curve_secret_key is None:
            raise ConfigError("allow needs curve_secret_key: without Curve no caller can prove an identity")
        if self.allow is not None and self.workers:
            raise ConfigError("allow needs workers=0: worker processes do not see their callers' keys")

    def budget(self) -> DescriptorBudget | None:
        """The descriptor budget given, if any (else the process's is used)."""
        return self.descriptor_budget if isinstance(self.descriptor_budget, DescriptorBudget) else None

    def curve(self) -> ServerCurve | None:
        """The Curve settings, if any."""
        if self.curve_secret_key is None:
            if self.curve_public_key is not None:
                raise ConfigError("curve_public_key needs curve_secret_key")
            return None
        return ServerCurve(self.curve_secret_key, self.curve_public_key, self.curve_allow,
                           identify=self.allow is not None)


@dataclass
class ConnectOptions(_Common):
    """Options of ``ZmqTransport.connect``."""

    curve_server_key: object = None
    """The service's CurveZMQ public key (enables encryption)."""
    connect_timeout: float = 5.0
    """Longest wait for some endpoint to take a request before ``Unavailable``."""
    events_wait: float = 0.5
    """After the first event is sent, how long events wait for a subscriber to appear."""
    send_timeout: float = 10.0
    """Longest wait for room to send an event before ``Unavailable``."""

    def check(self) -> None:
        super().check()
        _positive("connect_timeout", self.connect_timeout)
        _positive("send_timeout", self.send_timeout)
        if not isinstance(self.events_wait, (int, float)) or not 0 <= self.events_wait < math.inf:
            raise ConfigError(f"ZeroMQ option events_wait must be >= 0 seconds, got {self.events_wait!r}")
        if self.curve_server_key is None and self.curve_secret_key is not None:
            raise ConfigError("curve_secret_key needs curve_server_key (the service's public key)")

    def curve(self) -> ClientCurve | None:
        """The Curve settings, if any."""
        if self.curve_server_key is None:
            return None
        return ClientCurve(self.curve_server_key, self.curve_secret_key, self.curve_public_key)


RECONNECT_MAX_MS = 500
"""The longest interval between two connection attempts to an endpoint that is down (from
0.1 s, doubling): a service that comes back is used again within half a second, so calls
waiting for it succeed within a deadline of a second or more."""


def reconnect_quickly(sock: zmq.Socket[Any]) -> None:
    """Make a connecting ``sock`` retry a lost endpoint after 0.1 s, backing off to
    :data:`RECONNECT_MAX_MS`."""
    sock.reconnect_ivl = 100
    sock.reconnect_ivl_max = RECONNECT_MAX_MS


def configure(sock: zmq.Socket[Any], opts: _Common, *, receives_frames: bool = True, ipv6: bool = False) -> None:
    """Apply the common settings to ``sock``."""
    sock.sndhwm = opts.hwm
    sock.rcvhwm = opts.hwm
    sock.linger = 0
    if receives_frames:
        sock.maxmsgsize = opts.max_frame
    if opts.heartbeat is not None:
        ivl = max(1, round(opts.heartbeat * 1000))
        sock.heartbeat_ivl = ivl
        sock.heartbeat_timeout = 3 * ivl
        sock.heartbeat_ttl = min(3 * ivl, 6_553_500)
    if ipv6:
        sock.ipv6 = True
