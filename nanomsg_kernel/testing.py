"""Property testing for kernels, with hypothesis.

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
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanomsg_kernel.contract import contract_info
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.types import INT_MAX, INT_MIN, TypeSpec

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
    fields = {f.name: strategy_for_spec(f.spec, max_size) for f in info.fields}
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
