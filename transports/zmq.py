"""``zmq+tcp://host:port`` and ``zmq+ipc:///path``: frames over ZeroMQ (pyzmq).

Each frame is one ZeroMQ message part, carried unchanged; routing envelopes are ZeroMQ's
and never touch the frame.

* Requests: the service binds a ``ROUTER``; a client's ``DEALER`` connects to one or more
  services (``zmq+tcp://a:7000,zmq+tcp://b:7000``) and ZeroMQ spreads the requests over
  them, many in flight, matched by correlation id (:mod:`nanomsg_kernel.transports.zmq_client`).
* Events: the service binds a ``SUB`` on its events endpoint (see
  :mod:`nanomsg_kernel.transports.zmq_endpoints`) subscribed to the routes it has subscribers for; a
  client's ``send(frame)`` publishes on an ``XPUB`` connected to every listed service.
* ``workers=N``: N processes behind one endpoint through ZeroMQ proxies
  (:mod:`nanomsg_kernel.transports.zmq_workers`).
* Reliability: heartbeats drop dead peers, high-water marks bound every queue, a monitor
  fails requests when every service is gone; CurveZMQ encrypts and authenticates
  (:mod:`nanomsg_kernel.transports.zmq_security`); ``MAXMSGSIZE`` bounds what a peer may send.

Sockets are driven from the event loop through their file descriptors
(:mod:`nanomsg_kernel.transports.zmq_socket`); ``docs/zeromq.md`` has the measurements behind that choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Iterable
from typing import Any

import zmq

from nanomsg_kernel.contract import contract_info
from nanomsg_kernel.errors import ConfigError
from nanomsg_kernel.fdbudget import listener_share
from nanomsg_kernel.frame import MAGIC, WIRE_VERSION, Kind
from nanomsg_kernel.transports.base import FrameHandler, Listener, Transport
from nanomsg_kernel.transports.zmq_client import ZmqConnection
from nanomsg_kernel.transports.zmq_endpoints import bind_endpoints, public_url
from nanomsg_kernel.transports.zmq_options import ListenOptions, configure
from nanomsg_kernel.transports.zmq_peers import PeerLimit
from nanomsg_kernel.transports.zmq_server import FrameServer
from nanomsg_kernel.transports.zmq_socket import last_endpoint
from nanomsg_kernel.transports.zmq_workers import WorkerFarm, locate_handler

__all__ = ["ZmqConnection", "ZmqListener", "ZmqTransport", "event_prefixes", "remove_ipc_files"]

EVENT_PREFIX = MAGIC + bytes((WIRE_VERSION, int(Kind.EVENT)))
"""The first 4 header bytes of every event frame; with the 2-byte route: a subscription."""


def event_prefixes(handler: FrameHandler, routes: Iterable[int] | None) -> list[bytes]:
    """The subscriptions of a listener: one per route in ``routes``; by default the routes
    the handler's service has subscribers for, or every event for a plain handler."""
    if routes is None:
        subscribed = getattr(getattr(handler, "__self__", None), "subscribed", None)
        if subscribed is None:
            return [EVENT_PREFIX]
        found = set()
        for contract in subscribed:
            route = contract_info(contract).route
            if route is not None:
                found.add(int(route))
        routes = found
    return [EVENT_PREFIX + route.to_bytes(2, "big") for route in sorted(set(routes))]


def remove_ipc_files(addresses: Iterable[str]) -> None:
    """Remove the socket files of closed ``ipc://`` endpoints (libzmq leaves them behind)."""
    for address in addresses:
        if not address.startswith("ipc://") or address.startswith("ipc://@"):
            continue
        path = address[len("ipc://"):]
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)


def _default_max_body(handler: FrameHandler, options: dict[str, Any]) -> None:
    if "max_body_size" not in options:
        codec = getattr(getattr(handler, "__self__", None), "codec", None)
        size = getattr(codec, "max_body_size", None)
        if isinstance(size, int):
            options["max_body_size"] = size


