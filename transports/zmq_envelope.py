"""Where the routing envelope of a message read from a ``ROUTER`` ends and its request begins.

A ``ROUTER`` puts the sending peer's routing id in front of every message; proxies in between
add theirs, and a ``REQ`` client adds an empty delimiter. The envelope goes back unchanged in
front of the reply. A request is one frame, one message part, so a message from a client of
this transport is ``[envelope..., frame]``. A foreign client may send a request in several
parts (a header and a body, or two frames): read as ``[envelope..., frame]`` it would be
answered along an "envelope" holding part of the request, which reflects that part back to
the client as if it were a reply. So the request is taken to begin at the first part after
the routing id that starts with the frame magic (``NK``: ZeroMQ's own routing ids start with
a zero byte, and an empty delimiter is empty); when more parts follow it, the message is a
multipart request and is answered with an error frame (``BAD_REQUEST``) instead of being
served. A message in which no part but the last starts with the magic is
``[envelope..., frame]`` as it stands.
"""

from __future__ import annotations

from nanomsg_kernel.errors import Status
from nanomsg_kernel.frame import MAGIC
from nanomsg_kernel.transports.replies import error_reply

__all__ = ["multipart_refusal", "request_start"]


def request_start(parts: list[bytes]) -> int:
    """The index of the part where the request begins: the first after the routing id that
    starts with the frame magic, or the last part."""
    last = len(parts) - 1
    for i in range(1, last):
        if parts[i][:2] == MAGIC:
            return i
    return last


def multipart_refusal(parts: list[bytes], start: int) -> list[bytes] | None:
    """The reply to a request sent in several parts (``parts[start:]``): the envelope and a
    ``BAD_REQUEST`` error frame, or ``None`` when no correlation id can be read from them."""
    request = b"".join(parts[start:])
    reply = error_reply(
        request, Status.BAD_REQUEST,
        f"a request must be one ZeroMQ message part (one frame); got {len(parts) - start} parts",
    )
    if reply is None:
        return None
    return [*parts[:start], reply]
