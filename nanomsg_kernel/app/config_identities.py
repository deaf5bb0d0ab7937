"""The ``[identities]`` table of a node config, and the ``allow`` list of a listener.

::

    [identities]
    gateway = { cert_name = "gateway.internal" }     # a TLS client certificate's name
    batch = { curve_key = "<40 Z85 characters>" }    # a CurveZMQ client's public key
    ops = { curve_key_file = "ops.key" }              # ... or the file that holds it

    [services.calc]
    listen = [
      { url = "tcp://0.0.0.0:7443", tls = { cert = "s.pem", key = "s.key", ca = "ca.pem" }, allow = ["gateway"] },
      { url = "zmq+tcp://0.0.0.0:7001", curve = { secret_key_file = "s.key_secret" }, allow = ["batch", "ops"] },
    ]

A listener with ``allow`` answers every caller that is not one of the named identities
with ``PERMISSION_DENIED``, before any handler code runs. A ``cert_name`` matches a client
certificate (issued by the listener's ``tls.ca``) that has the name among its subject
alternative names or as its common name; a ``curve_key`` matches a CurveZMQ client with
that public key. ``tcp://`` listeners need ``tls`` with a ``ca`` (client certificates),
ZeroMQ listeners ``curve``; an ``inproc://`` listener cannot tell its callers apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from nanomsg_kernel.app.security import is_z85_key, read_curve_key
from nanomsg_kernel.errors import ConfigError
from nanomsg_kernel.peer import Allow, Identity

__all__ = ["listen_allow", "parse_identities"]

Report = Callable[[str, str], None]
"""``(key, message)``: a problem about one key of the config."""

_IDENTITY_KEYS = ("cert_name", "curve_key", "curve_key_file")


def parse_identities(value: Any, base: str, bad: Report) -> dict[str, Identity]:
    """The identities of an ``[identities]`` table (``base``: the config's directory)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        bad("identities", f"expected a table, got {type(value).__name__}")
        return {}
    found: dict[str, Identity] = {}
    for name, raw in value.items():
        key = f"identities.{name}"
        if not isinstance(raw, dict):
            bad(key, f"expected a table such as {{ cert_name = \"…\" }} or {{ curve_key = \"…\" }}, got {raw!r:.60}")
            continue
        unknown = [k for k in raw if k not in _IDENTITY_KEYS]
        for k in unknown:
            bad(f"{key}.{k}", f"unknown key (expected one of: {', '.join(_IDENTITY_KEYS)})")
        given = [k for k in _IDENTITY_KEYS if k in raw]
        if len(given) != 1:
            if not unknown:
                bad(key, "give exactly one of cert_name, curve_key and curve_key_file")
            continue
        (kind,) = given
        item = raw[kind]
        if kind == "cert_name":
            if not isinstance(item, str) or not item:
                bad(f"{key}.cert_name", f"expected a certificate name, got {item!r:.60}")
                continue
            found[name] = Identity(name, cert_name=item)
        elif kind == "curve_key":
            if not (isinstance(item, str) and is_z85_key(item)):
                bad(f"{key}.curve_key", f"expected a client's public key (40 Z85 characters), got {item!r:.60}")
                continue
            found[name] = Identity(name, curve_key=item)
        else:
            if not isinstance(item, str) or not item:
                bad(f"{key}.curve_key_file", f"expected a file path, got {item!r}")
                continue
            try:
                public = read_curve_key(os.path.join(base, os.path.expanduser(item)), secret=False)
            except ConfigError as exc:
                bad(f"{key}.curve_key_file", str(exc))
                continue
            found[name] = Identity(name, curve_key=public.decode("ascii"))
    return found


def listen_allow(item: dict[str, Any], url: str, key: str, identities: dict[str, Identity],
                 bad: Report) -> dict[str, Any]:
    """The ``allow`` transport option made from a listener table's ``allow`` list, if any."""
    if "allow" not in item:
        return {}
    names = item["allow"]
    akey = f"{key}.allow"
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        bad(akey, f"expected a list of identity names from [identities], got {names!r:.60}")
        return {}
    scheme = url.split("://", 1)[0].lower()
    chosen: list[Identity] = []
    for i, name in enumerate(names):
        identity = identities.get(name)
        if identity is None:
            known = ", ".join(sorted(identities)) or "none"
            bad(f"{akey}[{i}]", f"no identity named {name!r} in [identities] (identities: {known})")
            continue
        if scheme == "tcp" and identity.cert_name is None:
            bad(f"{akey}[{i}]", f"identity {name!r} is a Curve key; a tcp:// listener knows callers by "
                                "TLS certificate names (cert_name)")
            continue
        if scheme.startswith("zmq") and identity.curve_key is None:
            bad(f"{akey}[{i}]", f"identity {name!r} is a certificate name; a ZeroMQ listener knows callers by "
                                "Curve keys (curve_key)")
            continue
        chosen.append(identity)
    if scheme not in ("tcp", "zmq+tcp", "zmq+ipc"):
        bad(akey, f"an {scheme}:// listener cannot tell its callers apart: allow is for tcp:// (with tls "
                  "and a ca) and ZeroMQ (with curve)")
        return {}
    if scheme == "tcp" and not (isinstance(item.get("tls"), dict) and "ca" in item["tls"]):
        bad(akey, "needs tls with a ca: callers prove their identity with a client certificate issued by it")
        return {}
    if scheme.startswith("zmq") and "curve" not in item:
        bad(akey, "needs curve: callers prove their identity with their Curve key")
        return {}
    if len(chosen) != len(names):
        return {}
    return {"allow": Allow(chosen)}
