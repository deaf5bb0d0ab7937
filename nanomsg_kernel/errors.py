"""The library's exceptions and the status codes that travel on the wire.

Every exception the library raises derives from :class:`NanomsgError`::

    NanomsgError
    ├── ContractError          a contract, record or routing enum is defined wrongly
    ├── CodecError
    │   ├── EncodeError        a message cannot be encoded (bad value, too large)
    │   └── DecodeError        bytes are not a valid frame or body
    │       ├── FrameTooLarge  a header declares a body above the maximum
    │       ├── TooManyObjects a body holds more objects than the codec's budget
    │       └── MetadataTooLarge  a frame's metadata is over the size or key limit
    ├── CapabilityError        a service used a binding it was not given
    ├── ConfigError            a node configuration or URL is wrong
    ├── TransportError         a transport failed below the message layer
    └── ServiceError           a call failed with a :class:`Status` (raised by handlers)
        ├── RemoteError        ... reported by the called service (arrived as an error frame)
        ├── DeadlineExceeded   ... the deadline passed before a reply arrived (``TIMEOUT``)
        └── Unavailable        ... the peer cannot be reached (``UNAVAILABLE``)

A handler raises :class:`ServiceError` to answer with a status; the caller receives it as a
:class:`RemoteError` with the same ``status`` and ``message``, whether the call was made
in-process or over a network.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

__all__ = [
    "CapabilityError",
    "CodecError",
    "ConfigError",
    "ContractError",
    "DeadlineExceeded",
    "DecodeError",
    "EncodeError",
    "FrameTooLarge",
    "MetadataTooLarge",
    "NanomsgError",
    "RemoteError",
    "ServiceError",
    "Status",
    "TooManyObjects",
    "TransportError",
    "Unavailable",
]


class Status(enum.IntEnum):
    """Outcome of a call, carried in error frames. Values are stable wire ids."""

    OK = 0
    BAD_REQUEST = 1
    UNAUTHORIZED = 2
    FORBIDDEN = 3
    PERMISSION_DENIED = 3
    """The same status as ``FORBIDDEN`` (one wire value, 3): the caller's identity may not
    call this listener (its ``allow`` list), or a handler refuses the caller."""
    NOT_FOUND = 4
    CONFLICT = 5
    CONTRACT_NOT_SUPPORTED = 6
    TIMEOUT = 7
    UNAVAILABLE = 8
    INTERNAL = 9
    CANCELLED = 10
    DECODE_ERROR = 11
    RESOURCE_EXHAUSTED = 12
    UNKNOWN = 13

    @classmethod
    def from_wire(cls, value: int) -> Status:
        """Map a wire value to a status; values this version does not know become ``UNKNOWN``."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


class NanomsgError(Exception):
    """Root of every exception raised by nanomsg-kernel."""


class ContractError(NanomsgError, TypeError):
    """A contract, record, field or routing enum is defined wrongly (raised at definition time)."""


class CodecError(NanomsgError):
    """Base of encoding and decoding errors."""


class EncodeError(CodecError, ValueError):
    """A message could not be encoded; the text names the contract and field."""


class DecodeError(CodecError, ValueError):
    """Bytes are not a valid frame or body; the text gives the path, e.g. ``CalcWork.a``."""

    status: ClassVar[Status] = Status.DECODE_ERROR
    """The status a server answers this error with."""


class FrameTooLarge(DecodeError):
    """A frame header declares a body larger than the configured maximum."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"body of {size} bytes exceeds the maximum of {limit} bytes")
        self.size = size
        self.limit = limit

    status = Status.RESOURCE_EXHAUSTED


class TooManyObjects(DecodeError):
    """A body holds more msgpack objects than the codec's ``max_objects`` budget.

    Raised before the objects are made: the budget bounds the memory one frame can take
    when decoded, which its byte size alone does not (a one-byte msgpack map becomes a
    Python dict of 64 bytes or more).
    """

    status = Status.RESOURCE_EXHAUSTED

    def __init__(self, limit: int) -> None:
        super().__init__(f"body holds more than {limit} objects (the codec's max_objects)")
        self.limit = limit


class MetadataTooLarge(DecodeError):
    """A frame's metadata is longer than the receiver's limit or holds more keys (checked
    before it is decoded)."""

    status = Status.RESOURCE_EXHAUSTED


class CapabilityError(NanomsgError, LookupError):
    """A service tried to reach a binding it was not given."""


class ConfigError(NanomsgError, ValueError):
    """A node configuration, URL or option is invalid."""


class TransportError(NanomsgError, OSError):
    """A transport failed below the message layer (socket closed, refused, ...)."""


class ServiceError(NanomsgError):
    """A call failed with a status. Raise it from a handler to answer with that status.

    Args:
        status: the :class:`Status` to report.
        message: a human-readable explanation, sent to the caller.
        details: optional msgpack-serialisable data sent along.
    """

    def __init__(self, status: Status, message: str = "", details: Any = None) -> None:
        super().__init__(status, message)
        self.status = Status(status)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"{self.status.name}: {self.message}" if self.message else self.status.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status!r}, {self.message!r})"


class RemoteError(ServiceError):
    """The called service answered with an error status."""


class DeadlineExceeded(ServiceError, TimeoutError):
    """No reply arrived before the call's deadline (status ``TIMEOUT``)."""

    def __init__(self, message: str = "deadline exceeded", details: Any = None) -> None:
        super().__init__(Status.TIMEOUT, message, details)


class Unavailable(ServiceError, ConnectionError):
    """The peer could not be reached or went away mid-call (status ``UNAVAILABLE``)."""

    def __init__(self, message: str = "service unavailable", details: Any = None) -> None:
        super().__init__(Status.UNAVAILABLE, message, details)
