"""Options several commands share: how a call is secured (TLS, CurveZMQ) and how long it may take.

::

    @main.command()
    @security_options
    def health(url: str, **security: Any) -> None:
        options = client_security(url, **security)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

__all__ = ["security_options", "timeout_option"]


def security_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--tls``, ``--tls-ca``, ``--tls-cert``, ``--tls-key``, ``--tls-server-name``,
    ``--curve-server-key``, ``--curve-key-file`` and the ``--nats-*`` credentials: the keyword arguments of
    :func:`~nanomsg_kernel.app.call.client_security`."""
    options = [
        click.option("--tls", "tls", is_flag=True,
                     help="Speak TLS (tcp://), trusting the system's certificate authorities."),
        click.option("--tls-ca", type=click.Path(dir_okay=False), metavar="FILE",
                     help="PEM file of the authority the server's certificate must come from (implies --tls)."),
        click.option("--tls-cert", type=click.Path(dir_okay=False), metavar="FILE",
                     help="This client's certificate (PEM) for a service that checks clients (mutual TLS)."),
        click.option("--tls-key", type=click.Path(dir_okay=False), metavar="FILE",
                     help="The private key of --tls-cert (PEM), unless it is in the same file."),
        click.option("--tls-server-name", metavar="NAME",
                     help="The name the server's certificate must carry (default: the URL's host)."),
        click.option("--curve-server-key", metavar="KEY|@FILE",
                     help="The service's CurveZMQ public key (zmq+tcp://): 40 Z85 characters, or @FILE (a key file)."),
        click.option("--curve-key-file", type=click.Path(dir_okay=False), metavar="FILE",
                     help="This client's CurveZMQ secret key file, for a service that allows only listed keys "
                          "(default: a fresh key pair for this call)."),
        click.option("--nats-creds", type=click.Path(dir_okay=False), metavar="FILE",
                     help="A NATS .creds file (nats://); --tls* options secure the link to the NATS server."),
        click.option("--nats-nkey", type=click.Path(dir_okay=False), metavar="FILE", help="A NATS NKey seed file."),
        click.option("--nats-user", metavar="USER", help="A NATS user (with --nats-password-file)."),
        click.option("--nats-password-file", type=click.Path(dir_okay=False), metavar="FILE",
                     help="A file holding the NATS user's password."),
        click.option("--nats-token-file", type=click.Path(dir_okay=False), metavar="FILE",
                     help="A file holding a NATS token."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def timeout_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--timeout`` (seconds, connecting included; default 5)."""
    return click.option("--timeout", type=click.FloatRange(0, min_open=True), default=5.0, show_default=True,
                        help="Seconds to wait for the reply (connecting included).")(f)
