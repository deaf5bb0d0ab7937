"""Who is calling: the :class:`Peer` a handler reads as ``ctx.peer``, and the :class:`Allow`
policy a listener checks it against.

What a peer can be known by depends on the path the call took:

* ``tcp://``: the address it connects from; with TLS and a client certificate, the
  certificate's subject and subject alternative names;
* ``zmq+tcp://`` / ``zmq+ipc://`` with CurveZMQ: the client's public key (Z85), when the
  listener authenticates clients (ZAP), and the address;
* ``inproc://``: the listener's name;
* an in-process binding: the name of the calling service.

An identity names a caller by what it can prove: a certificate name (a DNS name or URI of
the certificate's subject alternative names, or its subject's common name) or a Curve
public key. An :class:`Allow` holds the identities a listener accepts; anyone else is
answered ``PERMISSION_DENIED`` and no handler runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from nanomsg_kernel.errors import ConfigError

__all__ = ["UNKNOWN_PEER", "Allow", "Identity", "Peer", "check_allow", "peer_from_certificate"]


@attrs.frozen(slots=True)
class Peer:
    """The caller of a request, as far as its path tells.

    Attributes:
        transport: how the call came: ``"tcp"``, ``"tls"``, ``"zmq"``, ``"inproc"``,
            ``"local"`` (an in-process binding), ``"nats"`` or ``"unknown"``.
        address: where it came from (``"127.0.0.1:53012"``, ``"inproc://calc"``), if known.
        cert_subject: the TLS client certificate's subject (``"CN=gateway,O=Example"``).
        cert_common_name: the common name (``CN``) of that subject, if it has one.
        cert_names: the certificate's subject alternative names (DNS names, URIs, IP
            addresses), in its order.
        curve_key: the CurveZMQ client public key, as 40 Z85 characters.
        service: the calling service's name (in-process bindings).
    """

    transport: str = "unknown"
    address: str | None = None
    cert_subject: str | None = None
    cert_common_name: str | None = None
    cert_names: tuple[str, ...] = ()
    curve_key: str | None = None
    service: str | None = None


UNKNOWN_PEER = Peer()
"""The peer of a call whose path tells nothing about its caller."""


_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
          "localityName": "L", "stateOrProvinceName": "ST", "domainComponent": "DC", "emailAddress": "E"}


def _subject(subject: Iterable[Iterable[tuple[str, str]]]) -> tuple[str, str | None]:
    """The subject as text (``,`` and ``\\`` escaped in values) and its common name."""
    parts = []
    common = None
    for rdn in subject:
        for key, value in rdn:
            text = str(value).replace("\\", "\\\\").replace(",", "\\,")
            parts.append(f"{_SHORT.get(key, key)}={text}")
            if key == "commonName":
                common = str(value)
    return ",".join(parts), common


def peer_from_certificate(cert: Mapping[str, object] | None, address: str | None) -> Peer:
    """The peer of a TLS connection, from :meth:`ssl.SSLSocket.getpeercert`'s dictionary
    (empty or ``None`` when the client sent no certificate)."""
    if not cert:
        return Peer("tls", address)
    subject = cert.get("subject")
    sans = cert.get("subjectAltName")
    names: list[str] = []
    if isinstance(sans, (tuple, list)):
        names = [str(value) for kind, value in sans if kind in ("DNS", "URI", "IP Address")]
    text, common = _subject(subject) if isinstance(subject, (tuple, list)) else (None, None)
    return Peer("tls", address, cert_subject=text, cert_common_name=common, cert_names=tuple(names))


@attrs.frozen(slots=True)
class Identity:
    """A caller identity named in a node config: a certificate name or a Curve key.

    Attributes:
        name: what the config calls it (``"gateway"``).
        cert_name: matches a TLS client certificate that has it among its subject
            alternative names (DNS, URI or IP), or as its subject's common name.
        curve_key: matches a CurveZMQ client with this public key (Z85 text).
    """

    name: str
    cert_name: str | None = None
    curve_key: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.cert_name is None) == (self.curve_key is None):
            raise ConfigError(f"identity {self.name!r} needs exactly one of cert_name and curve_key")

    def matches(self, peer: Peer) -> bool:
        """Whether ``peer`` proved this identity."""
        if self.cert_name is not None:
            return self.cert_name in peer.cert_names or peer.cert_common_name == self.cert_name
        return peer.curve_key is not None and peer.curve_key == self.curve_key


class Allow:
    """The identities one listener accepts (its ``allow`` list): anyone else gets
    ``PERMISSION_DENIED`` before any handler code runs."""

    __slots__ = ("cert_names", "curve_keys", "identities")

    def __init__(self, identities: Iterable[Identity]) -> None:
        self.identities = tuple(identities)
        if not self.identities:
            raise ConfigError("an allow list needs one identity at least (omit it to accept every caller)")
        self.cert_names = frozenset(i.cert_name for i in self.identities if i.cert_name is not None)
        self.curve_keys = frozenset(i.curve_key for i in self.identities if i.curve_key is not None)

    def permits(self, peer: Peer) -> bool:
        """Whether ``peer`` is one of the identities."""
        if peer.curve_key is not None and peer.curve_key in self.curve_keys:
            return True
        if self.cert_names:
            if any(name in self.cert_names for name in peer.cert_names):
                return True
            common = peer.cert_common_name
            return common is not None and common in self.cert_names
        return False

    def names(self, peer: Peer) -> list[str]:
        """The names of the identities ``peer`` proved."""
        return [i.name for i in self.identities if i.matches(peer)]

    def __repr__(self) -> str:
        return f"Allow({[i.name for i in self.identities]})"


def check_allow(allow: object, where: str) -> None:
    """``ConfigError`` unless ``allow`` is ``None`` or an :class:`Allow`."""
    if allow is not None and not isinstance(allow, Allow):
        raise ConfigError(f"{where}: allow must be an Allow of identities, got {type(allow).__name__}")
