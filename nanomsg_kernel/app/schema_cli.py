"""The ``codegen`` command and the ``schema`` group (export, diff, jsonschema) of the CLI.

Exit status: 0 when all is well, 1 when ``codegen --check`` finds a stale module or
``schema diff`` finds a breaking change, 2 when a schema or an argument is invalid. Text
quoted from a schema file is printed through
:func:`~nanomsg_kernel.app.printable.printable` (its lines kept, control characters escaped).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click

from nanomsg_kernel.app.exit_codes import ExitCode
from nanomsg_kernel.app.printable import printable

__all__ = ["codegen_command", "schema_group"]


class SchemaFailure(click.ClickException):
    """An invalid schema or source: the message lists every problem; exit status 2."""

    exit_code = int(ExitCode.USAGE)

    def show(self, file: object = None) -> None:
        """Print the problems to stderr, one per line."""
        click.echo(printable(self.format_message(), keep_newlines=True), err=True)


def _fail(exc: Exception) -> SchemaFailure:
    return SchemaFailure(str(exc))


@click.command("codegen")
@click.argument("schemas", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "-o", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory the kernel modules are written to.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 naming each module that is not up to date.")
@click.option("--force", is_flag=True, help="Also overwrite modules that were not generated.")
def codegen_command(schemas: Path, out: Path, check: bool, force: bool) -> None:
    """Generate one kernel module per schema file in SCHEMAS (a directory or one file).

    schemas/calc.toml becomes OUT/calc.py: the routing enum, enums, records and contracts,
    written as they would be by hand. Sub-directories of SCHEMAS are not generated.
    """
    from nanomsg_kernel.codegen.generate import plan, stale_diff, write
    from nanomsg_kernel.codegen.schema import SchemaError

    try:
        modules = plan(schemas, out)
    except SchemaError as exc:
        raise _fail(exc) from None
    if check:
        stale = [m for m in modules if not m.fresh]
        for m in stale:
            what = "missing" if m.current() is None else "stale"
            click.echo(f"{what}: {m.path} does not match {m.schema}", err=True)
            click.echo(printable(stale_diff(m), keep_newlines=True), err=True, nl=False)
        if stale:
            click.echo(f"run: nanomsg-kernel codegen {schemas} --out {out}", err=True)
            raise SystemExit(int(ExitCode.FAILED))
        click.echo(f"{len(modules)} generated module(s) up to date")
        return
    for m in modules:
        try:
            written = write(m, force=force)
        except SchemaError as exc:
            raise _fail(exc) from None
        click.echo(f"{'wrote' if written else 'unchanged'}: {m.path} (from {m.schema})")


@click.group("schema")
def schema_group() -> None:
    """Kernel schemas: export a hand-written kernel, diff two versions, JSON Schema.

    A SOURCE is a schema file, a file at a git revision (git:REV:path), or a kernel's
    routing enum (package.module:RoutingEnum). Schema files are data, never executed; a
    routing enum's module is imported (its code runs), found on sys.path and then in
    --app-dir.
    """


_APP_DIR_HELP = ("Directory searched for the module of a package.module:RoutingEnum source, after the "
                 "standard library and installed packages (which it never hides).")


def _app_dir_option(f: Callable[..., None]) -> Callable[..., None]:
    return click.option("--app-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
                        show_default="the current directory", help=_APP_DIR_HELP)(f)


def _load(source: str, app_dir: Path) -> object:
    from nanomsg_kernel.codegen.schema import SchemaError
    from nanomsg_kernel.codegen.sources import load_source

    try:
        return load_source(source, app_dir=app_dir)
    except SchemaError as exc:
        raise _fail(exc) from None


@schema_group.command("export")
@click.argument("source")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the schema to this file instead of standard output.")
@_app_dir_option
def export_command(source: str, output: Path | None, app_dir: Path) -> None:
    """Write the schema of SOURCE, e.g. nanomsg_kernel.contracts.calc:CalcRoute, as a schema file."""
    from nanomsg_kernel.codegen.export import export_with_warnings
    from nanomsg_kernel.codegen.schema import SchemaError
    from nanomsg_kernel.codegen.sources import import_routes, load_source
    from nanomsg_kernel.codegen.toml_out import to_toml

    try:
        if ":" in source and not source.startswith("git:") and not Path(source).exists():
            kernel, warnings = export_with_warnings(import_routes(source, app_dir=app_dir), source=source)
        else:
            kernel, warnings = load_source(source, app_dir=app_dir), []
    except SchemaError as exc:
        raise _fail(exc) from None
    for w in warnings:
        click.echo(f"note: {printable(w)}", err=True)
    text = to_toml(kernel, comment=f"Schema of {source}, written by: nanomsg-kernel schema export {source}")
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@schema_group.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--mode", type=click.Choice(["full", "backward", "forward"]), default="full", show_default=True,
              help="full: both directions must work; backward: new decoders read old messages; "
                   "forward: old decoders read new messages.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_app_dir_option
def diff_command(old: str, new: str, mode: str, fmt: str, app_dir: Path) -> None:
    """Report every change from OLD to NEW; exit 1 if any is breaking.

    OLD and NEW are sources, e.g. git:main:schemas/calc.toml schemas/calc.toml.
    """
    from nanomsg_kernel.codegen.diff import diff
    from nanomsg_kernel.codegen.model import KernelSchema

    old_k, new_k = _load(old, app_dir), _load(new, app_dir)
    assert isinstance(old_k, KernelSchema) and isinstance(new_k, KernelSchema)
    report = diff(old_k, new_k, mode=mode)
    click.echo(printable(report.json() if fmt == "json" else report.text(), keep_newlines=True))
    if not report.ok:
        raise SystemExit(int(ExitCode.FAILED))


@schema_group.command("jsonschema")
@click.argument("source")
@click.option("--out", "-o", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Write one <Contract>.schema.json per contract here (default: print one JSON object).")
@click.option("--keys", type=click.Choice(["tag", "name"]), default="tag", show_default=True,
              help="Key message objects by field tag (as on the wire) or by field name.")
@_app_dir_option
def jsonschema_command(source: str, out: Path | None, keys: str, app_dir: Path) -> None:
    """Export a JSON Schema for each contract of SOURCE."""
    from nanomsg_kernel.codegen.json_schema import contract_schemas
    from nanomsg_kernel.codegen.model import KernelSchema

    kernel = _load(source, app_dir)
    assert isinstance(kernel, KernelSchema)
    schemas = contract_schemas(kernel, keys=keys)
    if out is None:
        click.echo(printable(json.dumps(schemas, indent=2, ensure_ascii=False), keep_newlines=True))
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        path = out / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        click.echo(f"wrote {path}", err=True)
