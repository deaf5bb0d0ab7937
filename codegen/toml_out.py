"""Write a :class:`~nanomsg_kernel.codegen.model.KernelSchema` as a schema file, in the canonical layout.

The output is what ``nanomsg-kernel schema export`` prints: one table per routing enum,
enum, record and contract, one inline table per field, keys in a fixed order, so that two
exports of the same kernel are byte-identical and diff cleanly.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from nanomsg_kernel.codegen.model import EnumSchema, FieldSchema, KernelSchema, MessageSchema
from nanomsg_kernel.codegen.pysource import comment as text_comment
from nanomsg_kernel.codegen.values import default_to_toml

__all__ = ["to_toml", "toml_key", "toml_value"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_key(key: str) -> str:
    """A key, bare when TOML allows it, quoted otherwise."""
    return key if _BARE_KEY.match(key) else toml_value(key)


def toml_value(value: Any) -> str:
    """A TOML literal for a str, int, float, bool, list or dict (as an inline table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _field(f: FieldSchema, kernel: KernelSchema) -> str:
    parts: dict[str, Any] = {"tag": f.tag, "type": f.type.describe()}
    if f.default is None:
        parts["default_none"] = True
    elif not f.required:
        parts["default"] = default_to_toml(f.default, f.type, kernel)
    if f.since != 1:
        parts["since"] = f.since
    return f"{toml_key(f.name)} = {toml_value(parts)}"


def _enum(e: EnumSchema) -> list[str]:
    out = [f"[enums.{toml_key(e.name)}]"]
    if e.doc:
        out.append(f"doc = {toml_value(e.doc)}")
    out += ["", f"[enums.{toml_key(e.name)}.members]"]
    out += [f"{toml_key(n)} = {toml_value(v)}" for n, v in e.members]
    return out


def _message(m: MessageSchema, kernel: KernelSchema) -> list[str]:
    section = "contracts" if m.is_contract else "records"
    head = f"{section}.{toml_key(m.name)}"
    out = [f"[{head}]"]
    if m.route is not None:
        out.append(f"route = {toml_value(m.route)}")
    if m.version != 1:
        out.append(f"version = {m.version}")
    if m.reserved:
        out.append(f"reserved = {toml_value(list(m.reserved))}")
    if m.doc:
        out.append(f"doc = {toml_value(m.doc)}")
    out += ["", f"[{head}.fields]"]
    out += [_field(f, kernel) for f in m.fields]
    return out


def to_toml(kernel: KernelSchema, *, comment: str = "") -> str:
    """The schema file text for ``kernel`` (``comment`` lines go on top, as TOML comments;
    a line with a character that is not printable is written as its ``repr``)."""
    out = [f"# {text_comment(line)}".rstrip() for line in comment.split("\n")] if comment else []
    out.append("format = 1")
    if kernel.doc:
        out.append(f"doc = {toml_value(kernel.doc)}")
    out += ["", "[routes]", f"name = {toml_value(kernel.routing)}"]
    if kernel.routing_doc:
        out.append(f"doc = {toml_value(kernel.routing_doc)}")
    out += ["", "[routes.members]"]
    out += [f"{toml_key(n)} = {i}" for n, i in kernel.routes]
    blocks = [_enum(e) for e in kernel.enums]
    blocks += [_message(r, kernel) for r in kernel.records]
    blocks += [_message(c, kernel) for c in kernel.contracts]
    for b in blocks:
        out += ["", *b]
    return "\n".join(out) + "\n"
