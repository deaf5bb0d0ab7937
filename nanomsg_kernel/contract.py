"""Contracts and records: immutable attrs classes whose fields carry stable tags.

A *contract* is a message type bound to one member of a kernel's routing enum::

    @contract(CalcRoute.CALC_WORK, version=2)
    class CalcWork:
        a: int
        b: int
        precision: int = field(default=0, since=2)

A *record* is a nested, non-routed type made the same way (``@record``). Both are frozen,
slotted attrs classes: equality, ``repr``, ``attrs.evolve`` and attrs validators work as
usual, and each class has an ``evolve(**changes)`` method.

Tags: each field's tag is its stable id on the wire. By default the first field gets tag 1
and every next field the previous field's tag plus one; ``field(tag=N)`` sets one
explicitly. Tags listed in ``reserved=[...]`` (retired fields) can never be used again.
"""

from __future__ import annotations

import enum
import keyword
import linecache
import sys
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Generic, TypeVar, dataclass_transform, overload

import attrs
import msgpack

from nanomsg_kernel.errors import ContractError
from nanomsg_kernel.frame import MAX_U16 as MAX_ROUTE
from nanomsg_kernel.layout import (
    UNKNOWN_SLOT,
    FieldInfo,
    Layout,
    build_layout,
    plain_construction,
    slot_descriptor,
    slot_setter,
)
from nanomsg_kernel.native import speedups
from nanomsg_kernel.types import Raw, resolve

__all__ = [
    "METADATA_KEY",
    "ContractInfo",
    "FieldInfo",
    "Message",
    "Request",
    "contract",
    "contract_info",
    "evolve",
    "field",
    "is_contract",
    "record",
    "unknown_fields",
]

T = TypeVar("T")
M = TypeVar("M")
R = TypeVar("R")

METADATA_KEY = "nanomsg_kernel"
"""Key under which :func:`field` stores its :class:`FieldMeta` in attrs field metadata."""

MAX_TAG = 2**31 - 1
_RESERVED_NAMES = frozenset({"route", "evolve"})


@attrs.frozen
class FieldMeta:
    """What :func:`field` records in attrs metadata."""

    tag: int | None = None
    since: int | None = None


@attrs.frozen
class ContractInfo:
    """Everything the kernel knows about a contract or record class."""

    cls: type
    route: enum.IntEnum | None
    """The routing enum member, or ``None`` for a record."""
    version: int
    fields: tuple[FieldInfo, ...]
    reserved: frozenset[int]
    layout: Layout

    @property
    def to_map(self) -> Callable[[Any], dict[int, Any]]:
        """Object -> msgpack map keyed by tag (checked)."""
        return self.layout.to_map

    @property
    def from_map(self) -> Callable[[dict[Any, Any]], Any]:
        """msgpack map keyed by tag -> object (checked)."""
        return self.layout.from_map

    def field_by_tag(self, tag: int) -> FieldInfo | None:
        """The field with ``tag``, or ``None``."""
        for f in self.fields:
            if f.tag == tag:
                return f
        return None


class Message:
    """Base that ``@contract`` and ``@record`` add to every class they make.

    Holds the slot for fields an older decoder did not know (kept for re-encoding) and the
    ``evolve`` method. Classes may also subclass it explicitly, which tells type checkers
    about ``evolve`` and ``route``.
    """

    __slots__ = (UNKNOWN_SLOT,)
    __nk_info__: ClassVar[ContractInfo]
    route: ClassVar[Any]

    def evolve(self: M, **changes: Any) -> M:
        """Return a copy with ``changes`` applied (validators run; unknown fields are kept).

        Every ``@contract``/``@record`` class replaces this with its own generated version
        (see :func:`evolve`)."""
        return _attrs_evolve(self, changes)


