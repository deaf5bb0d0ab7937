"""Read a kernel schema file (TOML) into a :class:`~nanomsg_kernel.codegen.model.KernelSchema`.

Every problem is reported as ``file:line: name: problem`` (the line of the offending key,
found with :mod:`nanomsg_kernel.codegen.tomllines`), and all problems of a file are reported together in
one :class:`SchemaError`. The format is described in ``docs/schemas.md``.
"""

from __future__ import annotations

import enum
import re
import tomllib
from pathlib import Path
from typing import Any

from nanomsg_kernel.codegen.errors import Problem, SchemaError
from nanomsg_kernel.codegen.messages import check_bindings, load_message
from nanomsg_kernel.codegen.model import EnumSchema, KernelSchema, MessageSchema
from nanomsg_kernel.codegen.reader import (
    FORMAT,
    MAX_ROUTE,
    MAX_TAG,
    MAX_VERSION,
    RESERVED_TYPE_NAMES,
    Reader,
    article,
    is_identifier,
    show,
)
from nanomsg_kernel.routing import RoutingEnum

__all__ = [
    "FORMAT",
    "MAX_ROUTE",
    "MAX_TAG",
    "MAX_VERSION",
    "Problem",
    "SchemaError",
    "load_path",
    "load_text",
    "record_order",
]

_TOP_KEYS = ("format", "doc", "routes", "enums", "records", "contracts")
_LINE_IN_MESSAGE = re.compile(r"\(at line (\d+), column \d+\)|at line (\d+)")


def load_path(path: str | Path) -> KernelSchema:
    """Load the schema file at ``path`` (the kernel's name is the file's stem).

    Raises:
        SchemaError: the file is missing, is not valid TOML, or breaks a schema rule.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError.one(str(path), p.name, f"cannot read the schema: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SchemaError.one(str(path), p.name, f"not UTF-8 text: {exc.reason}") from None
    return load_text(text, str(path), p.stem)


def load_text(text: str, source: str, name: str) -> KernelSchema:
    """Load a schema from TOML ``text``; ``source`` names it in errors, ``name`` is the kernel's.

    Raises:
        SchemaError: with every problem found, each as ``source:line: name: problem``.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _LINE_IN_MESSAGE.search(msg)
        line = int(m.group(1) or m.group(2)) if m else None
        raise SchemaError.one(source, "syntax", _LINE_IN_MESSAGE.sub("", msg).strip(), line) from None
    ld = Reader(text, source)
    kernel = _load(ld, data, name)
    if ld.problems:
        raise SchemaError(ld.problems)
    assert kernel is not None
    return kernel


def _load(ld: Reader, data: dict[str, Any], name: str) -> KernelSchema | None:
    ld.table(data, (), "schema", _TOP_KEYS)
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT or type(fmt) is not int:
        ld.err(("format",), "format", f"this version reads schema format {FORMAT}, not {show(fmt)}")
    doc = ld.doc(data, (), "schema")
    if "routes" not in data:
        ld.err((), "routes", "missing [routes] table (the routing enum)")
        return None
    routing, routing_doc, routes = _load_routes(ld, data["routes"])
    enums = _load_enums(ld, data.get("enums", {}))
    records_raw = ld.table(data.get("records", {}), ("records",), "records", None)
    contracts_raw = ld.table(data.get("contracts", {}), ("contracts",), "contracts", None)
    kinds: dict[str, str] = {}
    for kind, names, path in (
        ("routing enum", [routing] if routing else [], ("routes", "name")),
        ("enum", [e.name for e in enums], ("enums",)),
        ("record", list(records_raw), ("records",)),
        ("contract", list(contracts_raw), ("contracts",)),
    ):
        for n in names:
            where = path if kind == "routing enum" else (*path, n)
            if not is_identifier(n) or n in RESERVED_TYPE_NAMES:
                ld.err(where, n, f"{kind} name must be a Python identifier and not one of the builtin names")
            elif n in kinds:
                ld.err(where, n, f"{kind} name is already used by {article(kinds[n])} {kinds[n]}")
            else:
                kinds[n] = kind
    partial = KernelSchema(name, routing, tuple(routes), tuple(enums), source=ld.source)
    records = [
        load_message(ld, partial, kinds, ("records", n), n, t, contract=False) for n, t in records_raw.items()
    ]
    contracts = [
        load_message(ld, partial, kinds, ("contracts", n), n, t, contract=True) for n, t in contracts_raw.items()
    ]
    check_bindings(ld, routes, contracts)
    kernel = KernelSchema(
        name, routing, tuple(routes), tuple(enums), tuple(records), tuple(contracts), doc, routing_doc, ld.source
    )
    if not ld.problems:
        try:
            record_order(kernel)
        except SchemaError as exc:
            ld.problems += [p._replace(line=ld.lines.line("records", p.name)) for p in exc.problems]
    return kernel


