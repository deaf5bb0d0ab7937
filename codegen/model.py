"""The schema of a kernel as plain data: routes, enums, records and contracts.

A :class:`KernelSchema` is what a schema file declares and what a hand-written kernel
exports; code generation, ``schema diff`` and JSON Schema export all work from it. Types
are :class:`TypeRef` trees written in schema files as ``int``, ``optional[Price]``,
``list[str]``, ``tuple[float, float]``, ``tuple[Colour, ...]`` or ``dict[str, int]``.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = [
    "BUILTIN_KINDS",
    "EMPTY_DICT",
    "EMPTY_LIST",
    "REQUIRED",
    "EnumSchema",
    "FieldSchema",
    "KernelSchema",
    "MessageSchema",
    "Special",
    "TypeRef",
    "clean_doc",
]

SCALAR_KINDS = ("int", "float", "bool", "str", "bytes", "datetime", "uuid")
CONTAINER_KINDS = ("optional", "list", "tuple", "dict")
BUILTIN_KINDS = frozenset(SCALAR_KINDS + CONTAINER_KINDS)
"""Type names a schema may use besides the kernel's own enums and records."""


def clean_doc(doc: str) -> str:
    """A docstring as the schema keeps it: tabs expanded, trailing whitespace dropped from every
    line, blank lines dropped at both ends, the first line's indentation removed and the common
    indentation of the others (what ``inspect.cleandoc`` does).

    The result is its own ``clean_doc`` and its own ``inspect.cleandoc``, so a docstring
    generated from it reads back (``inspect.getdoc``, ``ast.get_docstring``) exactly.
    """
    lines = [line.rstrip() for line in doc.expandtabs().split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    first = next((i for i, line in enumerate(lines) if line), len(lines))
    lines = lines[first:]
    if not lines:
        return ""
    margin = min((len(line) - len(line.lstrip()) for line in lines[1:] if line), default=0)
    return "\n".join([lines[0].lstrip(), *(line[margin:] for line in lines[1:])])


class Special(enum.Enum):
    """Defaults that are not plain values."""

    REQUIRED = "required"
    """The field has no default."""
    EMPTY_LIST = "[]"
    """``field(factory=list)``."""
    EMPTY_DICT = "{}"
    """``field(factory=dict)``."""

    def __repr__(self) -> str:
        return self.name


REQUIRED = Special.REQUIRED
EMPTY_LIST = Special.EMPTY_LIST
EMPTY_DICT = Special.EMPTY_DICT


@attrs.frozen
class TypeRef:
    """A field type: a scalar kind, a container of types, or a named enum or record."""

    kind: str
    """A scalar kind, ``optional``, ``list``, ``tuple``, ``dict``, or ``named``."""
    args: tuple[TypeRef, ...] = ()
    name: str = ""
    """The enum or record name when ``kind == "named"``."""
    variadic: bool = False
    """True for ``tuple[X, ...]``."""

    def describe(self) -> str:
        """The type as written in a schema file."""
        if self.kind == "named":
            return self.name
        if self.kind == "tuple" and self.variadic:
            return f"tuple[{self.args[0].describe()}, ...]"
        if self.args:
            return f"{self.kind}[{', '.join(a.describe() for a in self.args)}]"
        return self.kind

    def names(self) -> list[str]:
        """Every enum or record name used in this type, outermost first."""
        out = [self.name] if self.kind == "named" else []
        for a in self.args:
            out += a.names()
        return out

    def __str__(self) -> str:
        return self.describe()


@attrs.frozen
class FieldSchema:
    """One field of a contract or record."""

    name: str
    tag: int
    type: TypeRef
    default: Any = REQUIRED
    """:data:`REQUIRED`, :data:`EMPTY_LIST`, :data:`EMPTY_DICT`, ``None``, or a value:
    int, float, bool, str, bytes, an enum member's *name* (str) for enum types, or a tuple
    of values for tuple types."""
    since: int = 1

    @property
    def required(self) -> bool:
        """True when the field has no default."""
        return self.default is REQUIRED


@attrs.frozen
class MessageSchema:
    """A contract (``route`` set) or a record (``route is None``)."""

    name: str
    fields: tuple[FieldSchema, ...] = ()
    version: int = 1
    reserved: tuple[int, ...] = ()
    """Retired tags, sorted."""
    route: str | None = None
    """The routing enum member's name, for a contract."""
    doc: str = attrs.field(default="", converter=clean_doc)
    """The class docstring, kept as :func:`clean_doc` leaves it."""

    @property
    def is_contract(self) -> bool:
        """True for a contract, False for a record."""
        return self.route is not None

    def field_by_tag(self, tag: int) -> FieldSchema | None:
        """The field with ``tag``, or ``None``."""
        for f in self.fields:
            if f.tag == tag:
                return f
        return None


@attrs.frozen
class EnumSchema:
    """An enum used as a field type; values are all int or all str."""

    name: str
    members: tuple[tuple[str, int | str], ...]
    doc: str = attrs.field(default="", converter=clean_doc)
    """The class docstring, kept as :func:`clean_doc` leaves it."""

    @property
    def value_kind(self) -> str:
        """``"int"`` or ``"str"``."""
        return "str" if isinstance(self.members[0][1], str) else "int"

    def by_value(self) -> dict[int | str, str]:
        """Member names keyed by value."""
        return {v: n for n, v in self.members}


@attrs.frozen
class KernelSchema:
    """A whole kernel: its routing enum, enums, records and contracts (in file order)."""

    name: str
    """The kernel's module name (the schema file's stem)."""
    routing: str
    """The routing enum class name."""
    routes: tuple[tuple[str, int], ...]
    """Routing enum members: (name, id)."""
    enums: tuple[EnumSchema, ...] = ()
    records: tuple[MessageSchema, ...] = ()
    contracts: tuple[MessageSchema, ...] = ()
    doc: str = attrs.field(default="", converter=clean_doc)
    """The module docstring, kept as :func:`clean_doc` leaves it."""
    routing_doc: str = attrs.field(default="", converter=clean_doc)
    """The routing enum's docstring, kept as :func:`clean_doc` leaves it."""
    source: str = attrs.field(default="", eq=False)
    """Where the schema came from (a path, ``git:REV:path`` or ``module:Enum``)."""

    def enum(self, name: str) -> EnumSchema | None:
        """The enum called ``name``, or ``None``."""
        return next((e for e in self.enums if e.name == name), None)

    def record(self, name: str) -> MessageSchema | None:
        """The record called ``name``, or ``None``."""
        return next((r for r in self.records if r.name == name), None)

    def contract_for(self, route_id: int) -> MessageSchema | None:
        """The contract bound to the route with id ``route_id``, or ``None``."""
        names = [n for n, i in self.routes if i == route_id]
        return next((c for c in self.contracts if c.route in names), None)

    def route_id(self, member: str) -> int:
        """The id of the routing member called ``member``."""
        return dict(self.routes)[member]