class Request(Message, Generic[R]):
    """Base of a contract that is answered by a contract of another type, ``R``.

    For type checkers only (nothing changes at run time)::

        @contract(ShopRoute.RESERVE)
        class Reserve(Request[Reserved]):      # answered by a Reserved
            sku: str

    ``await client.call(Reserve(...))`` is then a ``Reserved`` to a checker, and so through
    a binding. A contract that does not derive from ``Request`` is taken to be answered by
    a copy of itself (``call(msg: M) -> M``): the common case of a handler that returns
    ``evolve(msg, ...)``. ``R`` may be a union for a contract with several kinds of reply.
    Like :class:`Message`, it also shows ``evolve`` and ``route`` to checkers.
    """

    __slots__ = ()


def evolve(msg: M, **changes: Any) -> M:
    """Typed ``attrs.evolve`` for contracts and records that also keeps unknown fields.

    The same as ``attrs.evolve`` (validators and converters run, an unknown keyword is a
    ``TypeError``) through a function generated once per class, which builds the copy
    without looking the class's fields up on each call. Where the compiled extension is
    active (``nanomsg_kernel.native``), this function and the ``evolve`` of each class
    that only fills its slots are its C versions, which give the same copies and errors.
    """
    fast = getattr(type(msg), "__nk_evolve__", None)
    if fast is None:
        return _attrs_evolve(msg, changes)
    new: M = fast(msg, **changes)
    return new


_pure_evolve = evolve
"""The pure-Python :func:`evolve`: the reference, and what the compiled one leaves."""
if speedups is not None:  # the same function in C: one call, no keyword dict in between
    speedups.use_evolve(_pure_evolve)
    evolve = speedups.evolve


def _attrs_evolve(msg: M, changes: dict[str, Any]) -> M:
    """The general path: ``attrs.evolve``, then the unknown fields copied over."""
    new = attrs.evolve(msg, **changes)  # type: ignore[misc]
    extra = getattr(msg, UNKNOWN_SLOT, None)
    if extra:
        object.__setattr__(new, UNKNOWN_SLOT, extra)
    return new


