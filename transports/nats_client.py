"""The client side of ``nats://``: :class:`NatsConnection`.

A request is one NATS message on the URL's subject whose payload is the frame, unchanged,
with the reply subject ``<inbox>.<correlation id>``; the client subscribes once to
``<inbox>.*`` and hands each reply to the request with the frame's correlation id. Any
number of requests may be in flight.

* No service subscribed to the subject: the NATS server answers at once (its
  no-responders status), and the request fails with ``Unavailable`` at once.
* A frame larger than the NATS server's ``max_payload`` is refused before it is sent
  (:class:`PayloadTooLarge`, status ``RESOURCE_EXHAUSTED``, naming both limits).
* A caller that gives up sends a ``CANCEL`` frame on ``<subject>.cancel``, with the
  request's reply subject, which every instance serving the subject hears; the one running
  it cancels its handler.
* Events (``send``) go to ``<subject>.events.<route>``: each service subscribed there (a
  queue group) receives one copy.
* The connection drops: every request waiting fails with ``Unavailable`` at once, and new
  ones too until nats-py is connected again (to the same server or another of the
  cluster); then calls go on. Nothing is retried or sent later behind a caller's back.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nanomsg_kernel.errors import ConfigError, DeadlineExceeded, EncodeError, Status, Unavailable
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, HEADER_SIZE, MAX_U32, cancel_frame
from nanomsg_kernel.transports.base import Connection, PendingReplies, correlation_id_of
from nanomsg_kernel.transports.nats_link import Msg, NatsClient, NatsLink, positive, publish_nowait
from nanomsg_kernel.transports.nats_url import auth_options, check_options, parse_nats_url, redact

__all__ = ["NatsConnection", "PayloadTooLarge", "cancel_subject", "event_subject"]

_NO_RESPONDERS = "503"


class PayloadTooLarge(EncodeError):
    """A frame larger than the NATS server's ``max_payload``: refused before it is sent."""

    status = Status.RESOURCE_EXHAUSTED


def cancel_subject(subject: str) -> str:
    """Where ``CANCEL`` frames for requests on ``subject`` go (every instance hears them)."""
    return f"{subject}.cancel"


def event_subject(subject: str, route: int | str) -> str:
    """Where events of ``route`` published through ``subject`` go (``"*"``: any route)."""
    return f"{subject}.events.{route}"


