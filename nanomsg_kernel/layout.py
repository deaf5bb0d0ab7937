"""Per-class encode and decode functions, generated once when a class is defined.

For each contract or record the kernel writes small Python functions as source text and
compiles them (the way attrs generates ``__init__``): ``to_map(obj) -> dict`` builds the
msgpack map keyed by field tag, ``from_map(dict) -> obj`` checks every value and builds the
object. Each comes in two versions:

* the *general* one (``Layout.general_to_map`` / ``general_from_map``) goes field by field:
  defaults for missing fields, unknown tags kept for re-encoding, and the precise,
  path-located error for the first bad field. Scalars, optional scalars and enums are checked
  inline (``type(v) is int``); other types call their :class:`~nanomsg_kernel.types.TypeSpec`
  converter.
* the *fast* one (``Layout.to_map`` / ``from_map``), used first, handles the common case in
  one pass: all fields present (decode) and every inline-checkable value already of its exact
  type and range, tested in a single condition. Anything else (a missing or unknown tag, a
  value that needs converting, any error) hands the whole input to the general function, so
  both give the same object or the same error; a property test checks that they agree.
  The fast decoder reads the keys in the order the encoder writes them and tests each is the
  tag itself (``k is 1``: ``True`` and ``1.0`` equal 1 but are not tags). ``from_body``, the
  codec's version for a whole body, answers :class:`UnknownKeys` instead of falling back
  when the keys are not exactly the tags, so that the codec can keep unknown fields' bytes.

Two more come from the same table: ``isolated(obj)``, True when an object of immutable
fields passes the encoder's inline tests as it is (what a local binding may hand over
without a copy), and the general decoder's key check (integer keys only).

When a class has no validators, converters or ``__attrs_post_init__``, ``from_map`` fills the
slots directly (``object.__new__`` and the slot descriptors) instead of calling the frozen
``__init__``, which pays for ``object.__setattr__`` on every field; otherwise it calls the
class, so validators run on decode as on construction. The generated source is kept on the
layout (``Layout.source``) and shows in tracebacks.
"""

from __future__ import annotations

import enum
import linecache
import warnings
from collections.abc import Callable
from typing import Any

import attrs

from nanomsg_kernel.errors import DecodeError, EncodeError
from nanomsg_kernel.types import INT_MAX, INT_MIN, Mismatch, TypeSpec

__all__ = ["UnknownKeys", "UNKNOWN_SLOT", "FieldInfo", "Layout", "build_layout", "plain_construction", "slot_descriptor", "slot_setter"]


@attrs.frozen
class FieldInfo:
    """One field of a contract or record, as the codec sees it."""

    name: str
    tag: int
    since: int
    spec: TypeSpec
    default: Any
    """The attrs default: ``attrs.NOTHING`` when required, an ``attrs.Factory``, or a value."""
    kw_only: bool = False
    alias: str = ""
    """The keyword ``__init__`` takes the field by (attrs' alias; the name when empty)."""

    def __attrs_post_init__(self) -> None:
        if not self.alias:
            object.__setattr__(self, "alias", self.name)

    @property
    def required(self) -> bool:
        """True when the field has no default."""
        return self.default is attrs.NOTHING

UNKNOWN_SLOT = "_nk_unknown"
"""Slot holding fields a decoder did not know (tag -> :class:`~nanomsg_kernel.types.Raw`, the
exact bytes received, or the msgpack value of a map given to ``from_map``), kept for re-encode."""

_FAST = {
    "int": f"type({{v}}) is int and {INT_MIN} <= {{v}} <= {INT_MAX}",
    "float": "type({v}) is float",
    "bool": "type({v}) is bool",
    "str": "type({v}) is str",
    "bytes": "type({v}) is bytes",
}


