"""The compiled codec: which codec is active, and the layout tables it reads.

``nanomsg_kernel._speedups`` (C, built by ``pip install .`` where a compiler exists) is one
interpreter over a contract's *plan*: its class, and per field the tag, the slot, a type
node and the default. :func:`core_for` builds the plans of a codec's contracts (and of the
records inside them, once per class) and the ``Core`` that runs them. Nothing is generated
per contract: contracts defined at run time get the compiled codec too.

The pure-Python codec stays the reference. The compiled one takes only what it is sure of
(exact types, well-formed msgpack, every check of the pure path) and hands anything else to
the pure codec, which decides and raises its own error: both give the same frames, objects
and errors (``tests/test_compiled_codec.py`` and ``tests/fuzz_compiled.py`` check it).

``NANOMSG_KERNEL_PURE=1`` in the environment forces the pure codec
(``nanomsg_kernel.native``); :data:`ACTIVE` says which one codecs use
(``nanomsg-kernel --version`` and ``python -m nanomsg_kernel`` show it).
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from nanomsg_kernel.contract import contract_info
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.layout import UNKNOWN_SLOT, FieldInfo, plain_construction, slot_descriptor
from nanomsg_kernel.native import REASON, speedups
from nanomsg_kernel.types import TypeSpec

__all__ = ["ACTIVE", "REASON", "available", "codec_line", "core_for", "speedups"]

ACTIVE = "compiled" if speedups is not None else "pure"
"""The codec that :class:`~nanomsg_kernel.codec.Codec` uses by default: ``compiled`` or ``pure``."""


def codec_line() -> str:
    """One line saying which codec is active, and why the pure one when it is."""
    if speedups is not None:
        return "codec: compiled"
    return f"codec: pure, {REASON}"


def available() -> bool:
    """True when the compiled codec is importable and not switched off."""
    return speedups is not None


_SCALARS = frozenset({"int", "float", "bool", "str", "bytes"})


def _node(spec: TypeSpec, plans: dict[type, Any]) -> tuple[Any, ...]:
    """The description of one type node, as ``_speedups.Plan`` reads it."""
    kind = spec.kind
    if kind in _SCALARS:
        return (kind,)
    if kind == "enum" and not issubclass(spec.py, enum.Flag):
        return ("enum", spec.py, {m.value: m for m in spec.py})
    if kind == "optional":
        return ("opt", _node(spec.args[0], plans))
    if kind in ("list", "tuple") and spec.py is not tuple:
        return (kind, _node(spec.args[0], plans))
    if kind == "tuple":
        return ("ftuple", tuple(_node(a, plans) for a in spec.args))
    if kind == "dict":
        return ("dict", spec.args[0].kind == "str", _node(spec.args[1], plans))
    if kind == "record":
        return ("record", _plan(spec.py, plans))
    # datetime, uuid, flag enums: their converters (a UUID, immutable, may be shared as it is)
    return ("other", spec.encode, spec.decode, spec.py if kind == "uuid" else None)


def _default(f: FieldInfo) -> tuple[int, Any]:
    if f.default is attrs.NOTHING:
        return 0, None
    if isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
        return 2, f.default.factory
    return 1, f.default


def _builder(cls: type, fields: tuple[FieldInfo, ...]) -> Any:
    """``build(*values)``: the class called as the pure decoder calls it (validators run)."""
    positional = [i for i, f in enumerate(fields) if not f.kw_only]
    keywords = [(f.alias, i) for i, f in enumerate(fields) if f.kw_only]

    def build(*values: Any) -> Any:
        return cls(*[values[i] for i in positional], **{alias: values[i] for alias, i in keywords})

    return build


def _plan(cls: type, plans: dict[type, Any], route: int = -1, prefixes: tuple[bytes, ...] = ()) -> Any:
    plan = plans.get(cls)
    if plan is None:
        info = contract_info(cls)
        fields = info.fields
        rows = tuple((f.tag, slot_descriptor(cls, f.name), _node(f.spec, plans), *_default(f)) for f in fields)
        build = None if plain_construction(cls, fields) else _builder(cls, fields)
        plan = plans[cls] = speedups.Plan(
            cls, slot_descriptor(cls, UNKNOWN_SLOT), info.layout.seen_unknown, build, rows, route, prefixes
        )
    return plan


def core_for(codec: Any) -> Any:
    """The compiled ``Core`` of ``codec`` (a :class:`~nanomsg_kernel.codec.Codec`): its contracts' plans, with the pure codec's methods
    for whatever the compiled paths leave to them."""
    pure = type(codec)
    plans: dict[type, Any] = {}
    by_class: dict[type, Any] = {}
    by_route: dict[int, Any] = {}
    for cls, entry in codec._by_class.items():
        plan = _plan(cls, plans, entry.route, entry.prefixes)
        by_class[cls] = plan
        by_route[entry.route] = plan
    return speedups.Core(
        by_class, by_route, Kind, codec._check_above,
        pure.encode.__get__(codec), pure.decode.__get__(codec), pure.decode_request.__get__(codec),
        codec.encode_body, codec._body, pure.isolate.__get__(codec),
    )
