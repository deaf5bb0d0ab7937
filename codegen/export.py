"""Export the schema of a live kernel (hand-written or generated) as a :class:`KernelSchema`.

``export_kernel(CalcRoute)`` reads the routing enum, every contract bound to it and every
enum and record they use, so that hand-written and generated kernels are diffed, checked
and exported to JSON Schema the same way. Enums and records come out in the order they
are first used, each record after the records it uses.
"""

from __future__ import annotations

import enum
import sys
from typing import Any

import attrs

from nanomsg_kernel.codegen.model import (
    EMPTY_DICT,
    EMPTY_LIST,
    REQUIRED,
    EnumSchema,
    FieldSchema,
    KernelSchema,
    MessageSchema,
    TypeRef,
    clean_doc,
)
from nanomsg_kernel.codegen.schema import SchemaError, load_text
from nanomsg_kernel.codegen.toml_out import to_toml
from nanomsg_kernel.contract import ContractInfo, FieldInfo, contract_info
from nanomsg_kernel.errors import ContractError
from nanomsg_kernel.routing import RoutingEnum
from nanomsg_kernel.types import TypeSpec

__all__ = ["export_kernel", "export_with_warnings"]


def _doc(cls: type) -> str:
    doc = cls.__dict__.get("__doc__")
    return clean_doc(doc) if isinstance(doc, str) else ""


class _Exporter:
    def __init__(self, source: str) -> None:
        self.source = source
        self.enums: dict[str, EnumSchema] = {}
        self.records: dict[str, MessageSchema] = {}
        self.classes: dict[str, type] = {}
        self.warnings: list[str] = []

    def fail(self, name: str, message: str) -> SchemaError:
        return SchemaError.one(self.source, name, message)

    def claim(self, cls: type) -> None:
        other = self.classes.setdefault(cls.__name__, cls)
        if other is not cls:
            raise self.fail(cls.__name__, f"two different types are called {cls.__name__} "
                            f"({other.__module__} and {cls.__module__}); a schema needs distinct names")

    def type_ref(self, spec: TypeSpec, where: str) -> TypeRef:
        k = spec.kind
        if k == "enum":
            self.enum(spec.py)
            return TypeRef("named", name=spec.py.__name__)
        if k == "record":
            self.record(spec.py)
            return TypeRef("named", name=spec.py.__name__)
        args = tuple(self.type_ref(a, where) for a in spec.args)
        if k == "tuple":
            return TypeRef("tuple", args, variadic=spec.py is Ellipsis)
        return TypeRef(k, args)

    def enum(self, cls: type[enum.Enum]) -> None:
        if cls.__name__ in self.enums:
            self.claim(cls)
            return
        self.claim(cls)
        self.enums[cls.__name__] = EnumSchema(cls.__name__, tuple((m.name, m.value) for m in cls), _doc(cls))

    def record(self, cls: type) -> None:
        if cls.__name__ in self.records:
            self.claim(cls)
            return
        self.claim(cls)
        self.records[cls.__name__] = self.message(contract_info(cls), None)

    def message(self, info: ContractInfo, route: str | None) -> MessageSchema:
        name = info.cls.__name__
        fields = tuple(self.field(name, f, info.cls) for f in info.fields)
        return MessageSchema(name, fields, info.version, tuple(sorted(info.reserved)), route, _doc(info.cls))

    def field(self, owner: str, f: FieldInfo, cls: type) -> FieldSchema:
        where = f"{owner}.{f.name}"
        ref = self.type_ref(f.spec, where)
        a = attrs.fields_dict(cls)[f.name]
        if a.validator is not None or a.converter is not None:
            self.warnings.append(f"{where}: validators and converters are not part of the schema")
        return FieldSchema(f.name, f.tag, ref, self.default(where, f.default, f.spec), f.since)

    def default(self, where: str, value: Any, spec: TypeSpec) -> Any:
        if value is attrs.NOTHING:
            return REQUIRED
        if isinstance(value, attrs.Factory):  # type: ignore[arg-type]
            factory = value.factory
            if factory is list and spec.kind == "list":
                return EMPTY_LIST
            if factory is dict and spec.kind == "dict":
                return EMPTY_DICT
            if factory is tuple and spec.kind == "tuple" and spec.py is Ellipsis:
                return ()
            raise self.fail(where, f"the default factory {getattr(factory, '__name__', factory)!r} cannot be "
                            "written in a schema (only list for list fields and dict for dict fields)")
        return self.value(where, value)

    def value(self, where: str, value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.name
        if isinstance(value, (list, tuple)) and type(value) is tuple:
            return tuple(self.value(where, v) for v in value)
        if value is None or type(value) in (int, float, bool, str, bytes):
            return value
        raise self.fail(where, f"the default {value!r:.40} cannot be written in a schema")


def export_kernel(routes: type[RoutingEnum], *, source: str = "", name: str = "") -> KernelSchema:
    """The schema of the kernel whose routing enum is ``routes``.

    Args:
        source: how the kernel was named (for messages), e.g. ``nanomsg_kernel.contracts.calc:CalcRoute``.
        name: the kernel's name; by default the last part of its module's name.

    Raises:
        SchemaError: the kernel is incomplete or uses something a schema cannot express
            (a default factory other than ``list``/``dict``, two types with one name).
    """
    return export_with_warnings(routes, source=source, name=name)[0]


def export_with_warnings(
    routes: type[RoutingEnum], *, source: str = "", name: str = ""
) -> tuple[KernelSchema, list[str]]:
    """Like :func:`export_kernel`, and also what the schema leaves out (validators, converters)."""
    src = source or f"{getattr(routes, '__module__', '?')}:{getattr(routes, '__qualname__', routes)}"
    if not (isinstance(routes, type) and issubclass(routes, RoutingEnum)):
        raise SchemaError.one(src, str(routes), "not a RoutingEnum subclass")
    try:
        routes.validate()
    except ContractError as exc:
        raise SchemaError.one(src, routes.__name__, str(exc)) from None
    ex = _Exporter(src)
    ex.claim(routes)
    contracts = []
    for member, cls in routes.contracts().items():
        ex.claim(cls)
        contracts.append(ex.message(contract_info(cls), member.name))
    module = sys.modules.get(routes.__module__)
    module_doc = clean_doc(module.__doc__ or "") if module is not None else ""
    kernel = KernelSchema(
        name=name or routes.__module__.rsplit(".", 1)[-1],
        routing=routes.__name__,
        routes=tuple((m.name, int(m)) for m in routes),
        enums=tuple(ex.enums.values()),
        records=tuple(ex.records.values()),  # each record was added after the records it uses
        contracts=tuple(contracts),
        doc=module_doc,
        routing_doc=_doc(routes),
        source=src,
    )
    # written out and read back, so an exported schema obeys every rule a schema file does
    return load_text(to_toml(kernel), src, kernel.name), ex.warnings