class _Unchanged:
    """Default of each keyword of a generated ``evolve``: the field keeps its value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED"


_UNCHANGED = _Unchanged()


def _build_evolve(cls: type, plain: bool, seen_unknown: list[bool]) -> Callable[..., Any] | None:
    """Generate ``evolve(self, /, *, <field>=UNCHANGED, ...)`` for the attrs class ``cls``.

    The source is made from the class's own field names and aliases only (each a checked
    identifier), when the class is defined. ``plain`` (no validator, converter, pre/post
    init or own ``__init__``) sets the slots directly, as ``__init__`` would; otherwise the
    copy is made by calling the class with every field by keyword, as ``attrs.evolve`` does. Unknown
    fields are copied when ``seen_unknown[0]`` says objects of the class may carry them.
    Returns ``None`` when a name does not allow generating (the general path is used).
    """
    fs = attrs.fields(cls)
    aliases = [a.alias or a.name for a in fs]
    if any(
        not n.isidentifier() or keyword.iskeyword(n) or n.startswith("_nk") for n in (*aliases, *(a.name for a in fs))
    ):
        return None
    ns: dict[str, Any] = {
        "_nk_cls": cls,
        "_nk_U": _UNCHANGED,
        "_nk_general": _attrs_evolve,
        "_nk_new": object.__new__,
        "_nk_getattr": getattr,
        "_nk_SLOT": UNKNOWN_SLOT,
        "_nk_seen": seen_unknown,
        "_nk_set_unknown": slot_setter(cls, UNKNOWN_SLOT),
    }
    values = [f"_nk_self.{a.name} if {al} is _nk_U else {al}" for a, al in zip(fs, aliases, strict=True)]
    params = ", ".join(f"{al}=_nk_U" for al in aliases)
    changed = ", ".join(f"({al!r}, {al})" for al in aliases)
    lines = [
        f"def evolve(_nk_self, /{', *, ' + params if params else ''}):",
        "    if type(_nk_self) is not _nk_cls:",
        f"        return _nk_general(_nk_self, {{k: v for k, v in ({changed}{',' if len(aliases) == 1 else ''}) "
        "if v is not _nk_U})",
    ]
    if plain:
        lines.append("    _nk_obj = _nk_new(_nk_cls)")
        for i, (a, value) in enumerate(zip(fs, values, strict=True)):
            ns[f"_nk_set{i}"] = slot_setter(cls, a.name)
            lines.append(f"    _nk_set{i}(_nk_obj, {value})")
    else:
        args = ", ".join(f"{al}=({v})" for al, v in zip(aliases, values, strict=True))
        lines.append(f"    _nk_obj = _nk_cls({args})")
    lines += [
        "    if _nk_seen[0]:",
        "        _nk_extra = _nk_getattr(_nk_self, _nk_SLOT, None)",
        "        if _nk_extra:",
        "            _nk_set_unknown(_nk_obj, _nk_extra)",
        "    return _nk_obj",
    ]
    source = "\n".join(lines) + "\n"
    filename = f"<nanomsg_kernel evolve {cls.__module__}.{cls.__qualname__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), ns)  # noqa: S102 - generated from the class's field names
    fn: Callable[..., Any] = ns["evolve"]
    fn.__qualname__ = f"{cls.__qualname__}.evolve"
    fn.__doc__ = Message.evolve.__doc__
    return fn


def unknown_fields(msg: Any, *, raw: bool = False) -> Mapping[int, Any]:
    """Fields decoded from a newer version of the contract that this class does not declare.

    They are kept as the exact bytes received and written back unchanged on re-encode.
    Returns a mapping of tag to each one's msgpack value as msgpack reads it (timestamps as
    ``datetime``), or with ``raw=True`` to its msgpack bytes.
    """
    out = {}
    for tag, value in (getattr(msg, UNKNOWN_SLOT, None) or {}).items():
        if type(value) is Raw:
            value = value.data if raw else msgpack.unpackb(value.data, strict_map_key=False, timestamp=3)
        elif raw:
            value = msgpack.packb(value, use_bin_type=True, datetime=True)
        out[tag] = value
    return out


def is_contract(obj: Any) -> bool:
    """True when ``obj`` (a class or instance) was made by ``@contract`` or ``@record``."""
    cls = obj if isinstance(obj, type) else type(obj)
    return isinstance(cls.__dict__.get("__nk_info__"), ContractInfo)


def contract_info(cls: type | Any) -> ContractInfo:
    """The :class:`ContractInfo` of a contract or record class (or instance)."""
    cls = cls if isinstance(cls, type) else type(cls)
    info = cls.__dict__.get("__nk_info__")
    if not isinstance(info, ContractInfo):
        raise ContractError(f"{cls.__name__} is not a contract or record")
    return info


def field(
    *,
    default: Any = attrs.NOTHING,
    factory: Callable[[], Any] | None = None,
    tag: int | None = None,
    since: int | None = None,
    validator: Any = None,
    converter: Any = None,
    kw_only: bool = False,
    alias: str | None = None,
    repr: bool = True,
    metadata: Mapping[Any, Any] | None = None,
) -> Any:
    """Declare a field with a stable ``tag`` and the contract ``since`` version it appeared in.

    Other arguments are passed to :func:`attrs.field`.
    """
    if tag is not None and (type(tag) is not int or not 1 <= tag <= MAX_TAG):
        raise ContractError(f"field tag must be an int from 1 to {MAX_TAG}, got {tag!r}")
    if since is not None and (type(since) is not int or since < 1):
        raise ContractError(f"field since= must be a version >= 1, got {since!r}")
    meta = dict(metadata or {})
    meta[METADATA_KEY] = FieldMeta(tag, since)
    return attrs.field(
        default=default,
        factory=factory,
        validator=validator,
        converter=converter,
        kw_only=kw_only,
        alias=alias,
        repr=repr,
        metadata=meta,
    )


def _rebase(cls: type) -> type:
    """Return a copy of ``cls`` that also derives from :class:`Message`."""
    if "__slots__" in cls.__dict__:
        raise ContractError(f"{cls.__name__}: do not declare __slots__; the kernel makes the class slotted")
    if attrs.has(cls):
        raise ContractError(f"{cls.__name__} is already an attrs class; use the kernel decorator alone")
    if issubclass(cls, Message):
        return cls
    bases = (*(b for b in cls.__bases__ if b is not object), Message)
    ns = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    made: type = type(cls.__name__, bases, ns)
    return made


def _make(
    cls: type, route: enum.IntEnum | None, version: int, reserved: Iterable[int], localns: dict[str, Any]
) -> type:
    name = cls.__name__
    if type(version) is not int or not 1 <= version <= 0xFFFF:
        raise ContractError(f"{name}: version must be an int from 1 to 65535, got {version!r}")
    reserved_set = frozenset(reserved)
    for r in reserved_set:
        if type(r) is not int or not 1 <= r <= MAX_TAG:
            raise ContractError(f"{name}: reserved tag {r!r} is not an int from 1 to {MAX_TAG}")
    made = attrs.define(_rebase(cls), frozen=True, slots=True)
    try:
        hints = typing.get_type_hints(made, localns=localns, include_extras=True)
    except Exception as exc:
        raise ContractError(f"{name}: cannot resolve field annotations: {exc}") from exc
    infos: list[FieldInfo] = []
    seen: dict[int, str] = {}
    next_tag = 1
    for a in attrs.fields(made):
        where = f"{name}.{a.name}"
        if a.name in _RESERVED_NAMES or a.name.startswith("_nk"):
            raise ContractError(f"{where}: the field name {a.name!r} is reserved by the kernel")
        if not a.init:
            raise ContractError(f"{where}: init=False fields cannot travel on the wire")
        meta = a.metadata.get(METADATA_KEY) or FieldMeta()
        tag = meta.tag if meta.tag is not None else next_tag
        since = meta.since if meta.since is not None else 1
        if tag in reserved_set:
            hint = "" if meta.tag is not None else " (by declaration order; give it field(tag=N))"
            raise ContractError(f"{where}: tag {tag} is reserved{hint}")
        if tag in seen:
            raise ContractError(f"{where}: tag {tag} is already used by {name}.{seen[tag]}")
        if since > version:
            raise ContractError(f"{where}: since={since} is newer than the class version {version}")
        try:
            spec = resolve(hints[a.name])
        except TypeError as exc:
            raise ContractError(f"{where}: {exc}") from None
        seen[tag] = a.name
        next_tag = tag + 1
        infos.append(FieldInfo(a.name, tag, since, spec, a.default, a.kw_only, a.alias or a.name))
    fields = tuple(infos)
    info = ContractInfo(made, route, version, fields, reserved_set, build_layout(made, fields))
    made.__nk_info__ = info  # type: ignore[attr-defined]
    plain = "__init__" not in cls.__dict__ and plain_construction(made, fields)
    fast = _build_evolve(made, plain, info.layout.seen_unknown)
    if fast is not None:
        if plain and speedups is not None:  # the same copy in C; the generated one decides the rest
            fast = speedups.Evolver(
                made, tuple(f.alias for f in fields), tuple(slot_descriptor(made, f.name) for f in fields),
                slot_descriptor(made, UNKNOWN_SLOT), info.layout.seen_unknown, fast,
            )
        made.__nk_evolve__ = made.evolve = fast  # type: ignore[attr-defined]
    return made



_ROUTED: dict[type[enum.IntEnum], dict[enum.IntEnum, type]] = {}
"""Each routing enum's members mapped to their contract classes (filled by :func:`contract`)."""


