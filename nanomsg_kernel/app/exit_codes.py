"""Exit statuses of the ``nanomsg-kernel`` command line (the same for every command)."""

from __future__ import annotations

import enum

from nanomsg_kernel.errors import DeadlineExceeded, DecodeError, RemoteError, Unavailable

__all__ = ["ExitCode", "exit_code_for"]


class ExitCode(enum.IntEnum):
    """What a non-zero exit status means."""

    OK = 0
    FAILED = 1
    """The service answered with an error status, a check failed, or a node could not start."""
    USAGE = 2
    """Bad command line, config or input (nothing was sent or started)."""
    UNAVAILABLE = 3
    """The service could not be reached, or the connection dropped."""
    TIMEOUT = 4
    """No reply before the timeout."""
    BAD_FRAME = 5
    """A frame (a reply, or the input of ``inspect``) could not be decoded."""
    NOT_SERVING = 6
    """``health``: the service answered that it is not serving."""
    DRAINING = 7
    """``health``: the service answered that it is shutting down (draining)."""


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit status for an error that ended a command."""
    if isinstance(exc, DeadlineExceeded | TimeoutError):
        return ExitCode.TIMEOUT
    if isinstance(exc, Unavailable | OSError):  # TransportError and refused connections too
        return ExitCode.UNAVAILABLE
    if isinstance(exc, RemoteError):
        return ExitCode.FAILED
    if isinstance(exc, DecodeError):
        return ExitCode.BAD_FRAME
    return ExitCode.USAGE
