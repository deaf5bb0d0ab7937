"""Property testing for kernels, with hypothesis (``pip install 'nanomsg-kernel[testing]'``).

* :func:`strategy_for` — a strategy that builds valid instances of a contract or record,
  honouring every field type and nesting.
* :func:`assert_roundtrip` — checks that every contract of a kernel survives
  ``decode(encode(x)) == x``.
* :func:`frames` / :func:`mutated_frames` — strategies of valid and corrupted frames, for
  checking that a decoder or server only ever raises the library's own errors.
"""

from __future__ import annotations

import datetime
import enum
import functools
import operator
from typing import TYPE_CHECKING, Any

import msgpack

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ModuleNotFoundError as exc:  # the testing extra is not installed
    if exc.name != "hypothesis":
        raise
    raise ModuleNotFoundError(
        "nanomsg_kernel.testing needs hypothesis, which the package does not install by itself: "
        "pip install 'nanomsg-kernel[testing]'",
        name="hypothesis",
    ) from exc

from nanomsg_kernel.contract import contract_info
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.types import INT_MAX, INT_MIN, Raw, TypeSpec

if TYPE_CHECKING:
    from nanomsg_kernel.routing import RoutingEnum

__all__ = ["assert_roundtrip", "frames", "mutated_frames", "strategy_for", "strategy_for_spec"]

_UTC_TIMES = st.datetimes(
    min_value=datetime.datetime(1970, 1, 1),
    max_value=datetime.datetime(2400, 1, 1),
    timezones=st.just(datetime.UTC),
)


def strategy_for_spec(spec: TypeSpec, max_size: int = 5) -> st.SearchStrategy[Any]:
    """A strategy for values of a resolved field type."""
    k = spec.kind
    if k == "int":
        return st.integers(INT_MIN, INT_MAX)
    if k == "float":
        return st.floats(allow_nan=False)
    if k == "bool":
        return st.booleans()
    if k == "str":
        return st.text(max_size=40)
    if k == "bytes":
        return st.binary(max_size=64)
    if k == "datetime":
        return _UTC_TIMES
    if k == "uuid":
        return st.uuids()
    if k == "enum":
        members: list[enum.Enum] = list(spec.py)
        if issubclass(spec.py, enum.Flag):  # any combination of the members
            flag = spec.py
            return st.lists(st.sampled_from(members), unique=True).map(
                lambda chosen: functools.reduce(operator.or_, chosen, flag(0))
            )
        return st.sampled_from(members)
    if k == "record":
        return st.deferred(lambda: strategy_for(spec.py, max_size=max_size))
    if k == "optional":
        return st.none() | strategy_for_spec(spec.args[0], max_size)
    if k == "list":
        return st.lists(strategy_for_spec(spec.args[0], max_size), max_size=max_size)
    if k == "tuple":
        if spec.py is Ellipsis:
            return st.lists(strategy_for_spec(spec.args[0], max_size), max_size=max_size).map(tuple)
        return st.tuples(*(strategy_for_spec(a, max_size) for a in spec.args))
    if k == "dict":
        return st.dictionaries(
            strategy_for_spec(spec.args[0], max_size), strategy_for_spec(spec.args[1], max_size), max_size=max_size
        )
    raise TypeError(f"no strategy for {spec.describe()}")  # pragma: no cover - resolve() refuses it first


def strategy_for(cls: type, max_size: int = 5) -> st.SearchStrategy[Any]:
    """A strategy building instances of the contract or record ``cls``.

    Every field is drawn from its declared type (NaN is left out of floats so that
    equality holds); ``max_size`` bounds lists, tuples and dicts.
    """
    info = contract_info(cls)
    fields = {f.alias: strategy_for_spec(f.spec, max_size) for f in info.fields}
    return st.builds(cls, **fields)


