"""``tcp://host:port``: frames over TCP (optionally TLS) with asyncio streams.

::

    async with get_transport("tcp://127.0.0.1:0").listen("tcp://127.0.0.1:0", handler) as listener:
        async with get_transport(listener.url).connect(listener.url) as conn:
            reply = await conn.request(frame, timeout=1.0)

Frames travel unchanged, one after the other, as in every transport: the 26-byte header
(whose last field is the body length) then the body. The server is
:class:`~nanomsg_kernel.transports.tcp_server.TcpListener`, the client
:class:`~nanomsg_kernel.transports.tcp_client.TcpConnection`; their options and defaults are documented
there and in ``docs/transports.md``. TLS: pass an :class:`ssl.SSLContext` as ``ssl=`` on both
sides.
"""

from __future__ import annotations

from typing import Any

from nanomsg_kernel.errors import ConfigError
from nanomsg_kernel.transports.base import FrameHandler, Transport
from nanomsg_kernel.transports.tcp_client import TcpConnection
from nanomsg_kernel.transports.tcp_server import TcpListener

__all__ = ["TcpConnection", "TcpListener", "TcpTransport"]


class TcpTransport(Transport):
    """The ``tcp://`` transport."""

    schemes = ("tcp",)

    def listen(self, url: str, handler: FrameHandler, **options: Any) -> TcpListener:
        """A (not yet started) listener at ``tcp://host:port``; options: see :class:`TcpListener`."""
        try:
            return TcpListener(url, handler, **options)
        except TypeError as exc:
            raise ConfigError(f"{url}: bad listen option: {exc}") from None

    def connect(self, url: str, **options: Any) -> TcpConnection:
        """A (not yet connected) connection to ``tcp://host:port``; options: see :class:`TcpConnection`."""
        try:
            return TcpConnection(url, **options)
        except TypeError as exc:
            raise ConfigError(f"{url}: bad connect option: {exc}") from None
