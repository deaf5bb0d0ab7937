"""A small kernel and service the conformance and reliability tests call.

``Probe`` records what the handlers saw so that a test can check how many times a request
was served, wait until a handler has started, or hold a handler (or subscriber) until it
releases it.
"""

from __future__ import annotations

import asyncio
import collections

from nanomsg_kernel import Context, RoutingEnum, Service, ServiceError, Status, contract


class ReliRoute(RoutingEnum):
    """Routes of the test kernel."""

    EMPTY = 1
    TEXT = 2
    BLOB = 3
    FAIL = 4
    CRASH = 5
    SLEEP = 6
    NOTE = 7
    UNHANDLED = 8
    HOLD = 9


@contract(ReliRoute.EMPTY)
class Empty:
    """A message without fields."""


@contract(ReliRoute.TEXT)
class Text:
    """Text echoed back unchanged in ``reply``."""

    text: str
    reply: str | None = None


@contract(ReliRoute.BLOB)
class Blob:
    """Bytes echoed back unchanged."""

    data: bytes


@contract(ReliRoute.FAIL)
class Fail:
    """The handler raises ``ServiceError(status, message)``."""

    status: int
    message: str


@contract(ReliRoute.CRASH)
class Crash:
    """The handler raises a plain exception (an ``INTERNAL`` reply)."""

    what: str


@contract(ReliRoute.SLEEP)
class Sleep:
    """The handler takes ``ms`` milliseconds; ``tag`` names the call in :data:`probe`."""

    ms: int
    tag: str = ""


@contract(ReliRoute.NOTE)
class Note:
    """An event; the subscriber waits for :attr:`Probe.gate` when ``hold`` is set."""

    seq: int
    data: bytes = b""
    hold: bool = False


@contract(ReliRoute.UNHANDLED)
class Unhandled:
    """A contract of the kernel the service has no handler for."""

    x: int


@contract(ReliRoute.HOLD)
class Hold:
    """The handler waits for :attr:`Probe.gate` (counted in :attr:`Probe.calls` by ``tag``)."""

    tag: str


class Probe:
    """What the handlers saw; :meth:`reset` before each test (events belong to its loop)."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.notes: list[int] = []
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.note_seen = asyncio.Event()
        self.cancelled = 0
        self.running = 0
        self.max_running = 0

    def reset(self) -> None:
        """Forget everything (call inside the test's event loop)."""
        self.__init__()  # type: ignore[misc]


probe = Probe()

reli = Service("reli", ReliRoute, max_body_size=64 * 1024)
"""The service under test (bodies up to 64 KiB, so that the size limit is cheap to reach)."""


@reli.handler(Empty, inline=True)
def on_empty(msg: Empty) -> Empty:
    """Answer an empty message with an empty message."""
    return Empty()


@reli.handler(Text, inline=True)
def on_text(msg: Text) -> Text:
    """Echo the text."""
    probe.calls[msg.text] += 1
    return Text(text=msg.text, reply=msg.text)


@reli.handler(Blob, inline=True)
def on_blob(msg: Blob) -> Blob:
    """Echo the bytes."""
    return msg


@reli.handler(Fail, inline=True)
def on_fail(msg: Fail) -> Fail:
    """Fail with the status and message asked for."""
    raise ServiceError(Status(msg.status), msg.message)


@reli.handler(Crash, inline=True)
def on_crash(msg: Crash) -> Crash:
    """Fail with an exception that is not a ServiceError."""
    raise ValueError(msg.what)


@reli.handler(Sleep)
async def on_sleep(msg: Sleep, ctx: Context) -> Sleep:
    """Take ``ms`` milliseconds (the work itself); record cancellation."""
    probe.calls[msg.tag] += 1
    probe.started.set()
    try:
        await asyncio.sleep(msg.ms / 1000)
    except asyncio.CancelledError:
        probe.cancelled += 1
        raise
    return msg


@reli.handler(Hold)
async def on_hold(msg: Hold) -> Hold:
    """Wait until the test opens the gate."""
    probe.calls[msg.tag] += 1
    probe.running += 1
    probe.max_running = max(probe.max_running, probe.running)
    probe.started.set()
    try:
        await probe.gate.wait()
    finally:
        probe.running -= 1
    return msg


@reli.subscribe(Note)
async def on_note(msg: Note) -> None:
    """Record the event (after the gate opens, when ``hold`` is set)."""
    if msg.hold:
        await probe.gate.wait()
    probe.notes.append(msg.seq)
    probe.note_seen.set()