def _load_routes(ld: Reader, raw: Any) -> tuple[str, str, list[tuple[str, int]]]:
    t = ld.table(raw, ("routes",), "routes", ("name", "doc", "members"))
    routing = t.get("name", "")
    if not isinstance(routing, str) or not routing:
        ld.err(("routes", "name"), "routes.name", "the routing enum needs a class name, e.g. name = \"CalcRoute\"")
        routing = ""
    doc = ld.doc(t, ("routes",), routing or "routes")
    members = ld.table(t.get("members", {}), ("routes", "members"), f"{routing}.members", None)
    if not members:
        ld.err(("routes", "members"), routing or "routes", "the routing enum needs members, e.g. [routes.members] PING = 1")
    out: list[tuple[str, int]] = []
    seen: dict[int, str] = {}
    for m, value in members.items():
        path = ("routes", "members", m)
        where = f"{routing}.{m}"
        if not is_identifier(m) or m.startswith("_") or hasattr(RoutingEnum, m):
            ld.err(path, where, "a route name must be an identifier, not starting with _ nor an attribute of RoutingEnum")
            continue
        rid = ld.int_in(value, 0, MAX_ROUTE, path, where, "a route id")
        if rid is None:
            continue
        if rid in seen:
            ld.err(path, where, f"route id {rid} is already used by {routing}.{seen[rid]}")
            continue
        seen[rid] = m
        out.append((m, rid))
    return routing, doc, out


def _load_enums(ld: Reader, raw: Any) -> list[EnumSchema]:
    out: list[EnumSchema] = []
    for name, body in ld.table(raw, ("enums",), "enums", None).items():
        path = ("enums", name)
        t = ld.table(body, path, name, ("doc", "members"))
        doc = ld.doc(t, path, name)
        members = ld.table(t.get("members", {}), (*path, "members"), f"{name}.members", None)
        if not members:
            ld.err(path, name, "an enum needs members, e.g. members = { RED = \"red\" }")
            continue
        kinds = {type(v) for v in members.values()}
        if kinds not in ({int}, {str}):
            ld.err((*path, "members"), name, "enum values must be all integers or all strings")
            continue
        items: list[tuple[str, int | str]] = []
        seen: dict[Any, str] = {}
        base = enum.IntEnum if kinds == {int} else enum.Enum
        for m, v in members.items():
            mpath = (*path, "members", m)
            if not is_identifier(m) or m.startswith("_") or hasattr(base, m):
                ld.err(mpath, f"{name}.{m}", "a member name must be an identifier, not starting with _")
            elif v in seen:
                ld.err(mpath, f"{name}.{m}", f"value {v!r} is already used by {name}.{seen[v]}")
            elif type(v) is int and not -(2**63) <= v < 2**63:
                ld.err(mpath, f"{name}.{m}", f"value {v} does not fit a 64-bit signed int")
            else:
                seen[v] = m
                items.append((m, v))
        out.append(EnumSchema(name, tuple(items), doc))
    return out


def record_order(kernel: KernelSchema) -> list[MessageSchema]:
    """Records ordered so that each comes after the records it uses (file order otherwise).

    Raises:
        SchemaError: records use each other in a cycle.
    """
    by_name = {r.name: r for r in kernel.records}
    done: dict[str, MessageSchema] = {}
    active: list[str] = []

    def visit(r: MessageSchema) -> None:
        if r.name in done:
            return
        if r.name in active:
            cycle = " -> ".join([*active[active.index(r.name):], r.name])
            raise SchemaError.one(kernel.source, r.name, f"records use each other in a cycle: {cycle}")
        active.append(r.name)
        for f in r.fields:
            for n in f.type.names():
                if n in by_name:
                    visit(by_name[n])
        active.pop()
        done[r.name] = r

    for r in kernel.records:
        visit(r)
    return list(done.values())
