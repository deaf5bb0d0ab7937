"""One request from the command line: JSON in, the reply as JSON out (``nanomsg-kernel call``).

::

    reply = await call_json("tcp://127.0.0.1:7000", CalcRoute, "CalcWork", '{"a": 6, "b": 3, "op": "DIV"}')

The whole exchange (connecting included) is bounded by the timeout. A TLS listener or a
CurveZMQ one is reached with the transport options :func:`client_security` makes from the
command line's files and keys.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from nanomsg_kernel.app.imports import import_ref
from nanomsg_kernel.app.jsonio import BytesFormat, loads, to_json
from nanomsg_kernel.app.security import client_tls, is_z85_key, read_curve_key
from nanomsg_kernel.client import Client
from nanomsg_kernel.errors import ConfigError, DeadlineExceeded
from nanomsg_kernel.routing import RoutingEnum

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["call_json", "client_security", "find_contract", "load_kernel", "publish_json"]

_ZMQ_SCHEMES = ("zmq+tcp", "zmq+ipc")


def load_kernel(ref: str) -> type[RoutingEnum]:
    """The routing enum at ``"module:Attribute"`` (``ConfigError`` if it is not one)."""
    obj = import_ref(ref)
    if not (isinstance(obj, type) and issubclass(obj, RoutingEnum)):
        raise ConfigError(f"{ref} is not a RoutingEnum (a kernel's routing enum)")
    obj.validate()
    return obj


def find_contract(routes: type[RoutingEnum], name: str) -> type:
    """The contract of ``routes`` named ``name``: its class name (``CalcWork``), its routing
    member (``CALC_WORK``) or its route number (``1``); ``ConfigError`` listing them otherwise."""
    for member, cls in routes.contracts().items():
        if name in (cls.__name__, member.name, str(int(member))):
            return cls
    known = ", ".join(f"{c.__name__} ({m.name}={int(m)})" for m, c in routes.contracts().items())
    raise ConfigError(f"{routes.__name__} has no contract {name!r}; it has: {known}")


def _server_key(value: str) -> bytes:
    """A service's public key given as 40 Z85 characters or as ``@FILE``."""
    if value.startswith("@"):
        return read_curve_key(value[1:], secret=False)
    if not is_z85_key(value):
        raise ConfigError(f"--curve-server-key: expected 40 Z85 characters or @FILE, got {value!r:.60}")
    return value.encode("ascii")


def client_security(
    url: str,
    *,
    tls: bool = False,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_server_name: str | None = None,
    curve_server_key: str | None = None,
    curve_key_file: str | None = None,
    nats_creds: str | None = None,
    nats_nkey: str | None = None,
    nats_user: str | None = None,
    nats_password_file: str | None = None,
    nats_token_file: str | None = None,
) -> dict[str, Any]:
    """The connect options that secure a call to ``url`` as the command line asks.

    TLS (``tcp://`` only) is on with ``tls`` or any ``tls_*`` option: the server's
    certificate must come from ``tls_ca`` (default: the system's authorities) and carry the
    URL's host (or ``tls_server_name``); ``tls_cert``/``tls_key`` are this client's
    certificate for a service that checks clients. CurveZMQ (``zmq+tcp://``, ``zmq+ipc://``)
    is on with ``curve_server_key`` (40 Z85 characters, or ``@FILE``); ``curve_key_file`` is
    this client's secret key file, for a service with an allow-list; without it a fresh key
    pair is made for the call (encrypted, but anonymous). For ``nats://``, the TLS options
    secure the connection to the NATS server, and ``nats_*`` authenticate to it (a creds
    file, an NKey seed file, a user with a password file, or a token file): secrets come
    from files, never from the command line, where other users could read them.

    Raises:
        ConfigError: an option that does not fit the URL's scheme, or a file that is not a
            certificate, key or key file.
    """
    scheme = url.split("://", 1)[0].lower()
    wants_tls = tls or any(v is not None for v in (tls_ca, tls_cert, tls_key, tls_server_name))
    wants_curve = curve_server_key is not None or curve_key_file is not None
    if scheme == "nats":
        return _nats_options(wants_tls, tls_ca, tls_cert, tls_key, tls_server_name, nats_creds, nats_nkey,
                             nats_user, nats_password_file, nats_token_file, wants_curve)
    if any(v is not None for v in (nats_creds, nats_nkey, nats_user, nats_password_file, nats_token_file)):
        raise ConfigError(f"the --nats options are for nats:// URLs, not {scheme}://")
    if wants_tls and scheme != "tcp":
        hint = "; ZeroMQ is secured with --curve-server-key" if scheme in _ZMQ_SCHEMES else ""
        raise ConfigError(f"the --tls options are for tcp:// URLs, not {scheme}://{hint}")
    if wants_curve and scheme not in _ZMQ_SCHEMES:
        hint = "; tcp:// is secured with --tls-ca" if scheme == "tcp" else ""
        raise ConfigError(f"the --curve options are for zmq+tcp:// and zmq+ipc:// URLs, not {scheme}://{hint}")
    options: dict[str, Any] = {}
    if wants_tls:
        options["ssl"] = client_tls(ca=tls_ca, cert=tls_cert, key=tls_key)
        if tls_server_name is not None:
            options["server_hostname"] = tls_server_name
    if wants_curve:
        if curve_server_key is None:
            raise ConfigError("--curve-key-file needs --curve-server-key (the service's public key)")
        options["curve_server_key"] = _server_key(curve_server_key)
        if curve_key_file is not None:
            options["curve_secret_key"] = read_curve_key(curve_key_file, secret=True)
    return options


