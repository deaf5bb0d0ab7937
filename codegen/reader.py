"""What the schema loader shares: limits, reserved names, and the reader that collects
problems and finds the line of each offending key."""

from __future__ import annotations

import keyword
from typing import Any

from nanomsg_kernel.codegen.errors import Problem
from nanomsg_kernel.codegen.model import clean_doc
from nanomsg_kernel.codegen.tomllines import KeyLines, key_lines
from nanomsg_kernel.contract import FIRST_BUILTIN_ROUTE

__all__ = [
    "FORMAT",
    "MAX_ROUTE",
    "MAX_TAG",
    "MAX_VERSION",
    "RESERVED_FIELD_NAMES",
    "RESERVED_TYPE_NAMES",
    "Reader",
    "article",
    "is_identifier",
    "show",
    "toml_type",
]

FORMAT = 1
"""The schema file format version this module reads (``format = 1``)."""
MAX_TAG = 2**31 - 1
MAX_ROUTE = FIRST_BUILTIN_ROUTE - 1
"""The largest route id a schema may use: those above are the built-in contracts'
(:data:`nanomsg_kernel.contract.FIRST_BUILTIN_ROUTE`)."""
MAX_VERSION = 0xFFFF

RESERVED_TYPE_NAMES = frozenset(
    {
        "int", "float", "bool", "str", "bytes", "datetime", "uuid", "optional", "list", "tuple",
        "dict", "enum", "annotations", "RoutingEnum", "contract", "field", "record", "None",
        "True", "False",
    }
)
"""Names no enum, record, contract or routing enum may take (they are used by generated code)."""

RESERVED_FIELD_NAMES = frozenset({"route", "evolve"}) | RESERVED_TYPE_NAMES


def is_identifier(name: str) -> bool:
    """True for an ASCII Python identifier that is not a keyword."""
    return name.isidentifier() and not keyword.iskeyword(name) and name.isascii()


class Reader:
    """Reads one schema document: collects problems, each placed on the line of its key."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines: KeyLines = key_lines(text)
        self.problems: list[Problem] = []

    def err(self, path: tuple[str, ...], name: str, message: str) -> None:
        """Record a problem about ``name``, on the line of the key at ``path``."""
        self.problems.append(Problem(self.source, self.lines.line(*path), name, message))

    def table(self, value: Any, path: tuple[str, ...], name: str, allowed: tuple[str, ...] | None) -> dict[str, Any]:
        """``value`` if it is a table (keys outside ``allowed`` are problems), else ``{}``."""
        if not isinstance(value, dict):
            self.err(path, name, f"expected a table, got {toml_type(value)}")
            return {}
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    self.err((*path, key), f"{name}.{key}", f"unknown key (expected one of: {', '.join(allowed)})")
        return value

    def doc(self, table: dict[str, Any], path: tuple[str, ...], name: str) -> str:
        """The table's ``doc``, cleaned like a docstring."""
        doc = table.get("doc", "")
        if not isinstance(doc, str):
            self.err((*path, "doc"), name, f"doc must be a string, got {toml_type(doc)}")
            return ""
        return clean_doc(doc)

    def int_in(self, value: Any, low: int, high: int, path: tuple[str, ...], name: str, what: str) -> int | None:
        """``value`` if it is an integer from ``low`` to ``high``, else ``None`` (and a problem)."""
        if type(value) is not int or not low <= value <= high:
            self.err(path, name, f"{what} must be an integer from {low} to {high}, got {show(value)}")
            return None
        return value


def article(word: str) -> str:
    """``a`` or ``an``, for ``word``."""
    return "an" if word[0] in "aeiou" else "a"


def toml_type(value: Any) -> str:
    """What kind of TOML value ``value`` is, for messages."""
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a float"}.get(type(value), type(value).__name__)


def show(value: Any) -> str:
    """A short ``repr`` of ``value``, for messages."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
