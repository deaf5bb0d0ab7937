"""The event side of a ZeroMQ client: one ``XPUB`` connected to each service's events endpoint.

A service's ``SUB`` subscribes to the first 6 header bytes (magic, wire version, kind
``EVENT``, route) of the events it handles; ZeroMQ filters at the publisher, so an event
travels only to services that subscribe to its route. ``XPUB_NODROP`` makes a full queue
wait instead of dropping (backpressure). The ``XPUB`` also receives the subscriptions, which
lets the first events after connecting wait (``events_wait``) until a subscriber for their
route has been seen, instead of being lost before the subscription arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import zmq

from nanomsg_kernel.errors import Unavailable
from nanomsg_kernel.transports.zmq_options import ConnectOptions, configure, reconnect_quickly
from nanomsg_kernel.transports.zmq_socket import SocketPump, shared_context

if TYPE_CHECKING:
    from nanomsg_kernel.transports.zmq_endpoints import Endpoint
    from nanomsg_kernel.transports.zmq_security import ClientCurve

__all__ = ["EVENTS_LINGER_MS", "EventPublisher"]

EVENTS_LINGER_MS = 1000
"""How long (ms) events already sent are still delivered after :meth:`EventPublisher.close`."""


class EventPublisher:
    """The ``XPUB`` of one client, connected to the events endpoint of each of ``endpoints``
    (made on the first event sent; see :meth:`ZmqConnection.send
    <nanomsg_kernel.transports.zmq_client.ZmqConnection.send>`)."""

    def __init__(
        self, url: str, endpoints: Sequence[Endpoint], options: ConnectOptions, curve: ClientCurve | None,
        *, ipv6: bool,
    ) -> None:
        self.url = url
        self.options = options
        self._subscribed: dict[bytes, int] = {}
        self._closed = False
        pub = shared_context().socket(zmq.XPUB)
        try:
            configure(pub, options, receives_frames=False, ipv6=ipv6)
            pub.maxmsgsize = 1024  # it only receives subscriptions
            pub.xpub_nodrop = 1
            pub.xpub_verboser = 1  # every (un)subscription of every service, to count them
            reconnect_quickly(pub)
            if curve is not None:
                curve.apply(pub)
            for ep in endpoints:
                pub.connect(ep.events)
        except BaseException:
            pub.close(0)
            raise
        self._pub = pub
        # XPUB_NODROP makes a full queue an error, yet POLLOUT stays set.
        self._pump = SocketPump(pub, self._on_subscription, pollout_means_room=False)
        self._subscription_seen = asyncio.Event()
        loop = self._pump.loop
        self._wait_until = loop.time() + options.events_wait
        loop.call_later(options.events_wait, self._end_wait)

    @property
    def subscriptions(self) -> dict[bytes, int]:
        """Event subscriptions seen from the services: header prefix -> subscriber count."""
        return dict(self._subscribed)

    def _end_wait(self) -> None:
        self._wait_until = 0.0

    def _on_subscription(self, parts: list[bytes]) -> None:
        msg = parts[0]
        if not msg or msg[0] > 1:
            return
        prefix = msg[1:]
        count = self._subscribed.get(prefix, 0) + (1 if msg[0] == 1 else -1)
        if count > 0:
            self._subscribed[prefix] = count
        else:
            self._subscribed.pop(prefix, None)
        self._subscription_seen.set()

    def _has_subscriber(self, frame: bytes) -> bool:
        return any(frame.startswith(prefix) for prefix in self._subscribed)

    async def _wait_for_subscriber(self, frame: bytes, loop: asyncio.AbstractEventLoop) -> None:
        seen = self._subscription_seen
        while not self._has_subscriber(frame):
            remaining = self._wait_until - loop.time()
            if remaining <= 0:
                self._wait_until = 0.0
                return
            seen.clear()
            try:
                async with asyncio.timeout(remaining):
                    await seen.wait()
            except TimeoutError:
                pass

    async def publish(self, frame: bytes) -> None:
        """Send the event ``frame`` (checked by the caller) to the services subscribed to its
        route; in the first ``events_wait`` seconds, wait until one of them has subscribed.

        Raises:
            Unavailable: the subscribers did not make room within ``send_timeout``, or the
                publisher was closed meanwhile.
        """
        pump = self._pump
        if self._wait_until and not self._has_subscriber(frame):
            await self._wait_for_subscriber(frame, pump.loop)
        if not pump.try_send((frame,)) and not await pump.send(
            (frame,), pump.loop.time() + self.options.send_timeout
        ):
            if self._closed:
                raise Unavailable(f"{self.url}: connection closed")
            raise Unavailable(f"{self.url}: subscribers did not take the event within {self.options.send_timeout}s")

    def close(self) -> None:
        """Stop; events already sent are still delivered for up to :data:`EVENTS_LINGER_MS`."""
        if self._closed:
            return
        self._closed = True
        self._pump.close()
        self._pub.close(EVENTS_LINGER_MS)
