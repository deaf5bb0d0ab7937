"""``nats://`` URLs: the NATS servers, the subject, and how to authenticate, never logged.

::

    nats://HOST:PORT[,HOST:PORT...]/SUBJECT[?OPTIONS]
    nats://USER:PASSWORD@HOST:PORT/SUBJECT      nats://TOKEN@HOST:PORT/SUBJECT

The options of the query (each may also be passed as a keyword to ``listen``/``connect``,
which wins over the URL):

* ``user``, ``password``, ``token``: plain credentials;
* ``creds``: a ``.creds`` file (JWT and NKey seed), ``nkey``: an NKey seed file;
* ``tls=1`` (TLS trusting the system's authorities), ``tls_ca``, ``tls_cert``, ``tls_key``,
  ``tls_hostname``: TLS to the NATS server;
* ``queue``: the queue group a listener joins (default: the subject);
* ``events``: more subjects (comma-separated) whose events a listener takes.

:func:`redact` gives the URL with every secret replaced by ``***``: it is what the
transport's ``url`` attributes, log lines and error messages show.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from nanomsg_kernel.errors import ConfigError

__all__ = ["AUTH_KEYS", "NatsAddress", "auth_options", "check_options", "check_subject", "parse_nats_url", "redact"]

SECRET_KEYS = frozenset({"password", "token"})
"""Query keys whose values are secrets (files named by ``creds``/``nkey`` are not)."""
QUERY_KEYS = ("user", "password", "token", "creds", "nkey", "tls", "tls_ca", "tls_cert", "tls_key",
              "tls_hostname", "queue", "events")
_TOKEN = re.compile(r"[^\s.*>]+")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")


@dataclass
class NatsAddress:
    """A parsed ``nats://`` URL."""

    servers: list[str]
    """``nats://host:port`` of each server, without credentials."""
    subject: str
    """The subject requests are sent to (a listener's queue group shares it)."""
    options: dict[str, str] = field(default_factory=dict)
    """The query's options and the credentials of the user part (see the module's doc)."""


def check_subject(subject: str, what: str = "subject") -> str:
    """``subject`` if it is a NATS subject one may publish to (dot-separated tokens, no
    blanks and no wildcards ``*``/``>``), else ``ConfigError``."""
    if not isinstance(subject, str) or not subject or not all(_TOKEN.fullmatch(t) for t in subject.split(".")):
        raise ConfigError(f"bad NATS {what} {subject!r}: expected dot-separated tokens with no blanks, '*' or '>'")
    return subject


def parse_nats_url(url: str) -> NatsAddress:
    """Parse ``url`` (see the module's doc); ``ConfigError`` naming what is wrong (with the
    URL's secrets redacted)."""
    shown = redact(url)
    if not isinstance(url, str) or not url.lower().startswith("nats://"):
        raise ConfigError(f"bad NATS URL {shown!r}: expected nats://HOST:PORT[,HOST:PORT...]/SUBJECT")
    rest = url[len("nats://"):]
    rest, _, query = rest.partition("?")
    netloc, slash, subject = rest.partition("/")
    if not slash or not subject:
        raise ConfigError(f"bad NATS URL {shown!r}: the subject is missing (nats://HOST:PORT/SUBJECT)")
    options: dict[str, str] = {}
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if colon:
            options["user"], options["password"] = unquote(user), unquote(password)
        else:
            options["token"] = unquote(user)
    servers = []
    for part in netloc.split(","):
        m = _HOST_PORT.match(part)
        if m is None or not 0 < int(m.group(2)) < 65536:
            raise ConfigError(f"bad NATS URL {shown!r}: expected HOST:PORT with a port from 1 to 65535, got {part!r}")
        servers.append(f"nats://{part}")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError(f"bad NATS URL {shown!r}: malformed query") from None
    for key, value in pairs:
        if key not in QUERY_KEYS:
            raise ConfigError(f"bad NATS URL {shown!r}: unknown option {key!r} (expected one of: "
                              f"{', '.join(QUERY_KEYS)})")
        options[key] = value
    return NatsAddress(servers, check_subject(unquote(subject)), options)


