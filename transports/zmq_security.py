"""CurveZMQ: encryption and client authentication for the ZeroMQ transport.

Keys are Z85 text (40 characters, as :func:`zmq.curve_keypair` makes them) or raw 32-byte
keys. A listener given ``curve_secret_key`` encrypts every connection (its public key is
derived from the secret one); with ``curve_allow=[client public keys]`` it also refuses
every client whose key is not listed, through a ZAP handler (:mod:`zmq.auth`) running in a
thread of the listener's own ZeroMQ context. The same handler runs, accepting every key,
when the listener needs to know its callers' keys (an ``allow`` list of identities): ZAP
then gives each message the client's public key as its ``User-Id``. A client gives the service's public key as
``curve_server_key`` and, when the service checks keys, its own ``curve_secret_key``
(without one it uses a fresh key pair: encrypted, but anonymous).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import zmq
import zmq.auth.thread
from zmq.utils import z85

from nanomsg_kernel.errors import ConfigError

__all__ = ["ClientCurve", "ServerCurve", "z85_key"]

_domains = itertools.count(1)


def _is_z85(text: bytes) -> bool:
    try:
        z85.decode(text)
    except Exception:  # struct.error or ValueError: not Z85 text
        return False
    return True


def z85_key(value: object, name: str) -> bytes:
    """``value`` as a 40-byte Z85 key; ``ConfigError`` naming ``name`` if it is not a key."""
    if isinstance(value, str):
        value = value.encode("ascii", "replace")
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) == 32:
            return z85.encode(raw)
        if len(raw) == 40 and _is_z85(raw):
            return raw
    raise ConfigError(f"{name} must be a CurveZMQ key (40 Z85 characters or 32 bytes), got {value!r:.60}")


class _AllowList:
    """The ZAP callback: is this client key allowed? (``None``: every key is.)"""

    def __init__(self, keys: frozenset[bytes] | None) -> None:
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        return self.keys is None or key in self.keys


class ServerCurve:
    """Curve settings of a listener, and the authenticator that enforces its allow-list."""

    def __init__(self, secret_key: object, public_key: object | None, allow: Iterable[object] | None,
                 identify: bool = False) -> None:
        self.secret = z85_key(secret_key, "curve_secret_key")
        derived = zmq.curve_public(self.secret)
        self.public = derived if public_key is None else z85_key(public_key, "curve_public_key")
        if self.public != derived:
            raise ConfigError("curve_public_key does not belong to curve_secret_key")
        if allow is not None and isinstance(allow, (str, bytes)):
            raise ConfigError("curve_allow must be a list of client public keys, not one key")
        self.allow = None if allow is None else frozenset(z85_key(k, "curve_allow entry") for k in allow)
        self.identify = identify
        """Run the ZAP handler even without an allow-list, so that each message carries its
        client's public key (``User-Id``)."""
        self.domain = f"nanomsg-kernel-{next(_domains)}"
        self._auth: zmq.auth.thread.ThreadAuthenticator | None = None

    def start(self, ctx: zmq.Context[Any]) -> None:
        """Start the ZAP handler in ``ctx`` (when an allow-list was given, or callers' keys
        are wanted)."""
        if (self.allow is None and not self.identify) or self._auth is not None:
            return
        auth = zmq.auth.thread.ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve_callback(self.domain, credentials_provider=_AllowList(self.allow))
        self._auth = auth

    def apply(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` a Curve server (checked by the allow-list when there is one)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True
        sock.zap_domain = self.domain.encode()

    def stop(self) -> None:
        """Stop the ZAP handler."""
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


class ClientCurve:
    """Curve settings of a client."""

    def __init__(self, server_key: object, secret_key: object | None, public_key: object | None) -> None:
        self.server = z85_key(server_key, "curve_server_key")
        if secret_key is None:
            if public_key is not None:
                raise ConfigError("curve_public_key needs curve_secret_key")
            self.public, self.secret = zmq.curve_keypair()
        else:
            self.secret = z85_key(secret_key, "curve_secret_key")
            derived = zmq.curve_public(self.secret)
            self.public = derived if public_key is None else z85_key(public_key, "curve_public_key")
            if self.public != derived:
                raise ConfigError("curve_public_key does not belong to curve_secret_key")

    def apply(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` a Curve client of the server key."""
        sock.curve_serverkey = self.server
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