class NatsConnection(Connection):
    """A client of the services on a ``nats://`` subject.

    Args:
        url: ``nats://HOST:PORT[,HOST:PORT...]/SUBJECT[?OPTIONS]`` (see
            :mod:`~nanomsg_kernel.transports.nats_url`).
        max_body_size: largest frame body sent or accepted.
        connect_timeout: seconds connecting (to any of the listed servers) may take.
        **auth: ``user``, ``password``, ``token``, ``creds``, ``nkey``, ``tls``, ``tls_ca``,
            ``tls_cert``, ``tls_key``, ``tls_hostname``, over those of the URL.
    """

    def __init__(self, url: str, *, max_body_size: int = DEFAULT_MAX_BODY, connect_timeout: float = 5.0,
                 **auth: Any) -> None:
        address = parse_nats_url(url)
        check_options(auth)
        if not isinstance(max_body_size, int) or not 0 < max_body_size <= MAX_U32:
            raise ConfigError(f"max_body_size must be 1 to {MAX_U32}, got {max_body_size!r}")
        for key in ("queue", "events"):
            if key in address.options or key in auth:
                raise ConfigError(f"{redact(url)}: {key} is a listener's option, not a client's")
        options: dict[str, Any] = {**address.options, **auth}
        self.url = redact(url)
        """The URL, its secrets redacted."""
        self.subject = address.subject
        self.max_body_size = max_body_size
        self.pending = PendingReplies()
        """Requests waiting for their reply, by correlation id."""
        self.no_responders = 0
        """Requests answered by the NATS server's no-responders status."""
        self.link = NatsLink(address.servers, self.url, auth_options(options),
                             connect_timeout=positive("connect_timeout", connect_timeout), on_drop=self._dropped)
        self._nc: NatsClient | None = None
        self._inbox = ""
        self._cancel_subject = cancel_subject(self.subject)
        self._closed = False
        self._drop_reason = ""

    def __repr__(self) -> str:
        return f"<NatsConnection {self.url} {len(self.pending)} waiting>"

    @property
    def connected(self) -> bool:
        """Whether the connection to a NATS server is up now."""
        return self._nc is not None and self._nc.is_connected

    async def connect(self) -> None:
        """Connect to one of the URL's NATS servers; ``Unavailable`` if none answers, or if
        no service is subscribed to the subject (nothing stays open then)."""
        if self._nc is None:
            await self._open()

    async def _open(self) -> NatsClient:
        if self._closed:
            raise Unavailable(f"{self.url}: connection closed")
        nc = await self.link.open()
        if self._nc is None:
            try:
                await self._probe(nc)
                inbox = nc.new_inbox()
                await nc.subscribe(f"{inbox}.*", cb=self._on_reply)
            except BaseException:
                await self.link.close(0)
                raise
            self._inbox = inbox + "."
            self._nc = nc
        return self._nc

    async def _probe(self, nc: NatsClient) -> None:
        """``Unavailable`` unless a service is subscribed to the subject: a ``CANCEL`` frame
        that names no request (which a service ignores) is sent as a request, and the NATS
        server's no-responders status, if it comes, comes before the answer to the PING
        that follows it."""
        inbox = nc.new_inbox()
        answer: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        sub = await nc.subscribe(inbox, future=answer, max_msgs=1)
        try:
            await nc.publish(self.subject, cancel_frame(0), reply=inbox)
            await nc.flush(timeout=max(1, round(self.link.connect_timeout)))
        except Exception as exc:
            raise Unavailable(f"{self.url}: NATS did not answer: {exc or type(exc).__name__}") from None
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if answer.done() and not answer.cancelled():
            headers = answer.result().headers
            if headers and headers.get("Status") == _NO_RESPONDERS:
                self.no_responders += 1
                raise Unavailable(f"{self.url}: no service is subscribed to {self.subject!r} (no responders)")

    async def _on_reply(self, msg: Msg) -> None:
        data = msg.data
        if len(data) >= HEADER_SIZE:
            self.pending.resolve(data)
            return
        headers = msg.headers
        tail = msg.subject.rpartition(".")[2]
        if headers and headers.get("Status") == _NO_RESPONDERS and tail.isdigit():
            self.no_responders += 1
            self.pending.fail(int(tail), Unavailable(
                f"{self.url}: no service is subscribed to {self.subject!r} (no responders)"))
        else:
            self.pending.late_replies += 1

    def _dropped(self, reason: str) -> None:
        self._drop_reason = reason
        self.pending.fail_all(Unavailable(f"{self.url}: connection to the NATS server lost ({reason})"))

    def _check(self, frame: bytes, nc: NatsClient) -> int:
        """The frame's correlation id, after checking its size (a message carries one frame:
        a bad header cannot spoil the next one, and the service answers it)."""
        body = len(frame) - HEADER_SIZE
        if body < 0:
            raise EncodeError(f"not a frame: {len(frame)} bytes, shorter than a header")
        if body > self.max_body_size:
            raise EncodeError(f"frame body of {body} bytes exceeds {self.max_body_size}")
        if len(frame) > nc.max_payload:
            raise PayloadTooLarge(
                f"{self.url}: a frame of {len(frame)} bytes exceeds the NATS server's max_payload of "
                f"{nc.max_payload} bytes (max_body_size: {self.max_body_size} bytes)")
        return correlation_id_of(frame)

    def _unreachable(self) -> Unavailable:
        why = self._drop_reason or "not connected"
        return Unavailable(f"{self.url}: reconnecting to NATS ({why})")

    async def request(self, frame: bytes, timeout: float | None = None) -> bytes:
        """Send a request frame; return the reply frame with the same correlation id.

        Raises:
            DeadlineExceeded: no reply within ``timeout`` seconds.
            Unavailable: no NATS server can be reached, the connection dropped before the
                reply came, or no service is subscribed to the subject.
            EncodeError: a malformed frame, or a body over ``max_body_size``;
                :class:`PayloadTooLarge` for a frame over the server's ``max_payload``.
        """
        nc = self._nc
        if nc is None:
            nc = await self._connect_within(timeout)
        cid = self._check(frame, nc)
        pending = self.pending
        loop = asyncio.get_running_loop()
        fut = pending.expect(cid, loop)
        try:
            if not publish_nowait(nc, self.subject, frame, f"{self._inbox}{cid}"):
                if not nc.is_connected:
                    raise self._unreachable()
                await nc.publish(self.subject, frame, reply=f"{self._inbox}{cid}")
            if timeout is None:
                return await fut
            timer = loop.call_later(timeout, _expire, fut, timeout)
            try:
                return await fut
            finally:
                timer.cancel()
        finally:
            pending.discard(cid)

    async def _connect_within(self, timeout: float | None) -> NatsClient:
        try:
            async with asyncio.timeout(timeout):
                return await self._open()
        except TimeoutError:
            raise DeadlineExceeded(f"{self.url}: could not connect within {timeout:.3f}s") from None

    def cancel(self, correlation_id: int) -> None:
        """Send ``CANCEL`` for a request whose caller gave up (dropped when not connected:
        the request is lost with the connection then)."""
        nc = self._nc
        if nc is not None:
            publish_nowait(nc, self._cancel_subject, cancel_frame(correlation_id), f"{self._inbox}{correlation_id}")

    async def send(self, frame: bytes) -> None:
        """Publish an event frame on ``<subject>.events.<route>`` (connecting first)."""
        nc = self._nc or await self._open()
        self._check(frame, nc)
        subject = event_subject(self.subject, int.from_bytes(frame[4:6], "big"))
        if not publish_nowait(nc, subject, frame):
            if not nc.is_connected:
                raise self._unreachable()
            await nc.publish(subject, frame)

    async def close(self) -> None:
        """Close; requests still waiting fail with ``Unavailable``."""
        self._closed = True
        self.pending.fail_all(Unavailable(f"{self.url}: connection closed"))
        self._nc = None
        with contextlib.suppress(Exception):
            await self.link.close()


def _expire(fut: asyncio.Future[bytes], timeout: float) -> None:
    if not fut.done():
        fut.set_exception(DeadlineExceeded(f"no reply within {timeout:.3f}s"))
