"""The ``nanomsg-kernel`` command line.

Each command lives in the module that owns its subject and is attached here: ``serve``
(:mod:`nanomsg_kernel.app.serving`, :mod:`nanomsg_kernel.app.config`), ``call``
(:mod:`nanomsg_kernel.app.call`), ``inspect`` (:mod:`nanomsg_kernel.app.inspect_frame`), ``demo``
(:mod:`nanomsg_kernel.app.demo`), ``curve-keys`` (:mod:`nanomsg_kernel.app.security`). Exit
statuses: :class:`nanomsg_kernel.app.exit_codes.ExitCode`.

Text that came from the wire or a file (an error message from a service, a reply, a frame's
fields, a config's keys) is printed through :func:`nanomsg_kernel.app.printable.printable`,
so that it cannot steer the terminal. Code named as ``module:attribute`` is imported from
the app directory (``--app-dir``, :mod:`nanomsg_kernel.app.imports`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from nanomsg_kernel import __version__
from nanomsg_kernel.app.cli_options import security_options, timeout_option
from nanomsg_kernel.app.exit_codes import ExitCode, exit_code_for
from nanomsg_kernel.app.printable import printable

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DEMO_TRANSPORTS = ("binding", "inproc", "tcp", "zmq+tcp", "nats")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nanomsg-kernel")
@click.option("--log-level", type=click.Choice(_LEVELS, case_sensitive=False), default="WARNING",
              show_default=True, envvar="NANOMSG_KERNEL_LOG_LEVEL", help="Lowest level of log records shown (on stderr).")
@click.option("--log-json", is_flag=True, envvar="NANOMSG_KERNEL_LOG_JSON",
              help="Log one JSON object per line, with service, contract and correlation_id fields.")
def main(log_level: str, log_json: bool) -> None:
    """nanomsg-kernel: versioned binary contracts and nanoservices."""
    from nanomsg_kernel.app.logs import configure_logging

    configure_logging(log_level, json_lines=log_json)


def _fail(message: str, code: ExitCode) -> NoReturn:
    click.echo(f"error: {printable(message)}", err=True)
    sys.exit(int(code))


def _app_dir_option(default: str | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    shown = "the config's node.app_dir, else the current directory" if default is None else "the current directory"
    return click.option(
        "--app-dir", type=click.Path(file_okay=False), default=default,
        help=f"Directory that module:attribute references are imported from, put first on sys.path "
             f"(default: {shown}).",
    )


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--grace", type=click.FloatRange(0, 3600), default=None,
              help="Seconds calls in flight get to finish on shutdown (default: the config's node.grace, else 5).")
@click.option("--check", is_flag=True, help="Only check the config: report its problems, or say it is fine, and exit.")
@_app_dir_option(None)
def serve(config: str, grace: float | None, check: bool, app_dir: str | None) -> None:
    """Serve every service of the node CONFIG (a TOML file) until SIGINT or SIGTERM.

    Prints one 'listening SERVICE URL' line per listener, then 'ready'; on a signal stops
    gracefully and prints the metrics summary. Config problems are all reported, naming the
    file and key, before anything starts (exit 2).
    """
    from nanomsg_kernel.app.config import NodeConfigError, load_config

    try:
        node_config = load_config(config, app_dir=app_dir, default_app_dir=".")
    except NodeConfigError as exc:
        for problem in exc.problems:
            click.echo(printable(problem), err=True)
        n = len(exc.problems)
        _fail(f"{n} problem{'s' if n > 1 else ''} in {config}; nothing was started", ExitCode.USAGE)
    for warning in node_config.warnings:
        click.echo(f"warning: {printable(warning)}", err=True)
    if check:
        names = ", ".join(s.name for s in node_config.services)
        click.echo(printable(f"{config}: ok (node {node_config.name!r}: {names})"))
        return
    from nanomsg_kernel.app.serving import serve_node
    from nanomsg_kernel.transports.loop import run

    try:
        run(serve_node(node_config, click.echo, grace=grace))
    except Exception as exc:
        _fail(f"node {node_config.name!r} could not start: {type(exc).__name__}: {exc}", ExitCode.FAILED)


def _read_payload(payload: str) -> str:
    if payload == "-":
        return sys.stdin.read()
    if payload.startswith("@"):
        try:
            with open(payload[1:], encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            _fail(f"cannot read {payload[1:]}: {exc.strerror or exc}", ExitCode.USAGE)
    return payload


@main.command()
@click.argument("url")
@click.argument("contract", required=False)
@click.option("--kernel", "-k", metavar="MODULE:ENUM|FILE.toml",
              help="The kernel: its routing enum (nanomsg_kernel.contracts.calc:CalcRoute, imported) or its "
                   "schema file (schemas/calc.toml, read as data). Default: ask the service (describe).")
@click.option("--json", "payload", default="{}", show_default=True, metavar="JSON|@FILE|-",
              help="The request's fields as a JSON object (text, @file, or - for stdin).")
@click.option("--list", "list_contracts", is_flag=True,
              help="Print the kernel's contracts (and what the service handles) instead of calling.")
@click.option("--publish", is_flag=True, help="Send CONTRACT as an event (one-way: nothing is printed on stdout).")
@timeout_option
@click.option("--bytes", "bytes_format", type=click.Choice(["base64", "hex"]), default="base64", show_default=True,
              help="How bytes fields are written in JSON, both ways.")
@click.option("--compact", is_flag=True, help="Print the reply on one line.")
@_app_dir_option(".")
@security_options
def call(url: str, contract: str | None, kernel: str | None, payload: str, list_contracts: bool, publish: bool,
         timeout: float, bytes_format: str, compact: bool, app_dir: str, **security: Any) -> None:
    """Send one CONTRACT request to the service at URL and print the reply as JSON.

    CONTRACT is the contract's class name (CalcWork), its routing member (CALC_WORK) or its
    route number. Without --kernel the service is asked for its schema first (the built-in
    describe), so no Python module of the kernel is needed. An error reply prints its
    status and message on stderr; the exit status says what happened: 0 reply, 1 error
    status from the service, 2 bad input, 3 service unreachable, 4 timeout, 5 undecodable
    reply (or description).
    """
    import asyncio
    import json

    from nanomsg_kernel.app.call import call_json, client_security, publish_json
    from nanomsg_kernel.app.imports import use_app_dir
    from nanomsg_kernel.app.reflect import (
        contract_lines,
        describe,
        described_kernel,
        described_schema,
        kernel_option,
        schema_of,
    )
    from nanomsg_kernel.errors import NanomsgError, RemoteError
    from nanomsg_kernel.transports.nats_url import redact

    def slow() -> None:
        if sys.stderr.isatty():
            click.echo(printable(f"waiting for {redact(url)} (up to {timeout:g}s)..."), err=True)

    if contract is None and not list_contracts:
        _fail("name the CONTRACT to call (or --list the contracts)", ExitCode.USAGE)
    try:
        options = client_security(url, **security)
        if kernel is not None:
            use_app_dir(app_dir)
            routes = kernel_option(kernel)
            if list_contracts:
                lines = contract_lines(schema_of(routes))
        else:
            about = asyncio.run(describe(url, timeout=timeout, options=options))
            if list_contracts:
                lines = [f"# service {about.service}, kernel {about.kernel}",
                         *contract_lines(described_schema(about), handled=about.handled,
                                         subscribed=about.subscribed)]
            routes = described_kernel(about)
        if list_contracts:
            click.echo(printable("\n".join(lines), keep_newlines=True))
            return
        assert contract is not None
        if publish:
            asyncio.run(publish_json(url, routes, contract, _read_payload(payload), timeout=timeout,
                                     bytes_format=bytes_format, options=options))  # type: ignore[arg-type]
            click.echo(printable(f"published {contract} to {url}"), err=True)
            return
        reply = asyncio.run(call_json(url, routes, contract, _read_payload(payload), timeout=timeout,
                                      bytes_format=bytes_format, on_slow=slow, options=options))  # type: ignore[arg-type]
    except RemoteError as exc:
        _fail(f"{exc.status.name}: {exc.message}", ExitCode.FAILED)
    except (NanomsgError, OSError) as exc:
        _fail(str(exc), exit_code_for(exc))
    click.echo(printable(json.dumps(reply, indent=None if compact else 2, ensure_ascii=False), keep_newlines=True))


@main.command("inspect")
@click.argument("source", type=click.File("rb"), default="-")
@click.option("--hex/--raw", "hex_input", default=None,
              help="Read the input as hex text, or as raw bytes (default: hex if it reads as hex).")
@click.option("--kernel", "-k", metavar="MODULE:ENUM", help="Decode bodies into this kernel's contracts.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--max-body", type=click.IntRange(1, 0xFFFF_FFFF), default=16 * 1024 * 1024, show_default=True,
              help="Largest body accepted, in bytes.")
@click.option("--bytes", "bytes_format", type=click.Choice(["base64", "hex"]), default="base64", show_default=True,
              help="How bytes values are shown.")
@_app_dir_option(".")
def inspect(source: Any, hex_input: bool | None, kernel: str | None, as_json: bool, max_body: int,
            bytes_format: str, app_dir: str) -> None:
    """Decode the frame(s) in SOURCE (a file, or - for stdin) into header fields and body.

    Without --kernel the body is shown as msgpack keyed by field tag; with it, as the
    contract's fields by name. Exit status 5 if a frame cannot be decoded.
    """
    import json

    from nanomsg_kernel.app.inspect_frame import decode_input, inspect_frames, render_text
    from nanomsg_kernel.errors import NanomsgError
    from nanomsg_kernel.frame import HEADER_SIZE

    limit = 2 * (max_body + HEADER_SIZE) + 64
    data = source.read(limit + 1)
    if len(data) > limit:
        _fail(f"input is larger than {limit} bytes (raise --max-body for larger frames)", ExitCode.USAGE)
    try:
        routes = None
        if kernel is not None:
            from nanomsg_kernel.app.call import load_kernel
            from nanomsg_kernel.app.imports import use_app_dir

            use_app_dir(app_dir)
            routes = load_kernel(kernel)
        reports = inspect_frames(decode_input(data, hex_input=hex_input), routes, max_body=max_body,
                                 bytes_format=bytes_format)  # type: ignore[arg-type]
    except NanomsgError as exc:
        _fail(str(exc), exit_code_for(exc))
    text = json.dumps(reports, indent=2, ensure_ascii=False) if as_json else render_text(reports)
    click.echo(printable(text, keep_newlines=True))  # render_text escapes every line it makes
    if any("error" in r for r in reports):
        sys.exit(int(ExitCode.BAD_FRAME))


def _transports(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in _DEMO_TRANSPORTS]
    if unknown or not names:
        raise click.BadParameter(f"expected a comma-separated list of {', '.join(_DEMO_TRANSPORTS)}")
    return names


@main.command()
@click.option("--calls", type=click.IntRange(1, 100_000), default=2000, show_default=True,
              help="Timed calls per transport.")
@click.option("--transports", default=",".join(_DEMO_TRANSPORTS), show_default=True, callback=_transports,
              help="Ways of calling calc, comma-separated.")
def demo(calls: int, transports: tuple[str, ...]) -> None:
    """Run the example kernel's services in one node and call them every way there is.

    calc and gateway (bound to calc) run in one node; calc is called through the binding and
    over inproc://, tcp:// and zmq+tcp:// on loopback, and over nats:// through a nats-server
    of the demo's own when nats-server is on PATH (else it says how to get one). Prints latency and throughput per
    transport, sample results and the metrics summary; exit status 1 if any check failed.
    """
    from nanomsg_kernel.app.demo import run

    def progress(total: int) -> Any:
        return click.progressbar(length=total, label="calling", file=sys.stderr)

    try:
        result = run(calls, transports, echo=click.echo, progress=progress if sys.stderr.isatty() else None)
    except Exception as exc:
        _fail(f"the demo could not run: {type(exc).__name__}: {exc}", ExitCode.FAILED)
    if not result.ok:
        sys.exit(int(ExitCode.FAILED))


@main.command("curve-keys")
@click.argument("name", type=click.Path(dir_okay=False))
def curve_keys(name: str) -> None:
    """Write a new CurveZMQ key pair: NAME.key (the public key, to give out) and NAME.key_secret
    (both keys, readable by you only), in ZeroMQ's certificate format. Existing files are
    never overwritten (exit status 2). Prints the public key.
    """
    from nanomsg_kernel.app.security import write_curve_keypair
    from nanomsg_kernel.errors import ConfigError

    try:
        public_path, secret_path, public = write_curve_keypair(name)
    except ConfigError as exc:
        _fail(str(exc), ExitCode.USAGE)
    click.echo(printable(f"public key {public.decode()} in {public_path}; secret key in {secret_path}"))


def _attach() -> None:
    """Attach the sub-commands (imported here so that ``--help`` stays fast to start)."""
    from nanomsg_kernel.app.reflect_cli import describe_command, health_command
    from nanomsg_kernel.app.schema_cli import codegen_command, schema_group

    main.add_command(codegen_command)
    main.add_command(schema_group)
    main.add_command(health_command)
    main.add_command(describe_command)


_attach()

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="nanomsg-kernel")
