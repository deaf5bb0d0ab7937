"""The caller's side of the built-in contracts: health, describe, and a kernel from either a
service's description or a schema file (``health``, ``describe``, ``call --list``).

::

    status = await check_health("tcp://127.0.0.1:7000", timeout=2.0)
    about = await describe("tcp://127.0.0.1:7000", timeout=2.0)
    routes = described_kernel(about)          # live contract classes, built from data

A description comes from the network: it is untrusted. Its frame is bounded
(:data:`MAX_DESCRIBE_BODY`) before it is read, its schema text by size and by nesting
(:data:`MAX_SCHEMA_CHARS`, :data:`MAX_SCHEMA_NESTING`) before it is parsed, and the schema
is loaded by the schema loader as any schema file is: every name must be an identifier,
every text is written into the built module as a string literal, never as code (the
renderer's rule, :mod:`nanomsg_kernel.codegen.pysource`). Whatever is wrong with it is a
:class:`~nanomsg_kernel.errors.DecodeError`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nanomsg_kernel.builtin import BuiltinRoute, Describe, HealthCheck, HealthStatus
from nanomsg_kernel.client import Client
from nanomsg_kernel.errors import ConfigError, ContractError, DeadlineExceeded, DecodeError

if TYPE_CHECKING:
    from nanomsg_kernel.codegen.model import KernelSchema
    from nanomsg_kernel.routing import RoutingEnum

__all__ = [
    "MAX_DESCRIBE_BODY",
    "MAX_SCHEMA_CHARS",
    "MAX_SCHEMA_NESTING",
    "ask",
    "check_health",
    "contract_lines",
    "describe",
    "described_kernel",
    "described_schema",
    "kernel_option",
    "schema_of",
]

MAX_DESCRIBE_BODY = 1024 * 1024
"""The largest reply body a caller reads for a built-in request (1 MiB)."""
MAX_SCHEMA_CHARS = 512 * 1024
"""The longest schema text a caller parses from a description."""
MAX_SCHEMA_NESTING = 32
"""The deepest nesting of brackets (``[``, ``{``) a described schema may have: TOML tables
and type expressions such as ``list[dict[str, int]]`` are far shallower."""


async def ask(url: str, msg: Any, *, timeout: float, options: dict[str, Any] | None = None) -> Any:
    """Send the built-in request ``msg`` to ``url``; the reply, connecting included within
    ``timeout`` seconds.

    Raises:
        RemoteError / DeadlineExceeded / Unavailable: as :meth:`Client.call
            <nanomsg_kernel.client.Client.call>`.
        DecodeError: the reply is not a valid frame (or is over :data:`MAX_DESCRIBE_BODY`).
    """
    client = Client(BuiltinRoute, url, timeout=timeout, max_body_size=MAX_DESCRIBE_BODY, **(options or {}))
    try:
        async with asyncio.timeout(timeout):
            await client.connect()
            return await client.call(msg)
    except TimeoutError as exc:
        if isinstance(exc, DeadlineExceeded):
            raise
        raise DeadlineExceeded(f"{url}: no reply within {timeout:g}s") from None
    finally:
        await client.close()


async def check_health(url: str, *, service: str = "", timeout: float = 5.0,
                       options: dict[str, Any] | None = None) -> HealthCheck:
    """The health the service at ``url`` reports (``service``: the name it must have)."""
    reply: HealthCheck = await ask(url, HealthCheck(service=service), timeout=timeout, options=options)
    if not isinstance(reply.status, HealthStatus):
        raise DecodeError(f"{url}: the health reply has no status")
    return reply


async def describe(url: str, *, timeout: float = 5.0, options: dict[str, Any] | None = None) -> Describe:
    """The description of the service at ``url`` (its schema checked: :func:`described_schema`)."""
    reply: Describe = await ask(url, Describe(), timeout=timeout, options=options)
    described_schema(reply)
    return reply


def _nesting(text: str) -> int:
    """The deepest bracket nesting of ``text`` (brackets inside strings count too)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


def described_schema(reply: Describe) -> KernelSchema:
    """The schema of a description, loaded as data and checked.

    Raises:
        DecodeError: the schema is too long, nested too deep, or not a valid schema whose
            routing enum is the described kernel.
    """
    from nanomsg_kernel.codegen.schema import load_text

    text = reply.schema
    if len(text) > MAX_SCHEMA_CHARS:
        raise DecodeError(f"the described schema is {len(text)} characters long, over the {MAX_SCHEMA_CHARS} read")
    if _nesting(text) > MAX_SCHEMA_NESTING:
        raise DecodeError(f"the described schema nests brackets deeper than {MAX_SCHEMA_NESTING}")
    try:
        schema = load_text(text, "the described schema", reply.kernel or "kernel")
    except (ContractError, RecursionError) as exc:
        raise DecodeError(f"the described schema is invalid: {exc}") from None
    if schema.routing != reply.kernel:
        raise DecodeError(f"the described schema's routing enum is {schema.routing!r}, not {reply.kernel!r}")
    return schema


def _build(schema: KernelSchema) -> type[RoutingEnum]:
    from nanomsg_kernel.codegen.load_kernel import load_routes

    try:
        return load_routes(schema)
    except (ContractError, RecursionError) as exc:
        raise DecodeError(f"the schema cannot be built: {exc}") from None


def described_kernel(reply: Describe) -> type[RoutingEnum]:
    """Live contract classes of a description: the routing enum of a kernel built from its
    schema, as ``codegen`` would write it (texts only in string literals).

    Raises:
        DecodeError: see :func:`described_schema`.
    """
    return _build(described_schema(reply))


def kernel_option(value: str) -> type[RoutingEnum]:
    """The kernel ``--kernel`` names: a schema file (``schemas/calc.toml``: read as data) or
    a routing enum to import (``package.module:Enum``: its module's code runs).

    Raises:
        ConfigError: neither, or a schema file that is not valid.
    """
    from nanomsg_kernel.app.call import load_kernel

    if value.endswith(".toml") or Path(value).is_file():
        from nanomsg_kernel.codegen.schema import load_path

        try:
            return _build(load_path(value))
        except (ContractError, DecodeError) as exc:
            raise ConfigError(str(exc)) from None
    return load_kernel(value)


def contract_lines(schema: KernelSchema, *, handled: list[str] | None = None,
                   subscribed: list[str] | None = None) -> list[str]:
    """One line per contract of ``schema``: name, route, version, fields; with what the
    service does with it when ``handled``/``subscribed`` are known (from a description)."""
    routes = dict(schema.routes)
    lines = []
    for c in schema.contracts:
        roles = []
        if handled is not None and c.name in handled:
            roles.append("handled")
        if subscribed is not None and c.name in subscribed:
            roles.append("subscribed")
        if handled is not None and not roles:
            roles.append("not handled")
        role = f" [{', '.join(roles)}]" if roles else ""
        fields = ", ".join(f"{f.name}: {f.type.describe()}" for f in c.fields)
        route = c.route or ""
        lines.append(f"{c.name} (route {routes.get(route, '?')} {route}, version {c.version}){role}: {fields}")
    return lines


def schema_of(routes: type[RoutingEnum]) -> KernelSchema:
    """The schema of a live kernel (``ConfigError`` if it cannot be written as one)."""
    from nanomsg_kernel.codegen.export import export_kernel

    try:
        return export_kernel(routes)
    except ContractError as exc:
        raise ConfigError(str(exc)) from None