def is_route(value: object) -> bool:
    """True for a member of a routing enum (a :class:`~nanomsg_kernel.routing.RoutingEnum`)."""
    return isinstance(value, enum.IntEnum) and getattr(type(value), "__routing_enum__", False) is True


FIRST_BUILTIN_ROUTE = 0xFF00
"""Route ids from here to 65535 are reserved for the built-in contracts every service answers
(:mod:`nanomsg_kernel.builtin`): a user's kernel may not use them."""


def _check_route_id(kernel: type[enum.IntEnum], member: enum.IntEnum) -> None:
    if not 0 <= member.value <= MAX_ROUTE:
        raise ContractError(f"{kernel.__name__}.{member.name} = {member.value}: route ids are 0 to {MAX_ROUTE}")
    if member.value >= FIRST_BUILTIN_ROUTE and getattr(kernel, "__builtin_kernel__", False) is not True:
        raise ContractError(
            f"{kernel.__name__}.{member.name} = {member.value}: route ids {FIRST_BUILTIN_ROUTE} to {MAX_ROUTE} "
            f"are reserved for the built-in contracts (health, describe); use 0 to {FIRST_BUILTIN_ROUTE - 1}"
        )


def register_contract(route: enum.IntEnum, cls: type) -> None:
    """Bind ``cls`` to ``route``; a second contract for the same member is an error."""
    kernel = type(route)
    _check_route_id(kernel, route)
    table = _ROUTED.setdefault(kernel, {})
    if route in table:
        raise ContractError(
            f"{kernel.__name__}.{route.name} already has contract {table[route].__name__}; "
            f"cannot also give it {cls.__name__}"
        )
    table[route] = cls


