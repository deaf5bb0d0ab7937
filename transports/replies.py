"""What a server sends when its handler does not give a reply: shared by every transport.

* :func:`error_reply` — an error frame answering a frame whose correlation id is readable;
* :func:`handler_failed` — log a handler's failure and answer it with ``INTERNAL``;
* :func:`task_reply` — the reply a handler's task ended with.
"""

from __future__ import annotations

import asyncio
import logging

from nanomsg_kernel.codec import encode_error_body
from nanomsg_kernel.errors import Status
from nanomsg_kernel.frame import HEADER_SIZE, HEADER_STRUCT, MAGIC, Kind, pack_header

__all__ = ["error_reply", "handler_failed", "task_reply"]

_unpack_header = HEADER_STRUCT.unpack_from
_ERROR = int(Kind.ERROR)


def error_reply(frame: bytes, status: Status, message: str) -> bytes | None:
    """An error frame answering ``frame`` (its correlation id and route), or ``None`` when
    ``frame`` is too short or its magic is wrong, so that no correlation id can be read."""
    if len(frame) < HEADER_SIZE or frame[:2] != MAGIC:
        return None
    fields = _unpack_header(frame)
    body = encode_error_body(status, message)
    return pack_header(_ERROR, fields[3], 0, fields[6], 0, len(body)) + body


def handler_failed(
    frame: bytes, log: logging.Logger, where: str, exc: BaseException | None = None,
) -> bytes | None:
    """Log that the handler of ``frame`` raised (``exc``, or the exception being handled)
    and return the ``INTERNAL`` error frame answering ``frame`` (see :func:`error_reply`)."""
    log.error("frame handler failed%s", f" ({where})" if where else "", exc_info=exc or True)
    return error_reply(frame, Status.INTERNAL, "frame handler failed")


def task_reply(task: asyncio.Task[bytes | None], frame: bytes, log: logging.Logger, where: str) -> bytes | None:
    """The reply of ``frame`` from the task that finished its call: the task's result,
    ``None`` if it was cancelled, the ``INTERNAL`` error frame if it failed (logged)."""
    if task.cancelled():
        return None
    exc = task.exception()
    if exc is not None:
        return handler_failed(frame, log, where, exc)
    return task.result()