class Layout:
    """The generated functions for one class: fast ``to_map``/``from_map`` and the general
    field-by-field versions they fall back to."""

    __slots__ = (
        "from_body", "from_map", "general_from_map", "general_to_map", "isolated", "seen_unknown", "source", "to_map",
    )

    def __init__(
        self,
        to_map: Callable[[Any], dict[int, Any]],
        from_map: Callable[[dict[Any, Any]], Any],
        source: str,
        general_to_map: Callable[[Any], dict[int, Any]] | None = None,
        general_from_map: Callable[[dict[Any, Any]], Any] | None = None,
        seen_unknown: list[bool] | None = None,
        isolated: Callable[[Any], bool] | None = None,
        from_body: Callable[..., Any] | None = None,
    ) -> None:
        self.to_map = to_map
        """Object -> map: the fast path, falling back to ``general_to_map`` on any doubt."""
        self.from_map = from_map
        """Map -> object: the fast path, falling back to ``general_from_map`` on any doubt."""
        self.source = source
        self.general_to_map = general_to_map or to_map
        """The field-by-field encoder: defaults, unknown fields, precise errors."""
        self.general_from_map = general_from_map or from_map
        """The field-by-field decoder: defaults, unknown fields, precise errors."""
        self.seen_unknown = [True] if seen_unknown is None else seen_unknown
        """``[True]`` once the decoder kept unknown fields on any object of the class (until
        then, copying an object need not look for them)."""
        self.from_body = from_body or from_map
        """``from_map`` for a contract's whole body, ``from_body(m, body)``: the same, except
        that a map whose keys are not exactly the fields' tags, in the encoder's order, gives
        :class:`UnknownKeys` (the codec then reads the body the careful way, keeping unknown
        fields' bytes). ``body``, the bytes ``m`` was read from, is not used here."""
        self.isolated = isolated or _never
        """True when an object of exactly this class can be handed to another party as it
        is: every field passes the encoder's inline test and holds an immutable value (no
        list, dict or nested object to copy). False means: send it through the codec."""


def _never(obj: Any) -> bool:
    return False


class UnknownKeys(Exception):
    """What ``Layout.from_body`` raises for a map whose keys are not exactly the fields' tags."""


def _fast_check(spec: TypeSpec, var: str) -> str | None:
    """An inline test, True when ``var`` is already right as it is (None: always convert)."""
    if spec.kind in _FAST:
        return _FAST[spec.kind].format(v=var)
    if spec.kind == "optional" and spec.args[0].kind in _FAST:
        return f"{var} is None or ({_FAST[spec.args[0].kind].format(v=var)})"
    return None


def _located(cls_name: str, field: str, m: Mismatch, error: type[Exception]) -> Exception:
    """``error("Cls.field[path]: detail")``, with ``path`` and ``detail`` kept as attributes
    so that an enclosing record can continue the path."""
    exc = error(f"{cls_name}.{field}{m.path}: {m.describe()}")
    exc.path = f".{field}{m.path}"  # type: ignore[attr-defined]
    exc.detail = m.describe()  # type: ignore[attr-defined]
    return exc


def _missing(cls_name: str, field: str, tag: int) -> DecodeError:
    return _located(cls_name, field, Mismatch("", None, "", f"missing required field (tag {tag})"), DecodeError)  # type: ignore[return-value]


def plain_construction(cls: type, fields: tuple[FieldInfo, ...]) -> bool:
    """True when building an object needs none of attrs' ``__init__`` logic."""
    if hasattr(cls, "__attrs_post_init__") or hasattr(cls, "__attrs_pre_init__"):
        return False
    fs = attrs.fields(cls)
    if any(a.validator is not None or a.converter is not None for a in fs):
        return False
    return [a.name for a in fs] == [f.name for f in fields]


