"""Pluggable transports that carry encoded frames unchanged: inproc, TCP, ZeroMQ, NATS."""

from nanomsg_kernel.transports.base import (
    Connection,
    FrameHandler,
    Listener,
    PendingReplies,
    Transport,
    get_transport,
    register_transport,
)

__all__ = [
    "Connection",
    "FrameHandler",
    "Listener",
    "PendingReplies",
    "Transport",
    "get_transport",
    "register_transport",
]
