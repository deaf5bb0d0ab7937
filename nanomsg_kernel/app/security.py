"""TLS contexts and CurveZMQ keys made from files, for node configs and the command line.

The transports take ready objects (an :class:`ssl.SSLContext` as ``ssl=``, Curve keys as
``curve_secret_key=``, ``curve_server_key=``, ``curve_allow=``); this module makes them from
the files a config or a command line names, and says clearly what is wrong with a file::

    ssl = server_tls("server.pem", "server.key", ca="clients-ca.pem")   # mutual TLS
    ssl = client_tls(ca="ca.pem", cert="client.pem", key="client.key")
    secret = read_curve_key("server.key_secret", secret=True)

TLS: a listener's context speaks TLS 1.2 or later with the certificate chain and key given;
with ``ca`` it also requires every client to present a certificate issued by that authority
(mutual TLS), and trusts no other authority for it. A client's context checks the server's
certificate and name against ``ca`` (or the system's authorities when there is none) and,
with ``cert``, presents its own. Encrypted private keys are refused (nothing may stop to
prompt for a password).

CurveZMQ key files: either the certificate files of ZeroMQ (``NAME.key`` holds
``public-key = "…"``; ``NAME.key_secret`` holds both keys), as :func:`write_curve_keypair`
and ``nanomsg-kernel curve-keys`` write them, or a file holding only the 40-character Z85
key. Every error is a :class:`~nanomsg_kernel.errors.ConfigError` naming the file.
"""

from __future__ import annotations

import os
import re
import ssl
import stat
from pathlib import Path

from nanomsg_kernel.errors import ConfigError

__all__ = [
    "client_tls",
    "is_z85_key",
    "read_curve_key",
    "secret_file_warning",
    "server_tls",
    "write_curve_keypair",
]

_MAX_FILE = 1024 * 1024
"""Largest certificate, key or key file read (a bundle of authorities fits many times)."""
_Z85 = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")
_ZPL_KEY = re.compile(r'^\s*(public|secret)-key\s*=\s*"?([^"\s]*)"?\s*$', re.MULTILINE)


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    """The bytes of ``path`` (at most 1 MiB); ``ConfigError`` naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {os.fspath(path)}: {exc.strerror or exc}") from None
    if len(data) > _MAX_FILE:
        raise ConfigError(f"the {what} {os.fspath(path)} is larger than {_MAX_FILE} bytes")
    return data


def _no_password() -> bytes:
    raise ConfigError("the private key is encrypted (give a key file without a password)")


def _reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc).replace("_", " ").lower()


def _load_chain(ctx: ssl.SSLContext, cert: str | os.PathLike[str], key: str | os.PathLike[str] | None) -> None:
    _read(cert, "certificate file")
    if key is not None:
        _read(key, "private key file")
    shown = os.fspath(cert) if key is None else f"{os.fspath(cert)} and {os.fspath(key)}"
    try:
        ctx.load_cert_chain(cert, key, password=_no_password)
    except ConfigError as exc:
        raise ConfigError(f"cannot load {shown}: {exc}") from None
    except ssl.SSLError as exc:
        hint = " (a PEM certificate chain, then its PEM private key, in that order)" if "PEM" in str(exc) else ""
        raise ConfigError(f"cannot load the certificate and key {shown}: {_reason(exc)}{hint}") from None


def _load_ca(ctx: ssl.SSLContext, ca: str | os.PathLike[str]) -> None:
    _read(ca, "certificate authority file")
    try:
        ctx.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise ConfigError(f"cannot load the certificate authority {os.fspath(ca)}: {_reason(exc)}") from None


def server_tls(
    cert: str | os.PathLike[str], key: str | os.PathLike[str] | None = None, *, ca: str | os.PathLike[str] | None = None
) -> ssl.SSLContext:
    """A listener's TLS context: ``cert`` (PEM chain) and ``key`` (PEM; may be in ``cert``);
    with ``ca``, clients must present a certificate issued by it (mutual TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cert, key)
    if ca is not None:
        _load_ca(ctx, ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_tls(
    *, ca: str | os.PathLike[str] | None = None, cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """A client's TLS context: the server's certificate must come from ``ca`` (default: the
    system's authorities) and carry the host's name; ``cert``/``key`` are presented to
    services that check their clients."""
    if key is not None and cert is None:
        raise ConfigError("a TLS key needs its certificate")
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts only ``ca``, checks the name
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        _load_ca(ctx, ca)
    if cert is not None:
        _load_chain(ctx, cert, key)
    return ctx


def is_z85_key(text: str) -> bool:
    """True when ``text`` is a CurveZMQ key as 40 Z85 characters."""
    if _Z85.fullmatch(text) is None:
        return False
    from zmq.utils import z85

    try:
        z85.decode(text.encode("ascii"))
    except Exception:  # not Z85 after all
        return False
    return True


def read_curve_key(path: str | os.PathLike[str], *, secret: bool) -> bytes:
    """The Z85 key in the key file ``path``: its secret key when ``secret``, else its public key.

    Raises:
        ConfigError: the file cannot be read or holds no such key.
    """
    what = "CurveZMQ secret key file" if secret else "CurveZMQ public key file"
    try:
        text = _read(path, what).decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"the {what} {os.fspath(path)} is not a key file (not ASCII text)") from None
    if is_z85_key(text.strip()):
        return text.strip().encode("ascii")
    keys: dict[str, str] = {kind: value for kind, value in _ZPL_KEY.findall(text)}
    wanted = "secret" if secret else "public"
    if wanted not in keys:
        hint = " (this looks like a public key file)" if secret and "public" in keys else ""
        raise ConfigError(f"the {what} {os.fspath(path)} holds no {wanted} key{hint}")
    if not is_z85_key(keys[wanted]):
        raise ConfigError(f"the {what} {os.fspath(path)}: its {wanted} key is not 40 Z85 characters")
    return keys[wanted].encode("ascii")


def secret_file_warning(path: str | os.PathLike[str]) -> str | None:
    """A warning when the secret key file ``path`` can be read by other users, else ``None``."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{os.fspath(path)} can be read by other users (chmod 600 it)"
    return None


def _write_new(path: Path, text: str, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(f"{path} already exists (keys are never overwritten)") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)


def write_curve_keypair(base: str | os.PathLike[str]) -> tuple[Path, Path, bytes]:
    """Make a CurveZMQ key pair; write ``BASE.key`` (the public key, to hand out) and
    ``BASE.key_secret`` (both keys, readable by the owner only) in ZeroMQ's certificate format.

    Returns:
        The public file, the secret file and the public key (Z85).

    Raises:
        ConfigError: a file already exists or cannot be written (nothing is overwritten).
    """
    import zmq

    public, secret = zmq.curve_keypair()
    base_path = Path(base)
    public_path = base_path.with_name(base_path.name + ".key")
    secret_path = base_path.with_name(base_path.name + ".key_secret")
    for path in (public_path, secret_path):
        if path.exists():
            raise ConfigError(f"{path} already exists (keys are never overwritten)")
    header = "#   ZeroMQ CURVE {} Certificate, written by nanomsg-kernel curve-keys\n"
    _write_new(secret_path, header.format("**Secret**") + "#   Keep it secret: never give this file out.\n\ncurve\n"
               f'    public-key = "{public.decode()}"\n    secret-key = "{secret.decode()}"\n', 0o600)
    _write_new(public_path, header.format("Public") + f'\ncurve\n    public-key = "{public.decode()}"\n', 0o644)
    return public_path, secret_path, public