def slot_descriptor(cls: type, name: str) -> Any:
    """The member descriptor of slot ``name`` of ``cls`` (or of a base class)."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    raise TypeError(f"{cls.__name__}.{name}: no slot")  # pragma: no cover - attrs makes slots


def slot_setter(cls: type, name: str) -> Any:
    """The ``__set__`` of slot ``name`` of ``cls`` (stores into a frozen object, no checks)."""
    return slot_descriptor(cls, name).__set__


def _plain_enum(spec: TypeSpec) -> bool:
    """An enum whose members are all its values (a flag enum's combinations are not)."""
    return spec.kind == "enum" and not issubclass(spec.py, enum.Flag)


def _encode_lines(i: int, f: FieldInfo, ns: dict[str, Any]) -> list[str]:
    v = f"v{i}"
    ns[f"_enc{i}"] = f.spec.encode
    out = [f"    {v} = o.{f.name}"]
    fail = [
        "        except _Mismatch as e:",
        f"            raise _located(_name, {f.name!r}, e, _EncodeError) from None",
    ]
    if _plain_enum(f.spec):
        ns[f"_type{i}"] = f.spec.py
        out += [f"    if type({v}) is _type{i}:", f"        {v} = {v}._value_", "    else:"]
    else:
        fast = _fast_check(f.spec, v)
        out.append(f"    if not ({fast}):" if fast else "    if True:")
    return [*out, "        try:", f"            {v} = _enc{i}({v})", *fail]


def _decode_lines(i: int, f: FieldInfo, ns: dict[str, Any]) -> list[str]:
    v = f"v{i}"
    ns[f"_dec{i}"] = f.spec.decode
    out = [f"    {v} = m.get({f.tag}, _MISSING)", f"    if {v} is _MISSING:"]
    if f.default is attrs.NOTHING:
        out.append(f"        raise _missing(_name, {f.name!r}, {f.tag})")
    elif isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
        if f.default.takes_self:
            raise TypeError(f"{f.name}: Factory(takes_self=True) is not supported")
        ns[f"_factory{i}"] = f.default.factory
        out.append(f"        {v} = _factory{i}()")
    else:
        ns[f"_default{i}"] = f.default
        out.append(f"        {v} = _default{i}")
    out += ["    else:", "        n += 1"]
    if f.spec.kind == "enum":
        by_value = {m.value: m for m in f.spec.py}
        ns[f"_byvalue{i}"] = by_value
        ns[f"_vtype{i}"] = type(next(iter(by_value)))
        out += [
            f"        if type({v}) is _vtype{i} and {v} in _byvalue{i}:",
            f"            {v} = _byvalue{i}[{v}]",
            "        else:",
        ]
    else:
        fast = _fast_check(f.spec, v)
        out.append(f"        if not ({fast}):" if fast else "        if True:")
    return [
        *out,
        "            try:",
        f"                {v} = _dec{i}({v})",
        "            except _Mismatch as e:",
        f"                raise _located(_name, {f.name!r}, e, _DecodeError) from None",
    ]


def _fast_encode(i: int, f: FieldInfo) -> tuple[str, str]:
    """(test, value) for the fast encoder: ``test`` is True when ``v{i}`` is right as it is
    (empty: convert it with its spec, after the tests); ``value`` is what goes in the map."""
    v = f"v{i}"
    if _plain_enum(f.spec):
        return f"type({v}) is _type{i}", f"{v}._value_"
    fast = _fast_check(f.spec, v)
    return (f"({fast})" if fast else ""), v


_IMMUTABLE = {"int", "float", "bool", "bytes", "uuid"}


def _isolated_test(i: int, spec: TypeSpec, ns: dict[str, Any]) -> str | None:
    """An inline test, True when field ``v{i}`` passes the encoder's rules as it is and holds
    an immutable value that another party may share; ``None``: the field never does (a
    container, a record, a datetime)."""
    v = f"v{i}"
    if spec.kind == "optional":
        inner = _isolated_test(i, spec.args[0], ns)
        return None if inner is None else f"({v} is None or {inner})"
    if _plain_enum(spec):
        ns[f"_type{i}"] = spec.py
        return f"type({v}) is _type{i}"
    if spec.kind == "uuid":
        ns["_UUID"] = spec.py
        return f"type({v}) is _UUID"
    if spec.kind == "str":  # msgpack refuses lone surrogates, which only non-ASCII text holds
        return f"(type({v}) is str and {v}.isascii())"
    if spec.kind in _IMMUTABLE:
        return f"({_FAST[spec.kind].format(v=v)})"
    return None


def _fast_decode(i: int, f: FieldInfo) -> tuple[str, str]:
    """(test, value) for the fast decoder, as :func:`_fast_encode`."""
    v = f"v{i}"
    if f.spec.kind == "enum":
        return f"type({v}) is _vtype{i} and {v} in _byvalue{i}", f"_byvalue{i}[{v}]"
    fast = _fast_check(f.spec, v)
    return (f"({fast})" if fast else ""), v


def _fast_lines(
    head: list[str], tests: list[str], converted: list[tuple[int, FieldInfo, str]], fallback: str
) -> list[str]:
    """The body shared by both fast functions: inline tests (else the general function), then
    the converters of the fields without an inline test (their errors are already precise)."""
    out = [*head, f"    if not ({' and '.join(tests) or 'True'}):", f"        return {fallback}"]
    for i, f, error in converted:
        out += [
            "    try:",
            f"        v{i} = _{'enc' if error == '_EncodeError' else 'dec'}{i}(v{i})",
            "    except _Mismatch as e:",
            f"        raise _located(_name, {f.name!r}, e, {error}) from None",
        ]
    return out


def build_layout(cls: type, fields: tuple[FieldInfo, ...]) -> Layout:
    """Generate and compile ``to_map`` and ``from_map`` for ``cls``.

    Two versions of each are generated. The *general* ones go field by field: defaults for
    missing fields, unknown tags kept, the precise error for the first bad field. The fast
    ones, used first, handle the common case in one pass: every field present (decode) and
    every scalar, optional scalar and enum already of its exact type and range, tested
    inline; on any doubt they hand the whole map or object to the general function, so both
    always give the same result or the same error.
    """
    name = cls.__name__
    seen_unknown = [False]
    ns: dict[str, Any] = {
        "_cls": cls,
        "_Mismatch": Mismatch,
        "_located": _located,
        "_missing": _missing,
        "_EncodeError": EncodeError,
        "_DecodeError": DecodeError,
        "_MISSING": _MISSING,
        "_name": name,
        "_getattr": getattr,
        "_SLOT": UNKNOWN_SLOT,
        "_seen_unknown": seen_unknown,
        "_new": object.__new__,
        "_set_unknown": slot_setter(cls, UNKNOWN_SLOT),
        "_UnknownKeys": UnknownKeys,
    }

    known = frozenset(f.tag for f in fields)

    def check_keys(m: dict[Any, Any]) -> None:
        for k in m:
            if type(k) is not int:
                raise DecodeError(f"{name}: map key {k!r:.40} is not a field tag")

    def keep_unknown(obj: Any, m: dict[Any, Any]) -> None:
        extra = {}
        for k, x in m.items():
            if k in known:
                continue
            if not 0 <= k <= 0xFFFF_FFFF:
                raise DecodeError(f"{name}: map key {k!r:.40} is not a field tag")
            extra[k] = x
        seen_unknown[0] = True
        ns["_set_unknown"](obj, extra)

    ns["_check_keys"] = check_keys
    ns["_keep_unknown"] = keep_unknown
    enc = ["def _general_to_map(o):"]
    dec = ["def _general_from_map(m):", "    _check_keys(m)", "    n = 0"]
    for i, f in enumerate(fields):
        enc += _encode_lines(i, f, ns)
        dec += _decode_lines(i, f, ns)
    pairs = ", ".join(f"{f.tag}: v{i}" for i, f in enumerate(fields))
    unknown = [
        "    if _seen_unknown[0]:",
        "        u = _getattr(o, _SLOT, None)",
        "        if u:",
        "            for k, x in u.items():",
        "                d.setdefault(k, x)",
        "    return d",
    ]
    enc += [f"    d = {{{pairs}}}", *unknown]
    if plain_construction(cls, fields):
        build = ["    obj = _new(_cls)"]
        for i, f in enumerate(fields):
            ns[f"_set{i}"] = slot_setter(cls, f.name)
            build.append(f"    _set{i}(obj, v{i})")
    else:
        args = [f"v{i}" for i, f in enumerate(fields) if not f.kw_only]
        args += [f"{f.alias}=v{i}" for i, f in enumerate(fields) if f.kw_only]
        build = [f"    obj = _cls({', '.join(args)})"]
    dec += [*build, "    if len(m) != n:", "        _keep_unknown(obj, m)", "    return obj"]

    # The fast functions.
    enc_tests, enc_values, enc_conv = [], [], []
    dec_tests, dec_values, dec_conv = [], [], []
    for i, f in enumerate(fields):
        test, value = _fast_encode(i, f)
        enc_values.append(f"{f.tag}: {value}")
        if test:
            enc_tests.append(test)
        else:
            enc_conv.append((i, f, "_EncodeError"))
        test, value = _fast_decode(i, f)
        if value != f"v{i}":
            dec_values.append(f"    v{i} = {value}")
        if test:
            dec_tests.append(test)
        else:
            dec_conv.append((i, f, "_DecodeError"))
    # msgpack reads no int below -2**63 (its int64 floor), so a body's ints need only the
    # upper bound tested (a uint64 above 2**63-1); a map given to from_map needs both.
    body_tests = [t.replace(f"{INT_MIN} <= ", "") for t in dec_tests]
    fast_enc = _fast_lines(
        ["def to_map(o):", *(f"    v{i} = o.{f.name}" for i, f in enumerate(fields))],
        enc_tests, enc_conv, "_general_to_map(o)",
    )
    fast_enc += [f"    d = {{{', '.join(enc_values)}}}", *unknown]
    # The keys, read in the order the encoder writes them, must be the tags themselves: an
    # int key is the cached small int object (msgpack makes ints as Python does), so an
    # identity test refuses True and 1.0, which a dict lookup would take for tag 1.
    for i, f in enumerate(fields):
        ns[f"_t{i}"] = f.tag
    keys = [f"k{i} is {f.tag}" if 0 <= f.tag <= 256 else f"(type(k{i}) is int and k{i} == _t{i})"
            for i, f in enumerate(fields)]
    unpack = ", ".join(f"k{i}" for i in range(len(fields))) + ("," if len(fields) == 1 else "")
    fast_dec: list[str] = []
    for fn, other_keys in (("from_map", "return _general_from_map(m)"), ("from_body", "raise _UnknownKeys")):
        head = [f"def {fn}(m):" if fn == "from_map" else "def from_body(m, body=None):"]
        if fields:
            head += [
                "    try:",
                f"        {unpack} = m",
                "    except ValueError:",
                f"        {other_keys}",
                f"    if not ({' and '.join(keys)}):",
                f"        {other_keys}",
                *(f"    v{i} = m[{f.tag}]" for i, f in enumerate(fields)),
            ]
        else:
            head += ["    if m:", f"        {other_keys}"]
        if fast_dec:
            fast_dec.append("\n")
        chosen = body_tests if fn == "from_body" else dec_tests
        fast_dec += [*_fast_lines(head, chosen, dec_conv, "_general_from_map(m)"), *dec_values, *build,
                     "    return obj"]
    tests = [_isolated_test(i, f.spec, ns) for i, f in enumerate(fields)]
    isolated = ["def isolated(o):", "    if type(o) is not _cls:", "        return False"]
    if None in tests:
        isolated = ["def isolated(o):", "    return False"]
    else:
        isolated += [*(f"    v{i} = o.{f.name}" for i, f in enumerate(fields)),
                     f"    return {' and '.join(t for t in tests if t) or 'True'}"]
    source = "\n\n\n".join("\n".join(lines) for lines in (enc, dec, fast_enc, fast_dec, isolated)) + "\n"
    filename = f"<nanomsg_kernel layout {cls.__module__}.{cls.__qualname__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    with warnings.catch_warnings():  # "is" with an int literal: meant, see the keys above
        warnings.simplefilter("ignore", SyntaxWarning)
        code = compile(source, filename, "exec")
    exec(code, ns)  # noqa: S102 - our own generated source
    return Layout(
        ns["to_map"], ns["from_map"], source, ns["_general_to_map"], ns["_general_from_map"], seen_unknown,
        ns["isolated"], ns["from_body"],
    )


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


_MISSING = _Missing()
