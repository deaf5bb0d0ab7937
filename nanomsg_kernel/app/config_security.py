"""The ``tls`` and ``curve`` tables of a node config: transport options made from files.

On a listener::

    listen = [
      { url = "tcp://0.0.0.0:7000", tls = { cert = "server.pem", key = "server.key", ca = "clients-ca.pem" } },
      { url = "zmq+tcp://0.0.0.0:7001", curve = { secret_key_file = "server.key_secret",
                                                  allow = ["<client public key>"], allow_files = ["alice.key"] } },
    ]

On a binding (the client side)::

    bindings = { calc = { url = "tcp://calc.internal:7000", tls = { ca = "ca.pem", cert = "me.pem", key = "me.key" } },
                 store = { url = "zmq+tcp://store.internal:7001", curve = { server_key_file = "store.key",
                                                                            secret_key_file = "me.key_secret" } } }

Paths are relative to the config file's directory. ``tls`` goes with ``tcp://`` URLs,
``curve`` with ``zmq+tcp://`` and ``zmq+ipc://``. A ``ca`` on a listener makes TLS mutual:
a client without a certificate issued by it is refused. A listener's ``allow`` lists the
only client keys let in (without it, any client that knows the server's public key may
connect). Each problem is reported as ``KEY: message`` through ``bad``; key files that other
users can read are reported through ``warn``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from nanomsg_kernel.app.security import (
    client_tls,
    is_z85_key,
    read_curve_key,
    secret_file_warning,
    server_tls,
)
from nanomsg_kernel.errors import ConfigError

__all__ = ["connect_security", "listen_security"]

Report = Callable[[str, str], None]
"""``(key, message)``: a problem, or a warning, about one key of the config."""

_LISTEN_TLS = ("cert", "key", "ca")
_CONNECT_TLS = ("ca", "cert", "key", "server_name")
_LISTEN_CURVE = ("secret_key_file", "allow", "allow_files")
_CONNECT_CURVE = ("server_key", "server_key_file", "secret_key_file")
_TLS_SCHEMES = ("tcp",)
_CURVE_SCHEMES = ("zmq+tcp", "zmq+ipc")


class _Table:
    """One ``tls`` or ``curve`` table being read: its key, base directory and reporters."""

    def __init__(self, value: Any, key: str, allowed: tuple[str, ...], base: str, bad: Report, warn: Report) -> None:
        self.key = key
        self.base = base
        self.bad = bad
        self.warn = warn
        self.ok = isinstance(value, dict)
        self.value: dict[str, Any] = value if isinstance(value, dict) else {}
        if not self.ok:
            bad(key, f"expected a table, got {type(value).__name__}")
        for k in self.value:
            if k not in allowed:
                bad(f"{key}.{k}", f"unknown key (expected one of: {', '.join(allowed)})")
                self.ok = False

    def path(self, name: str, *, secret: bool = False) -> str | None:
        """The file named by key ``name`` (relative to the config's directory), if given."""
        raw = self.value.get(name)
        if raw is None:
            return None
        if not isinstance(raw, str) or not raw:
            self.bad(f"{self.key}.{name}", f"expected a file path, got {raw!r}")
            self.ok = False
            return None
        full = os.path.join(self.base, os.path.expanduser(raw))
        if secret:
            warning = secret_file_warning(full)
            if warning:
                self.warn(f"{self.key}.{name}", warning)
        return full

    def attempt(self, name: str, make: Callable[[], Any]) -> Any:
        """``make()``, or ``None`` with its ``ConfigError`` reported under key ``name``."""
        try:
            return make()
        except ConfigError as exc:
            self.bad(f"{self.key}.{name}" if name else self.key, str(exc))
            self.ok = False
            return None


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def _wrong_scheme(url: str, key: str, table: str, bad: Report) -> bool:
    """Report (and return True) when the ``table`` (``tls`` or ``curve``) does not fit ``url``."""
    scheme = _scheme(url)
    fits = _TLS_SCHEMES if table == "tls" else _CURVE_SCHEMES
    if scheme in fits:
        return False
    message = f"{table} is for {' and '.join(f'{s}://' for s in fits)} URLs, not {scheme}://"
    if scheme in _CURVE_SCHEMES:
        message += " (ZeroMQ is secured with curve = { … })"
    elif scheme in _TLS_SCHEMES:
        message += " (tcp:// is secured with tls = { … })"
    bad(f"{key}.{table}", message)
    return True


def _listen_tls(value: Any, key: str, base: str, bad: Report, warn: Report) -> dict[str, Any]:
    t = _Table(value, key, _LISTEN_TLS, base, bad, warn)
    cert, tls_key, ca = t.path("cert"), t.path("key", secret=True), t.path("ca")
    if t.ok and cert is None:
        bad(f"{key}.cert", "missing: the server's certificate chain (PEM)")
        return {}
    if not t.ok or cert is None:
        return {}
    ctx = t.attempt("", lambda: server_tls(cert, tls_key, ca=ca))
    return {} if ctx is None else {"ssl": ctx}


def _listen_curve(value: Any, key: str, base: str, bad: Report, warn: Report) -> dict[str, Any]:
    t = _Table(value, key, _LISTEN_CURVE, base, bad, warn)
    secret_file = t.path("secret_key_file", secret=True)
    if t.ok and secret_file is None:
        bad(f"{key}.secret_key_file", "missing: the server's secret key file")
        return {}
    secret = None if secret_file is None else t.attempt("secret_key_file", lambda: read_curve_key(secret_file, secret=True))
    allow: list[bytes] | None = None
    for name in ("allow", "allow_files"):
        items = t.value.get(name)
        if items is None:
            continue
        if not isinstance(items, list):
            bad(f"{key}.{name}", f"expected a list, got {type(items).__name__}")
            t.ok = False
            continue
        allow = allow or []
        for i, item in enumerate(items):
            if name == "allow":
                if isinstance(item, str) and is_z85_key(item):
                    allow.append(item.encode("ascii"))
                else:
                    bad(f"{key}.allow[{i}]", f"expected a client's public key (40 Z85 characters), got {item!r:.60}"
                        " (key files go in allow_files)")
                    t.ok = False
                continue
            if not isinstance(item, str) or not item:
                bad(f"{key}.allow_files[{i}]", f"expected a file path, got {item!r}")
                t.ok = False
                continue
            path = os.path.join(base, os.path.expanduser(item))
            public = t.attempt(f"allow_files[{i}]", functools.partial(read_curve_key, path, secret=False))
            if public is not None:
                allow.append(public)
    if not t.ok or secret is None:
        return {}
    options: dict[str, Any] = {"curve_secret_key": secret}
    if allow is not None:
        options["curve_allow"] = allow
    return options


def _connect_tls(value: Any, key: str, base: str, bad: Report, warn: Report) -> dict[str, Any]:
    t = _Table(value, key, _CONNECT_TLS, base, bad, warn)
    ca, cert, tls_key = t.path("ca"), t.path("cert"), t.path("key", secret=True)
    name = t.value.get("server_name")
    if name is not None and (not isinstance(name, str) or not name):
        bad(f"{key}.server_name", f"expected a host name, got {name!r}")
        t.ok = False
    if not t.ok:
        return {}
    ctx = t.attempt("", lambda: client_tls(ca=ca, cert=cert, key=tls_key))
    if ctx is None:
        return {}
    return {"ssl": ctx} | ({"server_hostname": name} if name else {})


def _connect_curve(value: Any, key: str, base: str, bad: Report, warn: Report) -> dict[str, Any]:
    t = _Table(value, key, _CONNECT_CURVE, base, bad, warn)
    inline, server_file = t.value.get("server_key"), t.path("server_key_file")
    secret_file = t.path("secret_key_file", secret=True)
    if t.ok and (inline is None) == (server_file is None):
        bad(key, "give the service's public key as server_key or server_key_file (one of them)")
        return {}
    if inline is not None and not (isinstance(inline, str) and is_z85_key(inline)):
        bad(f"{key}.server_key", f"expected the service's public key (40 Z85 characters), got {inline!r:.60}")
        t.ok = False
    server = inline.encode("ascii") if isinstance(inline, str) else None
    if server_file is not None:
        server = t.attempt("server_key_file", lambda: read_curve_key(server_file, secret=False))
    secret = None if secret_file is None else t.attempt("secret_key_file", lambda: read_curve_key(secret_file, secret=True))
    if not t.ok or server is None:
        return {}
    return {"curve_server_key": server} | ({"curve_secret_key": secret} if secret is not None else {})


def listen_security(item: dict[str, Any], url: str, key: str, base: str, bad: Report, warn: Report) -> dict[str, Any]:
    """The transport options made from the ``tls`` and ``curve`` tables of a listener table."""
    options: dict[str, Any] = {}
    if "ssl" in item:
        bad(f"{key}.ssl", 'use tls = { cert = "…", key = "…", ca = "…" } (ssl takes a Python object)')
    if "tls" in item and not _wrong_scheme(url, key, "tls", bad):
        options |= _listen_tls(item["tls"], f"{key}.tls", base, bad, warn)
    if "curve" in item and not _wrong_scheme(url, key, "curve", bad):
        options |= _listen_curve(item["curve"], f"{key}.curve", base, bad, warn)
    return options


def connect_security(item: dict[str, Any], url: str, key: str, base: str, bad: Report, warn: Report) -> dict[str, Any]:
    """The transport options made from the ``tls`` and ``curve`` tables of a binding table."""
    options: dict[str, Any] = {}
    if "tls" in item and not _wrong_scheme(url, key, "tls", bad):
        options |= _connect_tls(item["tls"], f"{key}.tls", base, bad, warn)
    if "curve" in item and not _wrong_scheme(url, key, "curve", bad):
        options |= _connect_curve(item["curve"], f"{key}.curve", base, bad, warn)
    return options
