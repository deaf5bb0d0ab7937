"""JSON Schema (draft 2020-12) for each contract of a kernel, for clients in other languages.

A schema describes a message in one of two JSON forms:

* ``keys="tag"`` (the default) mirrors the wire: the msgpack body is a map keyed by field
  tag, so objects are keyed by the tags as decimal strings and enums are their values;
* ``keys="name"`` is the JSON form of :mod:`nanomsg_kernel.app.jsonio` (what ``nanomsg-kernel
  call`` reads and prints): objects keyed by field name, enums by member name (or value).

In both, ``int`` is a 64-bit integer, ``float`` a number (or ``"NaN"``, ``"Infinity"``,
``"-Infinity"``), ``bytes`` a base64 string, ``uuid`` a UUID string, ``datetime`` an RFC 3339
string with a time zone, records nested objects (under ``$defs``), tuples fixed-size
arrays, ``optional`` adds ``null``. Unknown keys are allowed: newer versions of a contract
may send fields an older schema does not list. Each schema carries its route id and
contract version as ``x-nanomsg-route`` and ``x-nanomsg-version``.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from nanomsg_kernel.codegen.model import EMPTY_DICT, EMPTY_LIST, KernelSchema, MessageSchema, TypeRef
from nanomsg_kernel.codegen.values import INT_MAX, INT_MIN

__all__ = ["DIALECT", "contract_schemas", "message_schema", "type_schema"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def type_schema(ref: TypeRef, kernel: KernelSchema) -> dict[str, Any]:
    """The JSON Schema of one field type (records and enums as ``$ref`` into ``$defs``)."""
    k = ref.kind
    if k == "int":
        return {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX}
    if k == "float":
        return {"anyOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]}
    if k == "bool":
        return {"type": "boolean"}
    if k == "str":
        return {"type": "string"}
    if k == "bytes":
        return {"type": "string", "contentEncoding": "base64"}
    if k == "uuid":
        return {"type": "string", "format": "uuid"}
    if k == "datetime":
        return {"type": "string", "format": "date-time"}
    if k == "named":
        return {"$ref": f"#/$defs/{ref.name}"}
    if k == "optional":
        return {"anyOf": [type_schema(ref.args[0], kernel), {"type": "null"}]}
    if k == "list" or (k == "tuple" and ref.variadic):
        return {"type": "array", "items": type_schema(ref.args[0], kernel)}
    if k == "tuple":
        n = len(ref.args)
        return {
            "type": "array",
            "prefixItems": [type_schema(a, kernel) for a in ref.args],
            "items": False,
            "minItems": n,
            "maxItems": n,
        }
    if k == "dict":
        out: dict[str, Any] = {"type": "object", "additionalProperties": type_schema(ref.args[1], kernel)}
        if ref.args[0].kind == "int":
            out["propertyNames"] = {"pattern": "^-?[0-9]+$"}
        return out
    raise ValueError(f"no JSON Schema for {ref.describe()}")  # pragma: no cover - the loader refuses it


def _json_default(value: Any, ref: TypeRef, kernel: KernelSchema, keys: str) -> Any:
    if value is None:
        return None
    if value is EMPTY_LIST:
        return []
    if value is EMPTY_DICT:
        return {}
    if ref.kind == "optional":
        return _json_default(value, ref.args[0], kernel, keys)
    if ref.kind == "named":
        e = kernel.enum(ref.name)
        assert e is not None
        return value if keys == "name" else dict(e.members)[value]
    if type(value) is float and not math.isfinite(value):
        return "Infinity" if value > 0 else "-Infinity"
    if type(value) is bytes:
        return base64.b64encode(value).decode("ascii")
    if type(value) is tuple:
        items = ref.args * len(value) if ref.variadic else ref.args
        return [_json_default(v, t, kernel, keys) for v, t in zip(value, items, strict=True)]
    return value


def message_schema(m: MessageSchema, kernel: KernelSchema, *, keys: str = "tag") -> dict[str, Any]:
    """The object schema of a contract or record (without ``$defs``)."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in m.fields:
        key = str(f.tag) if keys == "tag" else f.name
        prop = type_schema(f.type, kernel)
        prop = {"title": f.name, **prop} if keys == "tag" else {"x-nanomsg-tag": f.tag, **prop}
        if f.since != 1:
            prop["x-nanomsg-since"] = f.since
        if f.required:
            required.append(key)
        else:
            prop["default"] = _json_default(f.default, f.type, kernel, keys)
        props[key] = prop
    out: dict[str, Any] = {"title": m.name, "type": "object"}
    if m.doc:
        out["description"] = m.doc
    out["properties"] = props
    if required:
        out["required"] = required
    if keys == "tag":
        out["propertyNames"] = {"pattern": "^[1-9][0-9]*$"}
    return out


def _defs(m: MessageSchema, kernel: KernelSchema, keys: str) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    stack = [n for f in m.fields for n in f.type.names()]
    while stack:
        name = stack.pop(0)
        if name in defs:
            continue
        e = kernel.enum(name)
        if e is not None:
            values: list[Any] = [v for _, v in e.members]
            if keys == "name":
                values = [n for n, _ in e.members] + [v for v in values if v not in dict(e.members)]
            d: dict[str, Any] = {"title": e.name, "enum": values}
            if e.doc:
                d["description"] = e.doc
            d["x-nanomsg-members"] = dict(e.members)
            defs[name] = d
            continue
        r = kernel.record(name)
        assert r is not None
        defs[name] = message_schema(r, kernel, keys=keys)
        stack += [n for f in r.fields for n in f.type.names()]
    return dict(sorted(defs.items()))


def contract_schemas(kernel: KernelSchema, *, keys: str = "tag") -> dict[str, dict[str, Any]]:
    """One JSON Schema per contract of ``kernel``, keyed by contract name.

    Args:
        keys: ``"tag"`` (objects keyed by field tag, as on the wire) or ``"name"``.
    """
    if keys not in ("tag", "name"):
        raise ValueError(f"keys must be 'tag' or 'name', not {keys!r}")
    out: dict[str, dict[str, Any]] = {}
    for c in kernel.contracts:
        assert c.route is not None
        schema: dict[str, Any] = {
            "$schema": DIALECT,
            "$id": f"urn:nanomsg-kernel:{kernel.routing}:{c.name}",
        }
        schema.update(message_schema(c, kernel, keys=keys))
        schema["x-nanomsg-route"] = kernel.route_id(c.route)
        schema["x-nanomsg-version"] = c.version
        defs = _defs(c, kernel, keys)
        if defs:
            schema["$defs"] = defs
        out[c.name] = schema
    return out

