"""A small HTTP listener for a node's metrics, liveness and readiness.

::

    async with MetricsServer(lambda: [calc.metrics, gateway.metrics], "127.0.0.1", 0) as server:
        print(server.url)          # http://127.0.0.1:PORT/metrics

``GET /metrics`` (and ``HEAD``) answer ``200`` with what a prometheus_client registry
exposes (:mod:`nanomsg_kernel.app.prometheus`): the text format, or OpenMetrics when the
``Accept`` header asks for it. ``GET /healthz`` answers ``200`` while the process serves
HTTP at all; ``GET /readyz`` answers ``200`` when ``ready()`` names no reason not to be,
``503`` with the reasons otherwise (a node starting, or draining on its way out). Any other
path is ``404``, any other method ``405``. Each connection serves one request and is
closed. The request head is bounded (8 KiB) and must arrive within a few seconds; a
request with a body is refused. At most ``max_connections`` connections are held at once
(:data:`MAX_CONNECTIONS` by default), each taking a descriptor of the process's budget
(:mod:`nanomsg_kernel.fdbudget`); one more is answered ``503`` and closed at once. Built on
asyncio streams (prometheus_client's own servers have no connection cap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder

from nanomsg_kernel.app.prometheus import metrics_registry
from nanomsg_kernel.fdbudget import DescriptorBudget
from nanomsg_kernel.lifecycle import AsyncResource
from nanomsg_kernel.metrics import CallMetrics
from nanomsg_kernel.ratelimit import rate_limited
from nanomsg_kernel.transports.acceptor import Acceptor, listening_sockets
from nanomsg_kernel.transports.admission import ConnectionGate

__all__ = ["CONTENT_TYPE", "MAX_CONNECTIONS", "MAX_REQUEST_HEAD", "MetricsServer"]

log = logging.getLogger("nanomsg_kernel.app.metrics_http")

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The content type of ``/metrics`` when the request names none it prefers (Prometheus' text
format 0.0.4, prometheus_client's default)."""
_PATHS = ("/metrics", "/healthz", "/readyz")
MAX_REQUEST_HEAD = 8192
"""Largest request line plus headers accepted, in bytes."""
MAX_CONNECTIONS = 32
"""The default ``max_connections`` (lower when the process's descriptor share is lower)."""
_BACKLOG = 100
_READ_TIMEOUT = 5.0
_LINGER = 0.2
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 413: "Content Too Large", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}
_BUSY_BODY = b"too many connections\n"
_BUSY = (f"HTTP/1.1 503 {_REASONS[503]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
         f"Content-Length: {len(_BUSY_BODY)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode("ascii") + _BUSY_BODY


async def _discard_unread(reader: asyncio.StreamReader) -> None:
    """Read (bounded) what the client still sends before closing, so that closing with unread
    data does not reset the connection before the client has read the answer."""
    left = 1 << 20
    while left > 0:
        try:
            chunk = await asyncio.wait_for(reader.read(min(left, 65536)), _LINGER)
        except (TimeoutError, asyncio.LimitOverrunError, ValueError):
            return
        if not chunk:
            return
        left -= len(chunk)


class MetricsServer(AsyncResource):
    """Serves ``GET /metrics``, ``/healthz`` and ``/readyz``.

    Args:
        source: the prometheus_client registry to expose, or a function returning the call
            metrics to expose at each request (then a registry is made for them with
            :func:`~nanomsg_kernel.app.prometheus.metrics_registry`, process metrics included).
        host: address to bind.
        port: port to bind (0: any free port; read :attr:`port` after :meth:`start`).
        max_connections: connections held at once; one more is answered ``503`` and closed.
            Default: :data:`MAX_CONNECTIONS`, or the listener's share of the process's
            descriptors (:func:`~nanomsg_kernel.fdbudget.listener_share`) if that is less.
        descriptor_budget: the descriptors connections take one each of (default: the
            process's, shared with every other listener).
        ready: returns the reasons the node is not ready (none: ``/readyz`` answers
            ``200``). Default: always ready while the listener runs.
    """

    def __init__(
        self,
        source: CollectorRegistry | Callable[[], Iterable[CallMetrics]],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_connections: int | None = None,
        descriptor_budget: DescriptorBudget | None = None,
        ready: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        self.gate = ConnectionGate(max_connections, descriptor_budget, default_cap=MAX_CONNECTIONS)
        """Admits connections: at most ``max_connections``, each taking a descriptor."""
        self.registry = source if isinstance(source, CollectorRegistry) else metrics_registry(source)
        """The registry ``GET /metrics`` exposes."""
        self.ready = ready
        self.host = host
        self.port = port
        self.requests = 0
        """Requests answered so far (any status)."""
        self._acceptor: Acceptor | None = None

    @property
    def max_connections(self) -> int:
        """Connections held at once, at most."""
        return self.gate.max_connections

    @property
    def open_connections(self) -> int:
        """Connections admitted and not yet closed."""
        return self.gate.open

    @property
    def refused_connections(self) -> int:
        """Connections answered ``503`` at once: ``max_connections`` were open, or the
        process had no descriptor left for them."""
        return self.gate.refused

    @property
    def url(self) -> str:
        """``http://host:port/metrics`` with the bound port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        """Bind and start serving."""
        sockets = await listening_sockets(self.host, self.port, _BACKLOG)
        self.port = int(sockets[0].getsockname()[1])
        self._acceptor = Acceptor(sockets, self.gate, self._serve, limit=MAX_REQUEST_HEAD, refuse=self._refuse,
                                  name=self.url)
        self._acceptor.start()

    async def close(self) -> None:
        """Stop accepting and close open connections."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is None:
            return
        await acceptor.close()
        open_connections = acceptor.connections
        for task in open_connections:
            task.cancel()
        if open_connections:
            await asyncio.wait(open_connections)

    def _refuse(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            rate_limited(log).warning("refusing a metrics connection from %s (%d open, the maximum is %d)",
                                      conn.getpeername(), self.gate.open, self.gate.max_connections)
            conn.send(_BUSY)  # a new socket's send buffer takes it whole

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body, head_only, content_type = await self._answer(reader)
            self.requests += 1
            headers = [
                f"HTTP/1.1 {status} {_REASONS[status]}",
                f"Content-Type: {content_type}",
                f"Content-Length: {len(body)}",
                "Connection: close",
            ]
            if status == 405:
                headers.append("Allow: GET, HEAD")
            head = "\r\n".join(headers) + "\r\n\r\n"
            writer.write(head.encode("ascii") + (b"" if head_only else body))
            await asyncio.wait_for(writer.drain(), _READ_TIMEOUT)
            if status in (400, 413, 431):  # the request may not have been read to its end
                await _discard_unread(reader)
        except (OSError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes, bool, str]:
        """Read one request: its status, body, whether only the head is sent, and the body's type."""
        plain = "text/plain; charset=utf-8"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
        except asyncio.LimitOverrunError:
            return 431, b"request head too large\n", False, plain
        except asyncio.IncompleteReadError:
            return 400, b"incomplete request\n", False, plain
        except TimeoutError:
            return 408, b"request timed out\n", False, plain
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400, b"bad request line\n", False, plain
        method, target, _version = parts
        accept = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length" and value.strip() not in ("", "0"):
                return 413, b"requests with a body are not accepted\n", False, plain
            if name == "transfer-encoding":
                return 413, b"requests with a body are not accepted\n", False, plain
            if name == "accept":
                accept = value.strip()
        path = target.split("?", 1)[0]
        if path not in _PATHS:
            return 404, b"not found: try /metrics, /healthz or /readyz\n", method == "HEAD", plain
        if method not in ("GET", "HEAD"):
            return 405, b"only GET and HEAD\n", False, plain
        head_only = method == "HEAD"
        if path == "/healthz":
            return 200, b"ok\n", head_only, plain
        if path == "/readyz":
            return self._readiness(head_only)
        try:
            encoder, content_type = choose_encoder(accept)
            body = encoder(self.registry)
        except Exception:
            log.exception("metrics could not be rendered")
            return 500, b"metrics could not be rendered\n", False, plain
        return 200, body, head_only, content_type

    def _readiness(self, head_only: bool) -> tuple[int, bytes, bool, str]:
        plain = "text/plain; charset=utf-8"
        try:
            reasons = list(self.ready()) if self.ready is not None else []
        except Exception:
            log.exception("readiness could not be read")
            return 500, b"readiness could not be read\n", False, plain
        if not reasons:
            return 200, b"ready\n", head_only, plain
        text = "not ready:\n" + "".join(f"  {r}\n" for r in reasons)
        return 503, text.encode("utf-8", "backslashreplace"), head_only, plain
