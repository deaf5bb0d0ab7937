"""One server core under every transport: what a server does the same way, whatever carries
its frames.

A transport reads frames and writes replies; :class:`ServerCore` does everything in between:

* checks each frame's header the same way on every transport
  (:func:`~nanomsg_kernel.frame.refusal`): the same bad header gets the same error reply;
* starts the handler: through its :data:`~nanomsg_kernel.transports.base.FrameStarter` (a
  service's ``start_frame``) when it has one, answering at once when the handler does not
  wait, else in a task of its own (an eager one where the interpreter has them);
* honours ``CANCEL``: the running call of that caller with that correlation id is cancelled;
* counts what is in flight, in frames and in bytes, per server and per caller;
* finishes a call: its reply is checked against the size limit and handed to the caller;
* closes with grace: calls still running after the grace period are cancelled.

All a transport writes is one :class:`Caller` subclass, one object per connection (or per
return address), whose :meth:`Caller.finished` writes a reply::

    core = ServerCore(handler, name=url, max_body_size=limit)

    class Conn(Caller):
        def finished(self, request: bytes, reply: bytes | None) -> None:
            if reply is not None:
                write(reply)             # a call that continued in a task ended

    reply = core.start(frame, conn)      # for every whole frame read from conn
    if reply is not None:
        write(reply)                     # the call ended without waiting
    ...

A transport with an in-flight limit reads on past it with :meth:`ServerCore.offer` and a
:class:`~nanomsg_kernel.transports.waiting.Waiting` (so that a ``CANCEL`` behind the waiting
requests is still read), stops reading while that is ``full``, and starts the waiting frames
with :meth:`ServerCore.resume` as calls end::

    reply = core.offer(frame, conn, waiting, room=conn.in_flight < limit)
    ...
    core.cancel_calls(conn)              # the connection was lost
    await core.close(grace)              # the listener closes
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any

from nanomsg_kernel.eager import EAGER
from nanomsg_kernel.errors import Status
from nanomsg_kernel.frame import (
    HEADER_SIZE,
    HEADER_STRUCT,
    MAGIC,
    WIRE_VERSION,
    Kind,
    Refusal,
    refusal,
)
from nanomsg_kernel.peer import Allow
from nanomsg_kernel.ratelimit import rate_limited
from nanomsg_kernel.transports.base import FrameHandler, correlation_id_of, frame_starter
from nanomsg_kernel.transports.caller import Caller
from nanomsg_kernel.transports.replies import error_reply, handler_failed, task_reply
from nanomsg_kernel.transports.waiting import Waiting

__all__ = ["Caller", "ServerCore"]

log = logging.getLogger("nanomsg_kernel.transports.server")
peer_log = rate_limited(log)
"""For what a peer can cause: one line per interval and kind, with a count."""

_unpack_header = HEADER_STRUCT.unpack_from
_REQUEST, _CANCEL = int(Kind.REQUEST), int(Kind.CANCEL)
_KINDS = frozenset(int(k) for k in Kind)
_Call = list[Any]
"""A call in a task: ``[frame, caller, correlation id (-1: not a request), the coroutine that
serves it, its task]``; the task is ``None`` while it is being made: an eager task's first
step runs then, and one that ends in it is answered by :meth:`ServerCore.start`, not ended by
``_run``."""
_CANCEL_KIND = bytes((_CANCEL,))
_Task: Any = asyncio.Task


class ServerCore:
    """Starts, counts, cancels and finishes the calls of one server.

    Args:
        handler: the :data:`~nanomsg_kernel.transports.base.FrameHandler` frames go to.
        name: what the log lines name (the listener's URL).
        max_body_size: the largest body accepted in a frame and sent in a reply; a larger
            reply is replaced by a ``RESOURCE_EXHAUSTED`` error frame.
        allow: the identities that may call (checked against each caller's ``peer()``):
            anyone else is answered ``PERMISSION_DENIED`` (an event is dropped) before any
            handler code runs. ``None``: everyone may.
    """

    def __init__(self, handler: FrameHandler, *, name: str, max_body_size: int, allow: Allow | None = None) -> None:
        self.handler = handler
        self.allow = allow
        self.denied = 0
        """Frames refused because their caller is not in :attr:`allow`."""
        self.starter = frame_starter(handler)
        """The handler's synchronous start, if it has one (a service's ``start_frame``)."""
        self.name = name
        self.max_body_size = max_body_size
        self.loop = asyncio.get_running_loop()
        self._create_task = self.loop.create_task
        self._context = contextvars.copy_context()
        """The context the server was made in: each call runs in a fresh copy of it."""
        self.calls: dict[asyncio.Task[Any], _Call] = {}
        """Every call running in a task: its frame, caller, correlation id (-1: not a
        request), the coroutine that serves it, and the task."""
        self.in_flight = 0
        """Calls started and not finished."""
        self.in_flight_bytes = 0
        """Bytes of the frames of the calls in flight."""
        self.peak_in_flight = 0
        """The most calls ever in flight at once."""
        self.refused = 0
        """Frames refused for their header (answered with an error frame when possible)."""
        self.cancelled = 0
        """Calls cancelled by their caller's ``CANCEL`` frame."""
        self.oversized_replies = 0
        """Replies over ``max_body_size``, replaced by an error frame."""
        self.closing = False
        """True once :meth:`close` began."""
        self.cancelling = False
        """True once the grace period of :meth:`close` ran out: waiting frames are not
        started any more."""

    def __repr__(self) -> str:
        return f"<ServerCore {self.name} in_flight={self.in_flight}>"

    # -- starting ----------------------------------------------------------------------

    def start(self, frame: bytes, caller: Caller, *, eager: bool = True) -> bytes | None:
        """Serve one whole frame received from ``caller``.

        Returns the reply when the call ended in this step (``None``: no reply, or the call
        continues in a task and ``caller.finished`` gets its reply). ``eager=False`` runs
        even a request's handler in a task started at the next loop iteration.
        Never raises for a bad frame: it is answered (see :meth:`refuse`).
        """
        try:
            magic, wire, kind, _route, _cver, _flags, cid, _tmo, length = _unpack_header(frame)
        except Exception:  # struct.error: shorter than a header
            return self.refuse(frame, refusal(frame, self.max_body_size))
        if (magic != MAGIC or wire != WIRE_VERSION or kind not in _KINDS
                or length != len(frame) - HEADER_SIZE or length > self.max_body_size):
            return self.refuse(frame, refusal(frame, self.max_body_size))
        if kind == _CANCEL:
            self.cancel(caller, cid)
            return None
        if self.allow is not None and not self.allow.permits(caller.peer()):
            return self.deny(frame, caller, kind == _REQUEST)
        size = len(frame)
        self.in_flight += 1
        self.in_flight_bytes += size
        caller.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight
        starter = self.starter
        request = kind == _REQUEST
        # Each call runs in a fresh copy of the server's context: never in the one of the
        # code that happens to be running (a handler whose send woke the socket reader).
        context = self._context.copy()
        if starter is not None and request and eager:
            try:
                result = context.run(starter, frame, self.loop, caller)
            except Exception:
                result = handler_failed(frame, log, self.name)
            if result is None or isinstance(result, bytes):
                self.in_flight -= 1
                self.in_flight_bytes -= size
                caller.in_flight -= 1
                if result is None or len(result) - HEADER_SIZE <= self.max_body_size:
                    return result
                return self._checked(frame, result)
            work = result
        else:  # events (in order of arrival: never eager), responses or errors sent to a server
            work = self._serve(frame, request, caller)
            eager = eager and request
        call: _Call = [frame, caller, cid if request else -1, work, None]
        if eager and EAGER:  # (start_task's eager case, without the extra call)
            task = _Task(self._run(work, call), loop=self.loop, context=context, eager_start=True)
            if task.done():  # it ended in its first step: its result is the reply
                self.in_flight -= 1
                self.in_flight_bytes -= size
                caller.in_flight -= 1
                try:  # _run() caught the handler's exceptions: only a cancellation is left
                    reply: bytes | None = task.result()
                except BaseException:
                    reply = task_reply(task, frame, log, self.name)
                if reply is None or len(reply) - HEADER_SIZE <= self.max_body_size:
                    return reply
                return self._checked(frame, reply)
        else:  # a task started at the next loop iteration (start_task's other case)
            task = self._create_task(self._run(work, call), context=context)
        call[4] = task
        self.calls[task] = call
        caller.tasks.add(task)
        if request:
            caller.by_id[cid] = task
        return None

    def offer(self, frame: bytes, caller: Caller, waiting: Waiting, room: bool, *,
              eager: bool = True) -> bytes | None:
        """:meth:`start` for a transport that lets frames wait while it has no ``room`` (its
        in-flight limit is reached): the frame waits in ``waiting`` when there is no room or
        others wait before it; a ``CANCEL`` drops the waiting request it names (or cancels
        it, if it runs). Start the waiting frames with :meth:`start` as room comes."""
        if frame[3:4] == _CANCEL_KIND and len(frame) >= HEADER_SIZE:
            if waiting and waiting.drop(caller, correlation_id_of(frame)):
                self.cancelled += 1
                return None
            return self.start(frame, caller)
        if waiting or not room:
            waiting.add(frame, caller)
            return None
        return self.start(frame, caller, eager=eager)

    def resume(self, frame: bytes, caller: Caller, *, eager: bool = True) -> bytes | None:
        """:meth:`start` for a frame that waited (in a :class:`Waiting`), called when a call
        ended: it starts as if it had just arrived."""
        return self.start(frame, caller, eager=eager)

    async def _run(self, work: Coroutine[Any, Any, bytes | None], call: _Call) -> bytes | None:
        """A call's task: ``work``, then (if it waited) its end, here rather than in a done
        callback, which would cost a loop iteration before the reply leaves."""
        reply = None
        try:
            reply = await work
        except Exception:
            reply = handler_failed(call[0], log, self.name) if call[2] >= 0 else None
        finally:
            task = call[4]
            if task is not None:  # not the first step of an eager task: a registered call
                self._end(task, reply)
        return reply

    async def _serve(self, frame: bytes, request: bool, caller: Caller) -> bytes | None:
        """Serve a frame through the handler itself (no starter, or not a request)."""
        try:
            if self.starter is not None:  # a service's handle_frame: it tells handlers the caller
                return await self.handler(frame, caller)  # type: ignore[call-arg]
            return await self.handler(frame)
        except Exception:
            failed = handler_failed(frame, log, self.name)
            return failed if request else None

    def run_event(self, frame: bytes) -> Coroutine[Any, Any, None]:
        """Hand an event to the handler in the caller's own task (for a transport that
        keeps events in order); the handler's failure is logged."""
        return self._event(frame)

    async def _event(self, frame: bytes) -> None:
        try:
            await self.handler(frame)
        except Exception:
            log.exception("%s: frame handler failed on an event", self.name)

    # -- finishing ---------------------------------------------------------------------

    def _end(self, task: asyncio.Task[Any], reply: bytes | None) -> None:
        """A call's task ended (once: later calls do nothing): lower the counts, hand its
        reply to the caller."""
        call = self.calls.pop(task, None)
        if call is None:
            return
        frame, caller, cid = call[0], call[1], call[2]
        caller.tasks.discard(task)
        if cid >= 0 and caller.by_id.get(cid) is task:
            del caller.by_id[cid]
        self.in_flight -= 1
        self.in_flight_bytes -= len(frame)
        caller.in_flight -= 1
        if reply is not None and len(reply) - HEADER_SIZE > self.max_body_size:
            reply = self._checked(frame, reply)
        caller.finished(frame, reply)

    def _reap(self, task: asyncio.Task[Any]) -> None:
        """A task the core cancelled ended: end its call, if its coroutine could not (a task
        cancelled before its first step never runs it, nor the handler's coroutine)."""
        call = self.calls.get(task)
        if call is not None:
            call[3].close()
            self._end(task, None)

    def _checked(self, frame: bytes, reply: bytes | None) -> bytes | None:
        """``reply``, or a ``RESOURCE_EXHAUSTED`` error frame in its place when its body is
        over ``max_body_size`` (the peer would refuse it, or drop the connection)."""
        if reply is None or len(reply) - HEADER_SIZE <= self.max_body_size:
            return reply
        self.oversized_replies += 1
        log.error("%s: a reply of %d bytes exceeds max_body_size %d", self.name, len(reply), self.max_body_size)
        return error_reply(frame, Status.RESOURCE_EXHAUSTED,
                           f"the reply's body of {len(reply) - HEADER_SIZE} bytes exceeds the maximum of "
                           f"{self.max_body_size} bytes")

    def refuse(self, frame: bytes, why: Refusal | None, *, logged: bool = True) -> bytes | None:
        """The error frame answering a frame refused for its header (``None`` when no
        correlation id can be read from it); counted, and logged (rate-limited) unless the
        transport logs it itself (``logged=False``)."""
        if why is None:  # pragma: no cover - start() calls this only for refused frames
            return None
        self.refused += 1
        if logged:
            peer_log.warning("%s: refused a frame: %s", self.name, why.message)
        return error_reply(frame, why.status, why.message)

    def deny(self, frame: bytes, caller: Caller, request: bool) -> bytes | None:
        """The answer to a frame whose caller is not allowed: a ``PERMISSION_DENIED`` error
        frame for a request, nothing for anything else (counted, logged rate-limited)."""
        self.denied += 1
        peer_log.warning("%s: refused a frame from %s: not an allowed identity", self.name, caller.peer())
        if not request:
            return None
        return error_reply(frame, Status.PERMISSION_DENIED, "the caller is not allowed to call this listener")

    # -- cancelling and closing --------------------------------------------------------

    def cancel(self, caller: Caller, correlation_id: int) -> bool:
        """Cancel ``caller``'s running request ``correlation_id`` (its reply is not sent);
        False if none is running (it ended already, or never continued in a task)."""
        task = caller.by_id.pop(correlation_id, None)
        if task is None or task.done():
            return False
        self.cancelled += 1
        self._cancel(task, "cancelled by the caller")
        return True

    def cancel_calls(self, caller: Caller) -> None:
        """Cancel every call of ``caller`` still running (its connection is gone)."""
        for task in list(caller.tasks):
            self._cancel(task, None)

    def _cancel(self, task: asyncio.Task[Any], why: str | None) -> None:
        task.cancel(why)
        task.add_done_callback(self._reap)

    async def wait_calls(self, caller: Caller) -> None:
        """Wait until every call of ``caller`` running in a task has ended."""
        while caller.tasks:
            await asyncio.wait(set(caller.tasks))

    async def close(self, grace: float) -> None:
        """Let the calls in flight finish within ``grace`` seconds, then cancel the rest and
        wait for them to end (their replies are not sent)."""
        self.closing = True
        deadline = self.loop.time() + grace
        while self.calls:  # calls started meanwhile (frames that waited) are waited for too
            left = deadline - self.loop.time()
            if left <= 0:
                break
            await asyncio.wait(set(self.calls), timeout=left)
        self.cancelling = True
        late = set(self.calls)
        if late:
            log.warning("%s: %d call(s) still running after %.1fs, cancelling them", self.name, len(late), grace)
            for task in late:
                self._cancel(task, None)
            await asyncio.wait(late)
