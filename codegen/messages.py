"""Reading the records and contracts of a schema file: fields, tags, types and defaults."""

from __future__ import annotations

from typing import Any

from nanomsg_kernel.codegen.model import REQUIRED, FieldSchema, KernelSchema, MessageSchema, TypeRef
from nanomsg_kernel.codegen.reader import (
    MAX_TAG,
    MAX_VERSION,
    RESERVED_FIELD_NAMES,
    Reader,
    is_identifier,
    toml_type,
)
from nanomsg_kernel.codegen.typeexpr import TypeExprError, parse_type
from nanomsg_kernel.codegen.values import check_default, default_from_toml

__all__ = ["check_bindings", "load_message"]

_FIELD_KEYS = ("tag", "type", "default", "default_none", "since")


def load_message(
    ld: Reader,
    kernel: KernelSchema,
    kinds: dict[str, str],
    path: tuple[str, ...],
    name: str,
    raw: Any,
    *,
    contract: bool,
) -> MessageSchema:
    """Read the contract or record ``name`` from its table ``raw`` (problems go to ``ld``)."""
    allowed = ("route", "doc", "version", "reserved", "fields") if contract else ("doc", "version", "reserved", "fields")
    t = ld.table(raw, path, name, allowed)
    doc = ld.doc(t, path, name)
    route: str | None = None
    if contract:
        route = t.get("route")
        if not isinstance(route, str):
            ld.err((*path, "route"), name, f"a contract needs route = \"MEMBER\" naming a member of {kernel.routing}")
            route = ""
        elif route not in dict(kernel.routes):
            ld.err((*path, "route"), name, f"route {route!r} is not a member of {kernel.routing}")
    version = ld.int_in(t.get("version", 1), 1, MAX_VERSION, (*path, "version"), name, "version") or 1
    reserved = _load_reserved(ld, t.get("reserved", []), (*path, "reserved"), name)
    fields: list[FieldSchema] = []
    seen: dict[int, str] = {}
    defaulted: str | None = None
    for fname, fraw in ld.table(t.get("fields", {}), (*path, "fields"), f"{name}.fields", None).items():
        fpath = (*path, "fields", fname)
        f = _load_field(ld, kernel, kinds, fpath, f"{name}.{fname}", fname, fraw, version)
        if f is None:
            continue
        where = f"{name}.{fname}"
        if f.tag in reserved:
            ld.err((*fpath, "tag"), where, f"tag {f.tag} is reserved in {name}")
        elif f.tag in seen:
            ld.err((*fpath, "tag"), where, f"tag {f.tag} is already used by {name}.{seen[f.tag]}")
        seen[f.tag] = fname
        if f.required and defaulted is not None:
            ld.err(fpath, where, f"a required field cannot follow {name}.{defaulted}, which has a default; "
                   "move it up (tags keep their values)")
        if not f.required and defaulted is None:
            defaulted = fname
        fields.append(f)
    return MessageSchema(name, tuple(fields), version, tuple(sorted(reserved)), route, doc)


def _load_reserved(ld: Reader, raw: Any, path: tuple[str, ...], name: str) -> set[int]:
    if not isinstance(raw, list):
        ld.err(path, name, f"reserved must be an array of tags, got {toml_type(raw)}")
        return set()
    out: set[int] = set()
    for r in raw:
        tag = ld.int_in(r, 1, MAX_TAG, path, name, "a reserved tag")
        if tag is not None:
            if tag in out:
                ld.err(path, name, f"tag {tag} is reserved twice")
            out.add(tag)
    return out


def _load_field(
    ld: Reader,
    kernel: KernelSchema,
    kinds: dict[str, str],
    path: tuple[str, ...],
    where: str,
    fname: str,
    raw: Any,
    version: int,
) -> FieldSchema | None:
    if not is_identifier(fname) or fname.startswith("_") or fname in RESERVED_FIELD_NAMES or fname in kinds:
        ld.err(path, where, "a field name must be an identifier, not start with _, and not be a type name, "
               "'route' or 'evolve'")
        return None
    t = ld.table(raw, path, where, _FIELD_KEYS)
    if not t:
        return None
    ok = True
    if "tag" not in t:
        ld.err(path, where, "missing tag (every field needs a stable tag, e.g. tag = 1)")
        ok = False
    tag = ld.int_in(t.get("tag"), 1, MAX_TAG, (*path, "tag"), where, "tag") if "tag" in t else None
    since = ld.int_in(t.get("since", 1), 1, MAX_VERSION, (*path, "since"), where, "since")
    if since is not None and since > version:
        ld.err((*path, "since"), where, f"since = {since} is newer than the version ({version})")
        ok = False
    ref = _load_type(ld, kinds, t.get("type"), (*path, "type"), where)
    if tag is None or since is None or ref is None or not ok:
        return None
    default: Any = REQUIRED
    none = t.get("default_none", False)
    if type(none) is not bool:
        ld.err((*path, "default_none"), where, "default_none must be true or false")
        return None
    if none and "default" in t:
        ld.err((*path, "default_none"), where, "give either default or default_none, not both")
        return None
    try:
        if none:
            default = None
            check_default(None, ref, kernel)
        elif "default" in t:
            default = default_from_toml(t["default"], ref, kernel)
    except ValueError as exc:
        ld.err((*path, "default_none" if none else "default"), where, str(exc))
        return None
    return FieldSchema(fname, tag, ref, default, since)


def _load_type(ld: Reader, kinds: dict[str, str], raw: Any, path: tuple[str, ...], where: str) -> TypeRef | None:
    if raw is None:
        ld.err(path, where, "missing type, e.g. type = \"int\"")
        return None
    try:
        ref = parse_type(raw)
    except TypeExprError as exc:
        ld.err(path, where, str(exc))
        return None
    for n in ref.names():
        kind = kinds.get(n)
        if kind is None:
            ld.err(path, where, f"unknown type {n!r} (not a builtin type, nor an enum or record of this schema)")
            return None
        if kind not in ("enum", "record"):
            ld.err(path, where, f"{n} is a {kind}; only enums and records can be field types")
            return None
    return ref


def check_bindings(ld: Reader, routes: list[tuple[str, int]], contracts: list[MessageSchema]) -> None:
    """Check that every route has exactly one contract."""
    bound: dict[str, str] = {}
    for c in contracts:
        if not c.route:
            continue
        if c.route in bound:
            ld.err(("contracts", c.name, "route"), c.name, f"route {c.route} already has contract {bound[c.route]}")
        bound[c.route] = c.name
    for m, _rid in routes:
        if m not in bound:
            ld.err(("routes", "members", m), m, "no contract is bound to this route")