def redact(url: str) -> str:
    """``url`` with the password or token of its user part and of its query replaced by
    ``***``: safe to log or show."""
    if not isinstance(url, str):
        return repr(url)
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, qmark, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:***@{hosts}" if colon else f"***@{hosts}"
    if qmark:
        parts = []
        for item in query.split("&"):
            key, eq, _value = item.partition("=")
            parts.append(f"{key}=***" if eq and unquote(key) in SECRET_KEYS else item)
        query = "&".join(parts)
    return f"{head}{sep}{netloc}{slash}{path}{qmark}{query}"


def _truthy(key: str, value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on", ""):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"NATS option {key}: expected 1 or 0, got {value!r}")


def tls_context(ca: str | None = None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A client TLS context for a NATS server: its certificate must come from ``ca`` (a PEM
    file; default: the system's authorities); ``cert``/``key``: this client's own."""
    try:
        ctx = ssl.create_default_context(cafile=ca)
        if cert is not None:
            ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"NATS TLS: cannot load {'the CA' if ca and cert is None else 'a certificate or key'}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    return ctx


AUTH_KEYS = frozenset({"user", "password", "token", "creds", "nkey", "tls", "tls_ca", "tls_cert", "tls_key",
                       "tls_hostname"})
"""The options that authenticate and secure a connection to NATS (see :func:`auth_options`)."""


def check_options(given: dict[str, Any], more: tuple[str, ...] = ()) -> None:
    """``ConfigError`` naming any keyword of ``given`` that is neither an auth option nor in
    ``more``."""
    unknown = sorted(set(given) - AUTH_KEYS - set(more))
    if unknown:
        raise ConfigError(f"unknown nats:// option(s) {', '.join(unknown)} (expected: "
                          f"{', '.join(sorted(AUTH_KEYS | set(more)))})")


def auth_options(options: dict[str, Any]) -> dict[str, Any]:
    """The keywords of :func:`nats.connect` that authenticate and secure a connection, made
    from the URL's options and the caller's keywords (``user``, ``password``, ``token``,
    ``creds``, ``nkey``, ``tls`` (a bool, or an :class:`ssl.SSLContext`), ``tls_ca``,
    ``tls_cert``, ``tls_key``, ``tls_hostname``)."""
    out: dict[str, Any] = {}
    for key in ("user", "password", "token"):
        value = options.get(key)
        if value is not None:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"NATS option {key} must be a non-empty string")
            out[key] = value
    if ("user" in out) != ("password" in out):
        raise ConfigError("NATS options user and password go together")
    if "token" in out and "user" in out:
        raise ConfigError("NATS options: give a token or a user and password, not both")
    creds, nkey = options.get("creds"), options.get("nkey")
    if creds is not None and nkey is not None:
        raise ConfigError("NATS options: give a creds file or an nkey seed file, not both")
    if creds is not None:
        out["user_credentials"] = str(creds)
    if nkey is not None:
        out["nkeys_seed"] = str(nkey)
    tls = options.get("tls")
    ca, cert, key_file = (options.get(k) for k in ("tls_ca", "tls_cert", "tls_key"))
    if isinstance(tls, ssl.SSLContext):
        out["tls"] = tls
    elif (tls is not None and (tls is True or (isinstance(tls, str) and _truthy("tls", tls)))) or ca or cert:
        out["tls"] = tls_context(ca, cert, key_file)
    elif tls not in (None, False) and not isinstance(tls, str):
        raise ConfigError(f"NATS option tls: expected a bool or an ssl.SSLContext, got {type(tls).__name__}")
    hostname = options.get("tls_hostname")
    if hostname is not None:
        out["tls_hostname"] = str(hostname)
    return out


def quote_subject(subject: str) -> str:
    """``subject`` as it is written in a URL's path."""
    return quote(subject, safe=".-_~")