def assert_roundtrip(routes: type[RoutingEnum], *, max_examples: int = 100) -> None:
    """Check with hypothesis that every contract of ``routes`` survives encode → decode.

    Each contract is encoded as a frame with a random kind, correlation id and timeout,
    decoded, and compared for equality; the header fields must also come back unchanged.
    Raises ``AssertionError`` (with hypothesis's minimal example) on the first failure.
    """
    codec = routes.codec()
    kinds = st.sampled_from([Kind.REQUEST, Kind.RESPONSE, Kind.EVENT])
    for cls in routes.contracts().values():

        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck))
        @given(msg=strategy_for(cls), kind=kinds, cid=st.integers(0, 2**64 - 1), tmo=st.integers(0, 2**32 - 1))
        def check(msg: Any, kind: Kind, cid: int, tmo: int) -> None:
            frame = codec.encode(msg, kind=kind, correlation_id=cid, timeout_ms=tmo)
            decoded = codec.decode_frame(frame)
            assert decoded.message == msg, f"{msg!r} decoded as {decoded.message!r}"
            assert (decoded.header.kind, decoded.header.correlation_id, decoded.header.timeout_ms) == (
                kind, cid, tmo,
            )
            assert codec.encode(decoded.message, kind=kind, correlation_id=cid, timeout_ms=tmo) == frame

        check()


def frames(routes: type[RoutingEnum]) -> st.SearchStrategy[bytes]:
    """Valid request frames of every contract of ``routes``."""
    codec = routes.codec()
    per_contract = [strategy_for(c) for c in routes.contracts().values()]
    return st.one_of(per_contract).flatmap(
        lambda msg: st.integers(0, 2**64 - 1).map(lambda cid: codec.encode(msg, correlation_id=cid))
    )


@st.composite
def _mutate(draw: st.DrawFn, frame: bytes) -> bytes:
    data = bytearray(frame)
    how = draw(st.sampled_from(["flip", "truncate", "extend", "splice", "length"]))
    if how == "flip" and data:
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    elif how == "truncate":
        del data[draw(st.integers(0, len(data))):]
    elif how == "extend":
        data += draw(st.binary(min_size=1, max_size=64))
    elif how == "splice" and data:
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(max_size=32))
    elif how == "length" and len(data) >= 26:
        data[22:26] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
    return bytes(data)


def mutated_frames(routes: type[RoutingEnum]) -> st.SearchStrategy[bytes]:
    """Valid frames of ``routes`` with random damage (bit flips, truncation, splices, lengths)."""
    return frames(routes).flatmap(_mutate)


# -- across versions of a kernel ---------------------------------------------------------

__all__ += ["assert_compatible", "assert_evolution"]

_DIRECTIONS = {"full": ("backward", "forward"), "backward": ("backward",), "forward": ("forward",)}


def _read_raw(value: Any) -> Any:
    """The msgpack value of a field kept as its bytes (any other value as it is)."""
    return msgpack.unpackb(value.data, strict_map_key=False, timestamp=3) if type(value) is Raw else value


def _wire_same(written: Any, reread: Any) -> bool:
    """True when ``reread`` (a reader's re-encoding) carries ``written`` unchanged.

    Maps may gain keys (fields the reader adds with their defaults); an int may come back
    as the float the reader made of it.
    """
    if type(written) is int and type(reread) is float:
        return float(written) == reread
    if type(written) is Raw or type(reread) is Raw:  # a field kept as its bytes
        return _wire_same(_read_raw(written), _read_raw(reread))
    if type(written) is list and type(reread) is list:
        return len(written) == len(reread) and all(_wire_same(a, b) for a, b in zip(written, reread, strict=True))
    if type(written) is dict and type(reread) is dict:
        return all(k in reread and _wire_same(v, reread[k]) for k, v in written.items())
    return type(written) is type(reread) and bool(written == reread)


def _encoded_defaults(cls: type) -> dict[int, Any]:
    import attrs

    out: dict[int, Any] = {}
    for f in contract_info(cls).fields:
        if f.default is attrs.NOTHING:
            continue
        value = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default  # type: ignore[arg-type]
        out[f.tag] = f.spec.encode(value)
    return out