def _nats_options(wants_tls: bool, ca: str | None, cert: str | None, key: str | None, server_name: str | None,
                  creds: str | None, nkey: str | None, user: str | None, password_file: str | None,
                  token_file: str | None, wants_curve: bool) -> dict[str, Any]:
    """The connect options of a ``nats://`` call (see :func:`client_security`)."""
    if wants_curve:
        raise ConfigError("the --curve options are for zmq+tcp:// and zmq+ipc:// URLs, not nats://")
    if (user is None) != (password_file is None):
        raise ConfigError("--nats-user and --nats-password-file go together")
    options: dict[str, Any] = {}
    if wants_tls:
        options["tls"] = client_tls(ca=ca, cert=cert, key=key)
        if server_name is not None:
            options["tls_hostname"] = server_name
    for name, path in (("password", password_file), ("token", token_file)):
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    options[name] = f.readline().strip()
            except OSError as exc:
                raise ConfigError(f"--nats-{name}-file: cannot read {path}: {exc.strerror or exc}") from None
    if user is not None:
        options["user"] = user
    if creds is not None:
        options["creds"] = creds
    if nkey is not None:
        options["nkey"] = nkey
    return options


def _message(routes: type[RoutingEnum], contract: str, payload: str, bytes_format: BytesFormat) -> Any:
    """``contract`` of ``routes`` read from the JSON text ``payload``, its values checked to fit
    the wire before anything is sent."""
    msg = loads(find_contract(routes, contract), payload, bytes_format=bytes_format)
    routes.codec().encode_body(msg)
    return msg


async def call_json(
    url: str,
    routes: type[RoutingEnum],
    contract: str,
    payload: str,
    *,
    timeout: float = 5.0,
    bytes_format: BytesFormat = "base64",
    on_slow: Callable[[], None] | None = None,
    slow_after: float = 0.5,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Send the request ``payload`` (JSON text) as ``contract`` to ``url``; the reply as JSON data.

    Args:
        on_slow: called once if no reply came within ``slow_after`` seconds (progress note).
        options: the transport's connect options (e.g. from :func:`client_security`).

    Raises:
        ConfigError / EncodeError: bad URL, contract or payload (nothing was sent).
        RemoteError: the service answered with an error status.
        DeadlineExceeded: no reply (or no connection) within ``timeout``.
        Unavailable: the service cannot be reached.
        DecodeError: the reply is not a valid frame of the kernel.
    """
    msg = _message(routes, contract, payload, bytes_format)
    loop = asyncio.get_running_loop()
    note = loop.call_later(slow_after, on_slow) if on_slow is not None else None
    client = Client(routes, url, timeout=timeout, **(options or {}))
    try:
        async with asyncio.timeout(timeout):
            await client.connect()
            reply = await client.call(msg)
    except TimeoutError as exc:
        if isinstance(exc, DeadlineExceeded):
            raise
        raise DeadlineExceeded(f"{url}: no reply within {timeout:g}s") from None
    finally:
        if note is not None:
            note.cancel()
        await client.close()
    return to_json(reply, bytes_format=bytes_format)


async def publish_json(
    url: str,
    routes: type[RoutingEnum],
    contract: str,
    payload: str,
    *,
    timeout: float = 5.0,
    bytes_format: BytesFormat = "base64",
    options: dict[str, Any] | None = None,
) -> None:
    """Send the event ``payload`` (JSON text) as ``contract`` to ``url``, one-way; connecting
    and handing the event to the transport are bounded by ``timeout``.

    Raises:
        ConfigError / EncodeError: bad URL, contract or payload (nothing was sent).
        DeadlineExceeded: no connection within ``timeout``.
        Unavailable: the service cannot be reached.
    """
    msg = _message(routes, contract, payload, bytes_format)
    client = Client(routes, url, timeout=timeout, **(options or {}))
    try:
        async with asyncio.timeout(timeout):
            await client.connect()
            await client.publish(msg)
    except TimeoutError as exc:
        if isinstance(exc, DeadlineExceeded):
            raise
        raise DeadlineExceeded(f"{url}: could not publish within {timeout:g}s") from None
    finally:
        await client.close()
