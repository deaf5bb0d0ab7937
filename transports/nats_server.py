"""The server side of ``nats://``: :class:`NatsListener`.

A listener is one NATS connection with these subscriptions (``S`` is the URL's subject,
``Q`` the queue group, by default ``S``):

* ``S`` in queue group ``Q``: requests. Every instance serving ``S`` joins ``Q``, so each
  request goes to one of them. The payload is the frame; the reply frame is published on
  the request's reply subject.
* ``S.cancel`` (every instance): ``CANCEL`` frames, whose reply subject names the request
  they cancel; the instance running it cancels its handler (or drops it while it waits).
* ``E.events.<route>`` in queue group ``Q``, for ``E`` = ``S`` and each subject of the
  ``events`` option, and each route the service has subscribers for: events, one copy per
  service.

Frames go to the listener's :class:`~nanomsg_kernel.transports.server_core.ServerCore`,
which checks headers, starts handlers, counts calls in flight, honours ``CANCEL`` and checks
replies, as on every transport. A listener that closes answers the calls it cancels when
its grace period ends, and those still waiting, with ``UNAVAILABLE``: their callers learn at
once, and may call again (another instance takes the call). With ``max_in_flight`` calls running, further requests
wait (up to 4096 frames or 256 KiB), then the subscription is not read until one ends
(nats-py keeps what arrives meanwhile, up to its pending limits). A reply over the NATS
server's ``max_payload`` is replaced by a ``RESOURCE_EXHAUSTED`` error frame naming both
limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from nanomsg_kernel.contract import contract_info
from nanomsg_kernel.errors import ConfigError, Status
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, HEADER_SIZE, MAX_U32, Kind
from nanomsg_kernel.peer import Peer
from nanomsg_kernel.transports.base import FrameHandler, Listener
from nanomsg_kernel.transports.caller import Caller
from nanomsg_kernel.transports.nats_client import cancel_subject, event_subject
from nanomsg_kernel.transports.nats_link import (
    Msg,
    NatsClient,
    NatsLink,
    Subscription,
    positive,
    publish_nowait,
)
from nanomsg_kernel.transports.nats_url import (
    auth_options,
    check_options,
    check_subject,
    parse_nats_url,
    redact,
)
from nanomsg_kernel.transports.replies import error_reply
from nanomsg_kernel.transports.server_core import ServerCore
from nanomsg_kernel.transports.waiting import Waiting

__all__ = ["NatsListener", "event_routes"]

log = logging.getLogger("nanomsg_kernel.transports.nats")
_CANCEL_KIND = bytes((int(Kind.CANCEL),))
_REQUEST_KIND = bytes((int(Kind.REQUEST),))
CLOSING = "the service instance is closing"
"""The message of the ``UNAVAILABLE`` error frame answering the calls a closing listener
cancels, or never started."""


def event_routes(handler: FrameHandler) -> list[str]:
    """The routes whose events a listener subscribes to: those its service has subscribers
    for, or every route (``*``) for a plain handler."""
    subscribed = getattr(getattr(handler, "__self__", None), "subscribed", None)
    if subscribed is None:
        return ["*"]
    routes = {int(info.route) for info in map(contract_info, subscribed) if info.route is not None}
    return [str(r) for r in sorted(routes)]


class _Request(Caller):
    """One request being served: where its reply goes."""

    __slots__ = ("listener", "reply_to")

    def __init__(self, listener: NatsListener, reply_to: str) -> None:
        super().__init__()
        self.listener = listener
        self.reply_to = reply_to

    def describe(self) -> Peer:
        """``nats`` and the request's reply subject (the caller's inbox). NATS does not tell a
        subscriber which user published a message, so there is no verified identity."""
        return Peer(transport="nats", address=self.reply_to)

    def finished(self, request: bytes, reply: bytes | None) -> None:
        listener = self.listener
        if reply is None and listener.closing and request[3:4] == _REQUEST_KIND:
            reply = error_reply(request, Status.UNAVAILABLE, CLOSING)  # cancelled: the grace ran out
        if reply is not None:
            listener.send_reply(self.reply_to, request, reply)
        listener.forget(self)
        listener.start_waiting()


class _OneWay(Caller):
    """Events, and requests without a reply subject: nothing is sent back."""

    __slots__ = ()

    def finished(self, request: bytes, reply: bytes | None) -> None:
        return None


class NatsListener(Listener):
    """Serves a :data:`~nanomsg_kernel.transports.base.FrameHandler` on a NATS subject.

    Args:
        url: ``nats://HOST:PORT[,HOST:PORT...]/SUBJECT[?OPTIONS]``.
        handler: called with every frame received; its reply frame is sent back.
        max_in_flight: calls handled at once; further requests wait for a place.
        max_body_size: largest frame body accepted and sent (a larger request is answered
            ``RESOURCE_EXHAUSTED``; so is a reply over it or over ``max_payload``).
        queue: the queue group (default: the subject); instances in one group share calls.
        events: more subjects whose events this listener takes (a list, or comma-separated).
        grace: default seconds :meth:`close` lets calls in flight finish.
        connect_timeout: seconds connecting to NATS may take at start.
        **auth: ``user``, ``password``, ``token``, ``creds``, ``nkey``, ``tls``, ``tls_ca``,
            ``tls_cert``, ``tls_key``, ``tls_hostname``, over those of the URL.
    """

    def __init__(self, url: str, handler: FrameHandler, *, max_in_flight: int = 1024,
                 max_body_size: int = DEFAULT_MAX_BODY, queue: str | None = None,
                 events: list[str] | str | None = None, grace: float = 5.0, connect_timeout: float = 5.0,
                 **auth: Any) -> None:
        address = parse_nats_url(url)
        check_options(auth)
        options: dict[str, Any] = {**address.options, **auth}
        queue = options.pop("queue", None) if queue is None else queue
        events = options.pop("events", None) if events is None else events
        options.pop("queue", None)
        options.pop("events", None)
        if not isinstance(max_in_flight, int) or isinstance(max_in_flight, bool) or max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be a positive int, got {max_in_flight!r}")
        if not isinstance(max_body_size, int) or not 0 < max_body_size <= MAX_U32:
            raise ConfigError(f"max_body_size must be 1 to {MAX_U32}, got {max_body_size!r}")
        if not isinstance(grace, (int, float)) or grace < 0:
            raise ConfigError(f"grace must be a number >= 0, got {grace!r}")
        if isinstance(events, str):
            events = [e for e in events.split(",") if e]
        self.url = redact(url)
        """The URL served, its secrets redacted."""
        self.handler = handler
        self.subject = address.subject
        self.queue = check_subject(queue, "queue group") if queue is not None else self.subject
        self.event_subjects = [self.subject, *(check_subject(e, "events subject") for e in events or ())]
        self.max_in_flight = max_in_flight
        self.max_body_size = max_body_size
        self.grace = float(grace)
        self.link = NatsLink(address.servers, self.url, auth_options(options),
                             connect_timeout=positive("connect_timeout", connect_timeout))
        self.core: ServerCore | None = None
        """What serves the frames (made when the listener starts)."""
        self.waiting = Waiting()
        """Requests read while ``max_in_flight`` calls ran, waiting for a place."""
        self.requests: dict[str, _Request] = {}
        """Requests started or waiting, by reply subject (for ``CANCEL``)."""
        self.oversized_replies = 0
        """Replies over the NATS server's ``max_payload``, replaced by an error frame."""
        self.lost_replies = 0
        """Replies not sent: the connection to NATS was down."""
        self._one_way = _OneWay()
        self._nc: NatsClient | None = None
        self._subs: list[Subscription] = []
        self._slot: asyncio.Future[None] | None = None
        self._state = "new"
        self.closing = False
        """True once :meth:`close` began."""

    def __repr__(self) -> str:
        return f"<NatsListener {self.url} {self._state}>"

    @property
    def in_flight(self) -> int:
        """Calls running now."""
        return self.core.in_flight if self.core is not None else 0

    async def start(self) -> None:
        """Connect to NATS and subscribe; calls are served from then on."""
        if self._state != "new":
            raise ConfigError(f"{self.url} was already started")
        self._state = "starting"
        try:
            nc = self._nc = await self.link.open()
            self.core = ServerCore(self.handler, name=self.url, max_body_size=self.max_body_size)
            self._subs.append(await nc.subscribe(self.subject, queue=self.queue, cb=self._on_request))
            self._subs.append(await nc.subscribe(cancel_subject(self.subject), cb=self._on_cancel))
            for subject in self.event_subjects:
                for route in event_routes(self.handler):
                    self._subs.append(await nc.subscribe(event_subject(subject, route), queue=self.queue,
                                                         cb=self._on_event))
            await nc.flush(timeout=max(1, round(self.link.connect_timeout)))  # the server has the subscriptions
        except BaseException:
            self._state = "closed"
            await self.link.close(0)
            raise
        self._state = "serving"

    # -- frames ---------------------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        core = self.core
        if core is None or self._state not in ("serving", "draining"):
            return
        reply_to = msg.reply
        frame = msg.data
        if not reply_to:
            core.start(frame, self._one_way)
            return
        caller = _Request(self, reply_to)
        reply = core.offer(frame, caller, self.waiting, core.in_flight < self.max_in_flight)
        if reply is not None:
            self.send_reply(reply_to, frame, reply)
        if caller.in_flight or caller.queued:  # it goes on (or waits): a CANCEL may name it
            self.requests[reply_to] = caller
        if self.waiting.full and self._state == "serving":
            self._slot = asyncio.get_running_loop().create_future()
            await self._slot

    async def _on_cancel(self, msg: Msg) -> None:
        core = self.core
        data = msg.data
        caller = self.requests.get(msg.reply)
        if core is None or caller is None or len(data) != HEADER_SIZE or data[3:4] != _CANCEL_KIND:
            return
        core.offer(data, caller, self.waiting, True)
        if not caller.in_flight and not caller.queued:
            self.forget(caller)

    async def _on_event(self, msg: Msg) -> None:
        core = self.core
        if core is not None and self._state in ("serving", "draining"):
            core.start(msg.data, self._one_way)

    def forget(self, caller: _Request) -> None:
        """``caller``'s request ended (or was dropped while it waited)."""
        if self.requests.get(caller.reply_to) is caller:
            del self.requests[caller.reply_to]

    def start_waiting(self) -> None:
        """Start the requests that waited, while there is room (a call just ended)."""
        waiting, core = self.waiting, self.core
        if waiting and core is not None:
            if core.cancelling:
                self._refuse_waiting()
            while waiting and core.in_flight < self.max_in_flight:
                frame, caller = waiting.pop()
                reply = core.resume(frame, caller)
                if isinstance(caller, _Request):
                    if reply is not None:
                        self.send_reply(caller.reply_to, frame, reply)
                    if not caller.in_flight:
                        self.forget(caller)
        slot = self._slot
        if slot is not None and not waiting.full:
            self._slot = None
            if not slot.done():
                slot.set_result(None)

    def _refuse_waiting(self) -> None:
        """Answer the requests still waiting ``UNAVAILABLE`` (the listener closes)."""
        while self.waiting:
            frame, caller = self.waiting.pop()
            if isinstance(caller, _Request):
                reply = error_reply(frame, Status.UNAVAILABLE, CLOSING) if frame[3:4] == _REQUEST_KIND else None
                if reply is not None:
                    self.send_reply(caller.reply_to, frame, reply)
                self.forget(caller)

    def send_reply(self, reply_to: str, request: bytes, reply: bytes) -> None:
        """Publish ``reply`` on ``reply_to`` (an error frame in its place when it is over the
        NATS server's ``max_payload``)."""
        nc = self._nc
        if nc is None:
            return
        if len(reply) > nc.max_payload:
            self.oversized_replies += 1
            log.error("%s: a reply of %d bytes exceeds the NATS server's max_payload %d", self.url, len(reply),
                      nc.max_payload)
            reply = error_reply(request, Status.RESOURCE_EXHAUSTED,
                                f"the reply of {len(reply)} bytes exceeds the NATS server's max_payload of "
                                f"{nc.max_payload} bytes (max_body_size: {self.max_body_size} bytes)") or b""
            if not reply:
                return
        if not publish_nowait(nc, reply_to, reply):
            if nc.is_connected:  # nats-py's buffer is over its limit: let it push back
                task = asyncio.get_running_loop().create_task(nc.publish(reply_to, reply))
                task.add_done_callback(_retrieve)
            else:
                self.lost_replies += 1

    # -- closing --------------------------------------------------------------------------

    async def close(self, grace: float | None = None) -> None:
        """Stop taking calls; let those in flight finish within ``grace`` seconds (default:
        the listener's ``grace``), send their replies, then close the connection."""
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        self.closing = True
        grace = self.grace if grace is None else grace
        self._state = "draining"
        slot = self._slot
        if slot is not None and not slot.done():
            slot.set_result(None)
        requests, rest = self._subs[:1], self._subs[2:]
        for sub in (*requests, *rest):  # the CANCEL subscription stays while calls end
            # The messages NATS delivered before it heard of the unsubscription are served.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(max(grace, 1.0)):
                    if self._nc is not None and self._nc.is_connected:
                        await sub.drain()  # type: ignore[no-untyped-call]
                    else:
                        await sub.unsubscribe()
        self._state = "closed"
        slot = self._slot
        if slot is not None and not slot.done():
            slot.set_result(None)
        if self.core is not None:
            await self.core.close(grace)
        self._refuse_waiting()
        self.requests.clear()
        self._subs.clear()
        self._nc = None
        await self.link.close(flush=min(max(grace, 0.1), 2.0))


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("a reply could not be sent: %s", task.exception())