def kernel_contracts(kernel: type[enum.IntEnum]) -> dict[enum.IntEnum, type]:
    """The members of ``kernel`` that have a contract, mapped to it (in member order)."""
    table = _ROUTED.get(kernel, {})
    return {m: table[m] for m in kernel if m in table}


def contract_of(route: enum.IntEnum) -> type:
    """The contract class bound to ``route``; :class:`ContractError` when there is none."""
    try:
        return _ROUTED[type(route)][route]
    except KeyError:
        raise ContractError(f"{type(route).__name__}.{route.name} has no contract") from None


def validate_kernel(kernel: type[enum.IntEnum]) -> None:
    """Check every member of ``kernel`` has a contract and fits the wire."""
    if not list(kernel):
        raise ContractError(f"{kernel.__name__} has no members")
    table = _ROUTED.get(kernel, {})
    missing = [m.name for m in kernel if m not in table]
    if missing:
        raise ContractError(f"{kernel.__name__}: no contract for {', '.join(missing)}")
    for m in kernel:
        _check_route_id(kernel, m)


def _caller_locals(depth: int) -> dict[str, Any]:
    """Names visible where the decorator was applied, to resolve string annotations."""
    frame = sys._getframe(depth + 1)
    return {**frame.f_globals, **frame.f_locals}


@dataclass_transform(frozen_default=True, field_specifiers=(field, attrs.field))
def contract(
    route: enum.IntEnum, /, *, version: int = 1, reserved: Iterable[int] = ()
) -> Callable[[type[T]], type[T]]:
    """Make a class the contract of ``route`` (a member of a :class:`RoutingEnum`).

    Args:
        route: the routing enum member this contract travels under.
        version: the contract's version (1 to 65535); raise it when adding fields.
        reserved: tags of retired fields, which no field may use again.

    Raises:
        ContractError: a field type is unsupported, a tag is duplicated or reserved, or the
            route already has a contract.
    """
    if not is_route(route):
        raise ContractError(f"@contract needs a RoutingEnum member, got {route!r}")
    reserved = tuple(reserved)

    def wrap(cls: type[T]) -> type[T]:
        made = _make(cls, route, version, reserved, _caller_locals(1))
        register_contract(route, made)
        made.route = route  # type: ignore[attr-defined]
        return made

    return wrap


@overload
def record(cls: type[T], /) -> type[T]: ...
@overload
def record(*, version: int = 1, reserved: Iterable[int] = ()) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field, attrs.field))
def record(
    cls: type[T] | None = None, /, *, version: int = 1, reserved: Iterable[int] = ()
) -> type[T] | Callable[[type[T]], type[T]]:
    """Make a nested, non-routed type usable as a field of contracts (``@record`` or
    ``@record(reserved=[...])``). Same rules for tags and types as :func:`contract`."""
    reserved = tuple(reserved)
    if cls is not None:
        return _make(cls, None, version, reserved, _caller_locals(1))

    def wrap(c: type[T]) -> type[T]:
        return _make(c, None, version, reserved, _caller_locals(1))

    return wrap