class ZmqListener(Listener):
    """A service endpoint: ``ROUTER`` for requests, ``SUB`` for events, optional workers.

    Options are those of :class:`~nanomsg_kernel.transports.zmq_options.ListenOptions`. ``url`` becomes
    the address actually bound once started (with the real ports, and ``?events=`` when
    an events endpoint is bound).
    """

    def __init__(self, url: str, handler: FrameHandler, **options: Any) -> None:
        _default_max_body(handler, options)
        self.options: ListenOptions = ListenOptions.parse(options, "listen")
        self.url = url
        self.handler = handler
        self._endpoint = bind_endpoints(url)
        self._prefixes = event_prefixes(handler, self.options.events)
        self._target = locate_handler(handler) if self.options.workers else None
        self._curve = self.options.curve()
        self._ctx: zmq.Context[Any] | None = None
        self._sockets: list[zmq.Socket[Any]] = []
        self._limits: list[PeerLimit] = []
        self._server: FrameServer | None = None
        self._farm: WorkerFarm | None = None
        self._bound: list[str] = []
        self._state = "new"

    def __repr__(self) -> str:
        return f"<ZmqListener {self.url!r} {self._state}>"

    @property
    def server(self) -> FrameServer | None:
        """The serving loop (``None`` with worker processes, which each run their own)."""
        return self._server

    @property
    def max_peers(self) -> int:
        """Peers connected at once to each bound socket (the option, or its default)."""
        return self.options.max_peers if self.options.max_peers is not None else listener_share()

    @property
    def connected_peers(self) -> int:
        """Peers connected now, over the bound sockets (requests and events)."""
        return sum(len(limit.connected) for limit in self._all_limits())

    @property
    def refused_peers(self) -> int:
        """Connections shut down because ``max_peers`` peers were connected."""
        return sum(limit.refused for limit in self._all_limits())

    def _all_limits(self) -> list[PeerLimit]:
        return [*self._limits, *(self._farm.limits if self._farm is not None else ())]

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes serving now (empty without workers)."""
        return self._farm.pids if self._farm is not None else []

    async def start(self) -> None:
        """Bind and begin serving (with workers: once every worker is ready)."""
        if self._state != "new":
            raise ConfigError(f"listener {self.url!r} was already started")
        self._state = "starting"
        self._ctx = zmq.Context()
        try:
            if self._curve is not None:
                self._curve.start(self._ctx)
            if self._target is not None:
                self._farm = WorkerFarm(self._ctx, self._endpoint, self.options, self._target,
                                        self._prefixes, self._curve)
                self.url = await self._farm.start()
            else:
                self._start_here()
        except BaseException:
            await self._shutdown(0.0)
            raise
        self._state = "serving"

    def _bind(self, kind: int, address: str) -> zmq.Socket[Any]:
        assert self._ctx is not None
        sock: zmq.Socket[Any] = self._ctx.socket(kind)
        self._sockets.append(sock)
        configure(sock, self.options, ipv6=address.startswith("tcp://["))
        if self._curve is not None:
            self._curve.apply(sock)
        try:
            sock.bind(address)
        except zmq.ZMQError as exc:
            raise ConfigError(f"cannot bind {address}: {exc}") from None
        self._bound.append(address)
        self._limits.append(PeerLimit(sock, self.options.max_peers, last_endpoint(sock),
                                      self.options.budget()))
        return sock

    def _start_here(self) -> None:
        opts = self.options
        server = self._server = FrameServer(
            self.handler, max_in_flight=opts.max_in_flight, max_frame=opts.max_frame,
            reply_timeout=opts.reply_timeout, max_held_bytes=opts.max_held_bytes,
            max_held_bytes_per_client=opts.max_held_bytes_per_client, allow=opts.allow,  # type: ignore[arg-type]
        )
        router = self._bind(zmq.ROUTER, self._endpoint.requests)
        router.router_mandatory = 1
        events_url = None
        if self._prefixes:
            sub = self._bind(zmq.SUB, self._endpoint.events)
            for prefix in self._prefixes:
                sub.subscribe(prefix)
            events_url = last_endpoint(sub)
            server.serve_events(sub)
        server.serve_requests(router)
        self.url = public_url(last_endpoint(router), events_url)

    async def close(self, grace: float = 5.0) -> None:
        """Stop reading; let requests in flight finish within ``grace`` seconds; close."""
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        await self._shutdown(grace)

    async def _shutdown(self, grace: float) -> None:
        self._state = "closed"
        if self._server is not None:
            await self._server.close(grace)
        if self._farm is not None:
            await self._farm.close(grace)
        for limit in self._limits:
            limit.close()
        self._limits.clear()
        linger = int(min(max(grace, 0.0), 1.0) * 1000)
        for sock in self._sockets:
            sock.close(linger=linger)
        self._sockets.clear()
        if self._curve is not None:
            self._curve.stop()
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            await asyncio.to_thread(ctx.term)
        remove_ipc_files([*self._bound, *(self._farm.bound if self._farm is not None else ())])
        self._bound.clear()


class ZmqTransport(Transport):
    """The ZeroMQ transport (``zmq+tcp://``, ``zmq+ipc://``)."""

    schemes = ("zmq+tcp", "zmq+ipc")

    def listen(self, url: str, handler: FrameHandler, **options: Any) -> ZmqListener:
        """A listener at ``url``; see :class:`~nanomsg_kernel.transports.zmq_options.ListenOptions`."""
        return ZmqListener(url, handler, **options)

    def connect(self, url: str, **options: Any) -> ZmqConnection:
        """A connection to ``url`` (one or more comma-separated endpoints); see
        :class:`~nanomsg_kernel.transports.zmq_options.ConnectOptions`."""
        return ZmqConnection(url, **options)
