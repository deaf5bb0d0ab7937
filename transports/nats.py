"""``nats://HOST:PORT[,HOST:PORT...]/SUBJECT``: frames over NATS (nats-py).

::

    async with calc.serve("nats://127.0.0.1:4222/calc"):                 # one instance of many
        async with Client(CalcRoute, "nats://127.0.0.1:4222/calc") as client:
            done = await client.call(CalcWork(a=6, b=3, op=WorkType.DIV), timeout=1.0)

A request is one NATS request on ``SUBJECT`` whose payload is one frame, exactly as
``codec.encode`` made it; the reply is one frame on the request's reply subject. The
instances serving a subject form a queue group and share its calls; events published
through a subject reach each service subscribed to them once. The subjects, limits and
failure behaviour are in ``docs/nats.md``; the server is
:class:`~nanomsg_kernel.transports.nats_server.NatsListener`, the client
:class:`~nanomsg_kernel.transports.nats_client.NatsConnection`, and the URL's options
(credentials, TLS, queue group) are read by :mod:`~nanomsg_kernel.transports.nats_url`.

nats-py is an optional dependency: ``pip install 'nanomsg-kernel[nats]'``.
"""

from __future__ import annotations

from typing import Any

from nanomsg_kernel.errors import ConfigError
from nanomsg_kernel.transports.base import FrameHandler, Transport
from nanomsg_kernel.transports.nats_client import NatsConnection, PayloadTooLarge
from nanomsg_kernel.transports.nats_server import NatsListener

__all__ = ["NatsConnection", "NatsListener", "NatsTransport", "PayloadTooLarge"]


class NatsTransport(Transport):
    """The ``nats://`` transport."""

    schemes = ("nats",)

    def listen(self, url: str, handler: FrameHandler, **options: Any) -> NatsListener:
        """A (not yet started) listener on the URL's subject; options: see :class:`NatsListener`."""
        try:
            return NatsListener(url, handler, **options)
        except TypeError as exc:
            raise ConfigError(f"bad listen option for nats://: {exc}") from None

    def connect(self, url: str, **options: Any) -> NatsConnection:
        """A (not yet connected) client of the URL's subject; options: see :class:`NatsConnection`."""
        try:
            return NatsConnection(url, **options)
        except TypeError as exc:
            raise ConfigError(f"bad connect option for nats://: {exc}") from None
