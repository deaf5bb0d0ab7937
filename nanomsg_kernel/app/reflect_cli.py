"""The ``health`` and ``describe`` commands: the built-in contracts from the shell.

``health URL`` prints the service's name and status and exits 0 when it is ``SERVING``,
6 when ``NOT_SERVING``, 7 when ``DRAINING`` (and 3 or 4 when it cannot be reached or does
not answer in time: :class:`~nanomsg_kernel.app.exit_codes.ExitCode`), so that it serves as
a probe. ``describe URL`` prints what the service serves and its kernel's schema, as
``schema export`` writes it. Everything printed came from the wire and goes through
:func:`~nanomsg_kernel.app.printable.printable`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, NoReturn

import click

from nanomsg_kernel.app.cli_options import security_options, timeout_option
from nanomsg_kernel.app.exit_codes import ExitCode, exit_code_for
from nanomsg_kernel.app.printable import printable
from nanomsg_kernel.builtin import HealthStatus

__all__ = ["describe_command", "health_command"]

_HEALTH_EXIT = {
    HealthStatus.SERVING: ExitCode.OK,
    HealthStatus.NOT_SERVING: ExitCode.NOT_SERVING,
    HealthStatus.DRAINING: ExitCode.DRAINING,
}


def _fail(message: str, code: ExitCode) -> NoReturn:
    click.echo(f"error: {printable(message)}", err=True)
    sys.exit(int(code))


def _run(coro: Any) -> Any:
    """Run a request of the command; its failure ends the command with its exit status."""
    from nanomsg_kernel.errors import NanomsgError, RemoteError

    try:
        return asyncio.run(coro)
    except RemoteError as exc:
        _fail(f"{exc.status.name}: {exc.message}", ExitCode.FAILED)
    except (NanomsgError, OSError) as exc:
        _fail(str(exc), exit_code_for(exc))


def _options(url: str, security: dict[str, Any]) -> dict[str, Any]:
    from nanomsg_kernel.app.call import client_security
    from nanomsg_kernel.errors import ConfigError

    try:
        return client_security(url, **security)
    except ConfigError as exc:
        _fail(str(exc), ExitCode.USAGE)


@click.command("health")
@click.argument("url")
@click.option("--service", default="", help="The name the service must have (another one: NOT_FOUND, exit 1).")
@timeout_option
@security_options
def health_command(url: str, service: str, timeout: float, **security: Any) -> None:
    """Ask the service at URL how it is: prints 'NAME STATUS'.

    Exit status: 0 SERVING, 6 NOT_SERVING, 7 DRAINING; 3 unreachable, 4 no answer in time,
    1 an error status (NOT_FOUND for --service naming another service).
    """
    from nanomsg_kernel.app.reflect import check_health

    options = _options(url, security)
    reply = _run(check_health(url, service=service, timeout=timeout, options=options))
    status = HealthStatus(reply.status)
    click.echo(printable(f"{reply.service} {status.name}"))
    sys.exit(int(_HEALTH_EXIT[status]))


@click.command("describe")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: service, kernel, handled, subscribed, schema.")
@timeout_option
@security_options
def describe_command(url: str, as_json: bool, timeout: float, **security: Any) -> None:
    """Ask the service at URL what it serves: its kernel's schema, as 'schema export' writes it.

    The schema comes first, after comment lines naming the service and the contracts it
    handles and subscribes to; save it to a file and it is a schema like any other
    (codegen, schema diff, call --kernel FILE). Exit status 1 if the listener has
    reflection turned off (CONTRACT_NOT_SUPPORTED), 5 if the description is not valid.
    """
    from nanomsg_kernel.app.reflect import describe

    options = _options(url, security)
    reply = _run(describe(url, timeout=timeout, options=options))
    if as_json:
        data = {"service": reply.service, "kernel": reply.kernel, "handled": reply.handled,
                "subscribed": reply.subscribed, "schema": reply.schema}
        click.echo(printable(json.dumps(data, indent=2, ensure_ascii=False), keep_newlines=True))
        return
    click.echo(printable(f"# service {reply.service}, kernel {reply.kernel}"))
    click.echo(printable(f"# handles: {', '.join(reply.handled) or '(nothing)'}"))
    click.echo(printable(f"# subscribes to: {', '.join(reply.subscribed) or '(nothing)'}"))
    click.echo(printable(reply.schema, keep_newlines=True), nl=False)
