"""The body of an error frame: a msgpack map ``{1: status, 2: message[, 3: details]}``.

Encoding never fails, so that an error keeps its status whatever it carries; decoding
trusts nothing and is bounded like any body (:func:`~nanomsg_kernel.scan.count_objects`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack

from nanomsg_kernel.errors import DecodeError, RemoteError, Status
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, MAX_U32
from nanomsg_kernel.scan import count_objects, msgpack_reason

__all__ = ["decode_error_body", "encode_error_body"]

_ERROR_STATUS, _ERROR_MESSAGE, _ERROR_DETAILS = 1, 2, 3
_MAX_ERROR_MESSAGE = 64 * 1024
_unpackb = msgpack.unpackb


def _printable(text: Any) -> str:
    """``text`` as a str that UTF-8 can carry (a lone surrogate becomes its escape)."""
    shown: str = text if type(text) is str else str(text)
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")


def encode_error_body(status: int, message: str, details: Any = None) -> bytes:
    """The body of an error frame: a msgpack map ``{1: status, 2: message[, 3: details]}``.

    Never fails, so an error keeps its status whatever it carries: text UTF-8 cannot carry
    (a lone surrogate) is sent escaped, and details msgpack cannot carry are left out.
    """
    try:
        code = int(status)
    except (TypeError, ValueError):
        code = int(Status.UNKNOWN)
    if not 0 <= code <= MAX_U32:
        code = int(Status.UNKNOWN)
    body: dict[int, Any] = {_ERROR_STATUS: code, _ERROR_MESSAGE: _printable(message)[:_MAX_ERROR_MESSAGE]}
    if details is not None:
        with contextlib.suppress(Exception):  # details msgpack cannot carry: sent without them
            return bytes(msgpack.packb({**body, _ERROR_DETAILS: details}, use_bin_type=True, datetime=True))
    return bytes(msgpack.packb(body, use_bin_type=True))


def decode_error_body(body: bytes | memoryview, max_objects: int = DEFAULT_MAX_BODY // 64) -> RemoteError:
    """Parse an error frame's body into a :class:`RemoteError` (``DecodeError`` if malformed,
    :class:`TooManyObjects` past ``max_objects``)."""
    try:
        count_objects(body, max_objects)
        m = _unpackb(body, strict_map_key=False, timestamp=3)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"error frame: malformed msgpack body: {msgpack_reason(exc)}") from None
    if type(m) is not dict:
        raise DecodeError("error frame: body is not a map")
    status, message = m.get(_ERROR_STATUS), m.get(_ERROR_MESSAGE, "")
    if type(status) is not int:
        raise DecodeError("error frame: status is not an int")
    if type(message) is not str:
        raise DecodeError("error frame: message is not a str")
    return RemoteError(Status.from_wire(status), message, m.get(_ERROR_DETAILS))
