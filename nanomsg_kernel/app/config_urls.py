"""URLs in node configs: is an address one a transport accepts, are a listener's options valid.

Each check returns what is wrong as text (the config names the file and key in front of it),
or ``None`` when all is well. The built-in transports are asked themselves, so a config is
refused for exactly what would fail when the node starts.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from nanomsg_kernel.errors import ConfigError

__all__ = ["check_listen_options", "check_url", "listens_on_port_0", "normalized", "parse_host_port"]


def parse_host_port(value: str) -> tuple[str, int]:
    """Parse ``host:port`` (or ``[v6]:port``, optionally after ``http://``); ``ValueError`` if bad."""
    text = value[len("http://"):] if value.startswith("http://") else value
    parts = urlsplit(f"//{text}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {value!r}") from None
    if not parts.hostname or port is None or parts.path or parts.query or parts.fragment:
        raise ValueError(f"expected host:port, got {value!r}")
    return parts.hostname, port


def check_url(url: Any, *, listen: bool) -> str | None:
    """What is wrong with ``url`` as a listen (``listen=True``) or connect address, or ``None``.

    Checks the form (``scheme://address``), that a transport exists for the scheme and can
    be loaded, and, for the built-in schemes, the address as the transport itself reads it
    (a host and port for ``tcp``/``zmq+tcp``, not port 0 when connecting; a name for
    ``inproc``; a path for ``zmq+ipc``; servers and a subject for ``nats``).
    """
    from nanomsg_kernel.transports.base import get_transport, split_url

    if not isinstance(url, str):
        return f"expected a URL string, got {type(url).__name__}"
    try:
        scheme, rest = split_url(url)
        get_transport(url)
    except ConfigError as exc:
        return str(exc)
    except ImportError as exc:
        return f"the transport for {url.split('://', 1)[0]}:// cannot be loaded: {exc}"
    try:
        if scheme == "inproc":
            if not rest or "/" in rest:
                return f"bad URL {url!r}: expected inproc://name"
        elif scheme in ("tcp", "tcp+tls"):
            from nanomsg_kernel.transports.tcp_stream import parse_address

            _scheme, host, port = parse_address(url)
            if not listen and (host is None or port == 0):
                return f"bad URL {url!r}: a host and a port other than 0 are needed to connect"
        elif scheme in ("zmq+tcp", "zmq+ipc"):
            from nanomsg_kernel.transports.zmq_endpoints import bind_endpoints, connect_endpoints

            if listen:
                bind_endpoints(url)
            else:
                connect_endpoints(url)
        elif scheme == "nats":
            from nanomsg_kernel.transports.nats_url import parse_nats_url

            parse_nats_url(url)
    except ConfigError as exc:
        return str(exc)
    return None


async def _no_handler(frame: bytes) -> bytes | None:
    """Stands in for a service when a built-in listener is made only to check its options."""
    raise AssertionError("a listener made to check options never serves")


def check_listen_options(url: str, options: dict[str, Any]) -> str | None:
    """What is wrong with the transport ``options`` of a listener at a checked ``url``, or ``None``.

    The built-in transports check their options when a listener is made, before anything is
    bound, so a (never started) listener is made and dropped; ZeroMQ's are parsed as its
    listener would. Options of other transports are checked when the node starts.
    """
    if not options:
        return None
    scheme = url.split("://", 1)[0].lower()
    try:
        if scheme in ("zmq+tcp", "zmq+ipc"):
            from nanomsg_kernel.transports.zmq_options import ListenOptions

            ListenOptions.parse(options, "listen")
        elif scheme in ("tcp", "inproc", "nats"):
            from nanomsg_kernel.transports.base import get_transport

            get_transport(url).listen(url, _no_handler, **options)
    except ConfigError as exc:
        return str(exc)
    except (TypeError, ValueError) as exc:
        return f"bad listen option: {exc}"
    return None


def listens_on_port_0(url: str) -> bool:
    """True for a checked TCP or ZeroMQ listen URL that asks for a free port."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("tcp", "tcp+tls"):
        from nanomsg_kernel.transports.tcp_stream import parse_address

        return parse_address(url)[2] == 0
    if scheme == "zmq+tcp":
        from nanomsg_kernel.transports.zmq_endpoints import bind_endpoints

        return bind_endpoints(url).requests.endswith(":*")
    return False


def normalized(url: str) -> str:
    """``url`` with its scheme in lower case (URLs are otherwise compared as written)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest}"
