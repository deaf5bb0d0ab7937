"""ZeroMQ URLs: ``zmq+tcp://host:port`` and ``zmq+ipc:///path``, and their events endpoints.

A service listens on one URL for requests (a ``ROUTER``) and, when it has event
subscribers, on a second endpoint for events (a ``SUB``). The URL names both::

    zmq+tcp://10.0.0.5:7000?events=7001     requests on port 7000, events on port 7001
    zmq+ipc:///run/calc.sock?events=/run/calc.events

Without ``?events=``, the events endpoint is the request port + 1 (tcp) or the path with
``.events`` appended (ipc); a listener bound to port 0 picks a free events port too, and
its ``url`` names it. A client may name several services, comma-separated
(``zmq+tcp://a:7000,zmq+tcp://b:7000``; an item without a scheme takes the previous one's).
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import parse_qs

from nanomsg_kernel.errors import ConfigError

__all__ = ["Endpoint", "bind_endpoints", "connect_endpoints", "public_url"]

SCHEMES = {"zmq+tcp": "tcp", "zmq+ipc": "ipc"}


class Endpoint(NamedTuple):
    """One service's ZeroMQ endpoints."""

    requests: str
    """ZeroMQ address of the request socket, e.g. ``tcp://127.0.0.1:7000``."""
    events: str
    """ZeroMQ address of the events socket (``tcp://host:*`` when bound to a free port)."""


def _split(item: str, default_scheme: str | None) -> tuple[str, str, str | None]:
    """``(scheme, address, events option)`` of one URL."""
    if "://" in item:
        scheme, rest = item.split("://", 1)
        scheme = scheme.lower()
    elif default_scheme is not None:
        scheme, rest = default_scheme, item
    else:
        raise ConfigError(f"bad ZeroMQ URL {item!r}: expected zmq+tcp://host:port or zmq+ipc:///path")
    if scheme not in SCHEMES:
        raise ConfigError(f"bad ZeroMQ URL {item!r}: the scheme must be zmq+tcp or zmq+ipc")
    events: str | None = None
    if "?" in rest:
        rest, query = rest.split("?", 1)
        params = parse_qs(query, keep_blank_values=True, strict_parsing=False)
        unknown = sorted(set(params) - {"events"})
        if unknown:
            raise ConfigError(f"bad ZeroMQ URL {item!r}: unknown parameter(s) {', '.join(unknown)}")
        if "events" in params:
            events = params["events"][-1]
    if not rest:
        raise ConfigError(f"bad ZeroMQ URL {item!r}: no address")
    return scheme, rest, events


def _tcp_parts(scheme: str, address: str, url: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or "/" in address:
        raise ConfigError(f"bad ZeroMQ URL {url!r}: expected {scheme}://host:port")
    if port == "*":
        return host, 0
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"bad ZeroMQ URL {url!r}: port {port!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"bad ZeroMQ URL {url!r}: port {number} is out of range")
    return host, number


def _endpoint(scheme: str, address: str, events: str | None, url: str, *, bind: bool) -> Endpoint:
    if SCHEMES[scheme] == "ipc":
        return Endpoint(f"ipc://{address}", f"ipc://{events or address + '.events'}")
    host, port = _tcp_parts(scheme, address, url)
    if events is not None:
        ev_host, ev_port = (host, _port(events, url)) if ":" not in events else _tcp_parts(scheme, events, url)
    elif port == 0:
        ev_host, ev_port = host, 0
    else:
        ev_host, ev_port = host, port + 1
        if ev_port > 65535:
            raise ConfigError(f"bad ZeroMQ URL {url!r}: no port after {port} for events; give ?events=PORT")
    if not bind and (port == 0 or ev_port == 0):
        raise ConfigError(f"bad ZeroMQ URL {url!r}: cannot connect to port 0")
    return Endpoint(f"tcp://{host}:{port or '*'}", f"tcp://{ev_host}:{ev_port or '*'}")


def _port(text: str, url: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise ConfigError(f"bad ZeroMQ URL {url!r}: events={text!r} is not a port") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"bad ZeroMQ URL {url!r}: events port {number} is out of range")
    return number


def bind_endpoints(url: str) -> Endpoint:
    """The addresses a listener at ``url`` binds."""
    if not isinstance(url, str):
        raise ConfigError(f"bad ZeroMQ URL {url!r}")
    if "," in url:
        raise ConfigError(f"bad ZeroMQ URL {url!r}: a listener binds one endpoint")
    scheme, address, events = _split(url.strip(), None)
    return _endpoint(scheme, address, events, url, bind=True)


def connect_endpoints(url: str) -> list[Endpoint]:
    """The services a client connects to: one per comma-separated item of ``url``."""
    if not isinstance(url, str):
        raise ConfigError(f"bad ZeroMQ URL {url!r}")
    found: list[Endpoint] = []
    scheme: str | None = None
    for item in url.split(","):
        item = item.strip()
        if not item:
            raise ConfigError(f"bad ZeroMQ URL {url!r}: empty item in the endpoint list")
        scheme, address, events = _split(item, scheme)
        found.append(_endpoint(scheme, address, events, url, bind=False))
    if len(set(found)) != len(found):
        raise ConfigError(f"bad ZeroMQ URL {url!r}: an endpoint is listed twice")
    return found


def public_url(requests: str, events: str | None) -> str:
    """The ``zmq+...`` URL of bound ZeroMQ addresses (``LAST_ENDPOINT`` values)."""
    transport, address = requests.split("://", 1)
    url = f"zmq+{transport}://{address}"
    if events is None:
        return url
    ev_address = events.split("://", 1)[1]
    if transport == "tcp":
        ev_host, _, ev_port = ev_address.rpartition(":")
        host = address.rpartition(":")[0]
        return f"{url}?events={ev_port if ev_host == host else ev_address}"
    return f"{url}?events={ev_address}"
