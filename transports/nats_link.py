"""One nats-py connection of a ``nats://`` listener or client, and what the transport needs
of it beyond nats-py's public interface.

:class:`NatsLink` opens the connection (trying each listed server once; ``Unavailable``
naming the last error when none answers), reconnects for ever once connected (nats-py
learns the cluster's other servers from the one it reaches), and reports drops and returns
to its owner. What nats-py would buffer while reconnecting is dropped at the drop, never
sent after the return: a request whose connection dropped has already failed with
``Unavailable``, and it must not run behind its caller's back.

:func:`publish_nowait` queues a message without awaiting anything (nats-py's ``publish`` is
a coroutine): a reply leaves in the step that made it, with no task per message.
Credentials never reach a log line: they are handed to nats-py as keywords, never inside a
server URL, and the link's :attr:`NatsLink.name` is the URL with its secrets redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, cast

try:
    import nats
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
except ImportError as exc:  # the optional dependency
    raise ImportError(f"the nats:// transport needs nats-py: pip install 'nanomsg-kernel[nats]' ({exc})") from exc

from nanomsg_kernel.errors import ConfigError, Unavailable
from nanomsg_kernel.ratelimit import rate_limited

__all__ = ["Msg", "NatsClient", "NatsLink", "Subscription", "publish_nowait"]

log = logging.getLogger("nanomsg_kernel.transports.nats")
peer_log = rate_limited(log)

_CRLF = b"\r\n"
RECONNECT_WAIT = 0.25
"""Seconds between two attempts on the same server while reconnecting (nats-py's default
is 2 s; another server of the cluster is tried at once)."""


class _OrderedClient(NatsClient):
    """nats-py's client, with ``flush()`` a barrier for everything queued before it.

    nats-py writes a ``PING`` straight to the socket while commands queued before it (a
    ``SUB``, an ``UNSUB``, a ``PUB``) may still wait for its flusher: the ``PONG`` can then
    come back before the server saw them. Here the queue is written first, so after
    ``flush()`` the server has processed every command sent before it: a listener is
    subscribed once ``start()`` returns, unsubscribed once it drained, and a no-responders
    answer to a probe comes before the ``PONG``.
    """

    async def _send_ping(self, future: asyncio.Future[Any] | None = None) -> None:
        transport = self._transport
        if self._pending and transport is not None and self.is_connected:
            transport.writelines(self._pending[:])
            self._pending = []
            self._pending_data_size = 0
        await super()._send_ping(future)


def publish_nowait(nc: NatsClient, subject: str, payload: bytes, reply: str = "") -> bool:
    """Queue ``payload`` on ``subject`` (with ``reply`` as its reply subject) for nats-py's
    flusher, at once; False (nothing queued) when ``nc`` is not connected or its outgoing
    buffer is over its limit (the caller then awaits ``nc.publish``, or gives up)."""
    if not nc.is_connected or nc._pending_data_size > nc._max_pending_size:
        return False
    head = f"PUB {subject} {reply} {len(payload)}\r\n".encode()
    pending = nc._pending
    pending.append(head)
    pending.append(payload)
    pending.append(_CRLF)
    nc._pending_data_size += len(head) + len(payload) + 2
    stats = nc.stats
    stats["out_msgs"] += 1
    stats["out_bytes"] += len(payload)
    queue = nc._flush_queue
    if queue is not None and queue.empty():
        queue.put_nowait(asyncio.get_running_loop().create_future())
    return True


class NatsLink:
    """The nats-py connection of one listener or client.

    Args:
        servers: ``nats://host:port`` URLs (no credentials in them).
        name: what log lines and errors name (the redacted URL).
        auth: keywords of :func:`nats.connect` made by
            :func:`~nanomsg_kernel.transports.nats_url.auth_options`.
        connect_timeout: seconds one connect (all the listed servers) may take.
        on_drop: called when the connection drops (nats-py then reconnects).
        on_return: called when it is connected again.
    """

    def __init__(self, servers: list[str], name: str, auth: dict[str, Any], *, connect_timeout: float,
                 on_drop: Callable[[str], None] | None = None, on_return: Callable[[], None] | None = None) -> None:
        self.servers = servers
        self.name = name
        self.auth = auth
        self.connect_timeout = connect_timeout
        self.on_drop = on_drop
        self.on_return = on_return
        self.nc: NatsClient | None = None
        self.drops = 0
        """Times the connection dropped."""
        self.returns = 0
        """Times it was connected again."""
        self._errors: list[str] = []
        self._opening: asyncio.Task[NatsClient] | None = None

    def __repr__(self) -> str:
        return f"<NatsLink {self.name}>"

    async def open(self) -> NatsClient:
        """The connection, opened now if it is not (one attempt at a time)."""
        if self.nc is not None:
            return self.nc
        if self._opening is None:
            self._opening = asyncio.get_running_loop().create_task(self._open(), name=f"connect {self.name}")
        try:
            return await asyncio.shield(self._opening)
        finally:
            if self._opening is not None and self._opening.done():
                self._opening = None

    async def _open(self) -> NatsClient:
        self._errors = []
        failed = asyncio.Event()
        tried = len(self.servers)

        async def error_cb(exc: Exception) -> None:
            text = _describe(exc)
            self._errors.append(text)
            if self.nc is None:
                if len(self._errors) >= tried:
                    failed.set()
            else:
                peer_log.warning("%s: NATS: %s", self.name, text)

        async def disconnected_cb() -> None:
            nc = self.nc
            if nc is None:
                return
            # nats-py would send what it holds once connected again: requests whose callers
            # were already told Unavailable, and replies nobody waits for. Drop them.
            nc._pending = []
            nc._pending_data_size = 0
            self.drops += 1
            log.info("%s: connection to the NATS server lost; reconnecting", self.name)
            if self.on_drop is not None:
                self.on_drop(self._errors[-1] if self._errors else "connection to the NATS server lost")

        async def reconnected_cb() -> None:
            self.returns += 1
            nc = self.nc
            url = nc.connected_url if nc is not None else None
            log.info("%s: connected again to the NATS server %s", self.name,
                     f"{url.hostname}:{url.port}" if url is not None else "?")
            if self.on_return is not None:
                self.on_return()

        nc = _OrderedClient()
        connecting = asyncio.ensure_future(nc.connect(
            servers=self.servers, error_cb=error_cb, disconnected_cb=disconnected_cb,
            reconnected_cb=reconnected_cb, connect_timeout=max(1, round(self.connect_timeout)),
            max_reconnect_attempts=-1, reconnect_time_wait=cast(int, RECONNECT_WAIT), dont_randomize=False,
            allow_reconnect=True, **self.auth))
        gave_up = asyncio.ensure_future(failed.wait())
        try:
            done, _ = await asyncio.wait({connecting, gave_up}, timeout=self.connect_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if connecting not in done or connecting.exception() is not None:
                why = (_describe(connecting.exception()) if connecting.done() and connecting.exception()
                       else self._errors[-1] if self._errors else f"no answer within {self.connect_timeout:g}s")
                raise Unavailable(f"{self.name}: cannot connect to NATS: {why}")
        except BaseException:
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        finally:
            gave_up.cancel()
        self.nc = nc
        url = nc.connected_url
        log.debug("%s: connected to the NATS server %s (max_payload %d)", self.name,
                  f"{url.hostname}:{url.port}" if url is not None else "?", nc.max_payload)
        return nc

    async def close(self, flush: float = 1.0) -> None:
        """Send what is queued (within ``flush`` seconds) and close the connection."""
        if self._opening is not None:
            self._opening.cancel()
            with contextlib.suppress(BaseException):
                await self._opening
            self._opening = None
        nc, self.nc = self.nc, None
        if nc is None:
            return
        if nc.is_connected and flush > 0:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=cast(int, flush))
        with contextlib.suppress(Exception):
            await nc.close()


def _describe(exc: BaseException | None) -> str:
    """A log-safe account of a nats-py error (its class and text: never the options)."""
    if exc is None:
        return "unknown error"
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, nats.errors.Error) and not text.startswith("nats:"):
        text = f"nats: {text}"
    return text


def positive(name: str, value: Any) -> float:
    """``value`` as a positive number of seconds, else ``ConfigError``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return float(value)