def _check_direction(
    writer: type[RoutingEnum],
    reader: type[RoutingEnum],
    cls: type,
    label: str,
    *,
    roundtrip: bool,
    max_examples: int,
) -> None:
    from nanomsg_kernel.errors import DecodeError

    wcodec, rcodec = writer.codec(), reader.codec()
    winfo = contract_info(cls)

    @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(msg=strategy_for(cls))
    def check(msg: Any) -> None:
        frame = wcodec.encode(msg)
        try:
            got = rcodec.decode(frame)
        except DecodeError as exc:
            raise AssertionError(f"{label}: {msg!r} does not decode: {exc}") from None
        written = winfo.to_map(msg)
        reread = contract_info(got).to_map(got)
        for tag, value in written.items():
            assert tag in reread and _wire_same(value, reread[tag]), (
                f"{label}: tag {tag} of {msg!r} came back as {reread.get(tag)!r} in {got!r}"
            )
        defaults = _encoded_defaults(type(got))
        for tag in reread.keys() - written.keys():
            assert tag in defaults and _wire_same(defaults[tag], reread[tag]), (
                f"{label}: {got!r} has tag {tag} = {reread[tag]!r}, which is not its default"
            )
        if roundtrip:
            try:
                back = wcodec.decode(rcodec.encode(got))
            except DecodeError as exc:
                raise AssertionError(f"{label}: {got!r} does not decode back: {exc}") from None
            assert back == msg, f"{label}: {msg!r} came back as {back!r} after a pass through the other side"

    check()


def assert_compatible(
    old: type[RoutingEnum], new: type[RoutingEnum], *, mode: str = "full", max_examples: int = 100
) -> None:
    """Check with hypothesis that two versions of a kernel read each other's messages.

    For every route of ``old`` (matched to ``new`` by route id): in mode ``full`` or
    ``backward``, messages encoded by ``old``'s contracts must decode under ``new``'s; in
    ``full`` or ``forward``, messages of ``new``'s contracts must decode under ``old``'s.
    "Decode" means no error, and every field the writer sent comes back unchanged when the
    reader encodes the message again (known fields, and unknown ones it kept); fields the
    writer did not know take their defaults. In ``full`` mode a message must also survive
    the trip to the other side and back unchanged. Routes that only ``new`` has are not
    checked (old peers answer them with "unknown route").

    Raises:
        AssertionError: with hypothesis's minimal failing message.
    """
    if mode not in _DIRECTIONS:
        raise ValueError(f"mode must be one of {', '.join(_DIRECTIONS)}, not {mode!r}")
    directions = _DIRECTIONS[mode]
    new_by_id = {int(m): c for m, c in new.contracts().items()}
    for member, old_cls in old.contracts().items():
        new_cls = new_by_id.get(int(member))
        if new_cls is None:
            if "backward" in directions:
                raise AssertionError(f"route {int(member)} ({old_cls.__name__}) is gone from the new kernel")
            continue
        both = len(directions) == 2
        if "backward" in directions:
            label = f"old {old_cls.__name__} read by new {new_cls.__name__}"
            _check_direction(old, new, old_cls, label, roundtrip=both, max_examples=max_examples)
        if "forward" in directions:
            label = f"new {new_cls.__name__} read by old {old_cls.__name__}"
            _check_direction(new, old, new_cls, label, roundtrip=both, max_examples=max_examples)


def assert_evolution(old: Any, new: Any, *, mode: str = "full", max_examples: int = 100) -> Any:
    """Check that a kernel's schema can evolve from ``old`` to ``new``.

    ``old`` and ``new`` are schemas (:class:`nanomsg_kernel.codegen.model.KernelSchema`) or anything
    ``nanomsg-kernel schema diff`` accepts: a schema file, ``git:REV:path``, or
    ``module:RoutingEnum`` (imported from ``sys.path``, which is left unchanged). First
    ``schema diff`` must report no breaking change in ``mode``; then classes are built from
    both schemas and :func:`assert_compatible` checks with hypothesis that each side decodes
    the other's messages. Returns the diff's :class:`nanomsg_kernel.codegen.diff.Report`.

    Schema files are data: building their classes executes the module ``codegen`` writes,
    in which every text of the schema (docstrings, string defaults, the file's name) is a
    literal, never code.

    Raises:
        AssertionError: the diff reports breaking changes, or a message fails to cross.
    """
    from nanomsg_kernel.codegen.diff import diff
    from nanomsg_kernel.codegen.load_kernel import load_routes
    from nanomsg_kernel.codegen.model import KernelSchema
    from nanomsg_kernel.codegen.sources import load_source

    old_k = old if isinstance(old, KernelSchema) else load_source(str(old))
    new_k = new if isinstance(new, KernelSchema) else load_source(str(new))
    report = diff(old_k, new_k, mode=mode)
    if not report.ok:
        raise AssertionError("schema diff reports breaking changes:\n" + report.text())
    assert_compatible(load_routes(old_k), load_routes(new_k), mode=mode, max_examples=max_examples)
    return report
