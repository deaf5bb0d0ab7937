"""Frames a server read while it had no place for them, waiting in the order they came.

A transport at its in-flight limit goes on reading into a :class:`Waiting` (up to
:data:`WAITING_FRAMES` frames or :data:`WAITING_BYTES` bytes, then it stops reading) instead
of stopping at once, so that a ``CANCEL`` behind the waiting requests is still read:
:meth:`~nanomsg_kernel.transports.server_core.ServerCore.offer` then drops the request it
names, which never starts.
"""

from __future__ import annotations

import collections

from nanomsg_kernel.frame import HEADER_SIZE, Kind
from nanomsg_kernel.transports.base import correlation_id_of
from nanomsg_kernel.transports.caller import Caller

__all__ = ["WAITING_BYTES", "WAITING_FRAMES", "Waiting"]

_REQUEST_KIND = bytes((Kind.REQUEST,))

WAITING_BYTES = 256 * 1024
"""Bytes of frames a :class:`Waiting` holds before it is :attr:`~Waiting.full`."""
WAITING_FRAMES = 4096
"""Frames a :class:`Waiting` holds before it is :attr:`~Waiting.full`."""


class Waiting:
    """Frames read while their transport had no place for them, in the order they came."""

    __slots__ = ("bytes", "frames")

    def __init__(self) -> None:
        self.frames: collections.deque[tuple[bytes, Caller]] = collections.deque()
        self.bytes = 0
        """Bytes of the frames waiting."""

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def full(self) -> bool:
        """Whether :data:`WAITING_FRAMES` frames or :data:`WAITING_BYTES` bytes wait: the
        transport stops reading until frames start."""
        return len(self.frames) >= WAITING_FRAMES or self.bytes >= WAITING_BYTES

    def add(self, frame: bytes, caller: Caller) -> None:
        """Keep ``frame`` of ``caller`` until :meth:`pop`."""
        self.frames.append((frame, caller))
        self.bytes += len(frame)
        caller.queued += 1

    def pop(self) -> tuple[bytes, Caller]:
        """The frame that waited longest, and its caller."""
        frame, caller = self.frames.popleft()
        self.bytes -= len(frame)
        caller.queued -= 1
        return frame, caller

    def drop(self, caller: Caller, correlation_id: int) -> bool:
        """Forget ``caller``'s waiting request ``correlation_id``; False if none waits."""
        for i, (frame, owner) in enumerate(self.frames):
            if (owner is caller and frame[3:4] == _REQUEST_KIND and len(frame) >= HEADER_SIZE
                    and correlation_id_of(frame) == correlation_id):
                del self.frames[i]
                self.bytes -= len(frame)
                caller.queued -= 1
                return True
        return False

    def clear(self) -> None:
        """Forget every waiting frame (they get no reply)."""
        while self.frames:
            self.pop()
