"""The ``nats`` table of a node config: how a ``nats://`` listener or binding authenticates
to its NATS servers, and TLS to them.

::

    listen = [{ url = "nats://nats1:4222,nats2:4222/calc",
                nats = { creds = "calc.creds", ca = "nats-ca.pem" } }]
    bindings = { store = { url = "nats://nats1:4222/store",
                           nats = { user = "gateway", password_file = "gateway.pass" } } }

Keys: ``user`` with ``password`` or ``password_file``; ``token`` or ``token_file``;
``creds`` (a ``.creds`` file) or ``nkey`` (an NKey seed file); TLS with ``ca`` (the NATS
server's authority), ``cert``/``key`` (this node's certificate, for servers that verify
clients), ``tls = true`` (the system's authorities) and ``server_name``. Paths are relative
to the config file. A listener on NATS is itself a NATS client, so the table reads the
same on both. Secrets are best kept in files (``password_file``, ``token_file``) that only
their owner can read; a file others can read is reported as a warning.
"""

from __future__ import annotations

from typing import Any

from nanomsg_kernel.app.config_security import Report, _Table
from nanomsg_kernel.app.security import client_tls

__all__ = ["nats_security"]

_KEYS = ("user", "password", "password_file", "token", "token_file", "creds", "nkey", "tls", "ca", "cert", "key",
         "server_name")


def _secret(t: _Table, inline: str, file_key: str) -> str | None:
    """An inline secret, or the first line of the file that holds it."""
    value = t.value.get(inline)
    path = t.path(file_key, secret=True)
    if value is not None and path is not None:
        t.bad(f"{t.key}.{inline}", f"give {inline} or {file_key}, not both")
        t.ok = False
        return None
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                value = f.readline().strip()
        except OSError as exc:
            t.bad(f"{t.key}.{file_key}", f"cannot read {path}: {exc.strerror or exc}")
            t.ok = False
            return None
    if value is not None and (not isinstance(value, str) or not value):
        t.bad(f"{t.key}.{file_key if path else inline}", "expected a non-empty string")
        t.ok = False
        return None
    return value


def nats_security(item: dict[str, Any], url: str, key: str, base: str, bad: Report, warn: Report) -> dict[str, Any]:
    """The options of a ``nats://`` listener or client made from the ``nats`` table of
    ``item`` (each problem reported through ``bad`` as ``KEY: message``)."""
    if "nats" not in item:
        return {}
    k = f"{key}.nats"
    if url.split("://", 1)[0].lower() != "nats":
        bad(k, f"nats is for nats:// URLs, not {url.split('://', 1)[0]}://")
        return {}
    t = _Table(item["nats"], k, _KEYS, base, bad, warn)
    options: dict[str, Any] = {}
    user = t.value.get("user")
    if user is not None:
        if not isinstance(user, str) or not user:
            bad(f"{k}.user", f"expected a user name, got {user!r}")
            t.ok = False
        else:
            options["user"] = user
    password = _secret(t, "password", "password_file")
    token = _secret(t, "token", "token_file")
    if password is not None:
        options["password"] = password
    if token is not None:
        options["token"] = token
    if ("user" in options) != ("password" in options):
        bad(k, "user and password (or password_file) go together")
        t.ok = False
    for file_key in ("creds", "nkey"):
        path = t.path(file_key, secret=True)
        if path is not None:
            options[file_key] = path
    ca, cert, tls_key = t.path("ca"), t.path("cert"), t.path("key", secret=True)
    tls = t.value.get("tls", False)
    if not isinstance(tls, bool):
        bad(f"{k}.tls", f"expected true or false, got {tls!r}")
        t.ok = False
    name = t.value.get("server_name")
    if name is not None and (not isinstance(name, str) or not name):
        bad(f"{k}.server_name", f"expected a host name, got {name!r}")
        t.ok = False
    if not t.ok:
        return {}
    if tls or ca or cert:
        ctx = t.attempt("", lambda: client_tls(ca=ca, cert=cert, key=tls_key))
        if ctx is None:
            return {}
        options["tls"] = ctx
    if name:
        options["tls_hostname"] = name
    return options
