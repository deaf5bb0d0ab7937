"""What one frame may cost to decode: the object budget, and unknown fields kept as bytes."""

from __future__ import annotations

import asyncio
import datetime
import struct
import tracemalloc
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanomsg_kernel import (
    DecodeError,
    EncodeError,
    Kind,
    RemoteError,
    RoutingEnum,
    Service,
    Status,
    TooManyObjects,
    contract,
    record,
    unknown_fields,
)
from nanomsg_kernel.codec import Codec, count_objects
from nanomsg_kernel.frame import HEADER_SIZE, pack_header
from nanomsg_kernel.scan import Counter, entries, skip


class Route(RoutingEnum):
    LIST = 1
    FLAT = 2
    BLOB = 3


@record
class Rec:
    x: int = 0


@contract(Route.LIST)
class Listing:
    items: list[Rec]


@contract(Route.FLAT)
class Flat:
    n: int = 0


@contract(Route.BLOB)
class Blob:
    data: bytes = b""
    numbers: list[int] = []  # noqa: RUF012 - attrs copies the default per instance


codec = Route.codec()
EMPTY_MAPS = 3_000_000  # a 2.9 MiB body


def request(route: int, body: bytes) -> bytes:
    return pack_header(Kind.REQUEST, route, 1, 7, 0, len(body)) + body


def hostile(tag: int, n: int = EMPTY_MAPS) -> bytes:
    """A body ``{tag: [{}, {}, ...]}``: ``n`` one-byte empty maps."""
    return b"\x81" + msgpack.packb(tag) + b"\xdd" + struct.pack(">I", n) + b"\x80" * n


def peak_growth(fn: Any) -> tuple[int, Any]:
    """Peak bytes allocated while ``fn`` runs, and its result or exception."""
    tracemalloc.start()
    try:
        try:
            out: Any = fn()
        except Exception as exc:
            out = exc
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def test_default_budget_is_derived_from_the_body_limit() -> None:
    assert codec.max_objects == codec.max_body_size // 64 == 262_144
    assert Codec(Route, max_body_size=1 << 20).max_objects == 16_384
    assert Codec(Route, max_body_size=100).max_objects == 1024
    with pytest.raises(ValueError, match="max_objects"):
        Codec(Route, max_objects=0)


@pytest.mark.parametrize("tag", [1, 9], ids=["known list[Rec] field", "unknown tag"])
def test_a_hostile_body_is_refused_within_10x_its_size(tag: int) -> None:
    frame = request(1, hostile(tag))
    peak, out = peak_growth(lambda: codec.decode(frame))
    assert isinstance(out, TooManyObjects), out
    assert out.status is Status.RESOURCE_EXHAUSTED and out.limit == codec.max_objects
    assert "262144" in str(out) and "max_objects" in str(out)
    assert peak <= 10 * len(frame) + (1 << 20), f"grew by {peak / len(frame):.1f}x the frame"


def test_the_largest_accepted_hostile_body_stays_bounded() -> None:
    """The constant: a body just inside the budget, whose objects are all made."""
    n = codec.max_objects - 3
    frame = request(1, hostile(1, n))
    peak, out = peak_growth(lambda: codec.decode(frame))
    assert isinstance(out, Listing) and len(out.items) == n
    assert peak < 200 * codec.max_objects  # about 140 bytes per one-byte map, whatever the frame


def test_an_unknown_field_is_kept_without_being_expanded() -> None:
    frame = request(2, b"\x82\x01\x05" + hostile(9, codec.max_objects - 8)[1:])
    peak, out = peak_growth(lambda: codec.decode(frame))
    assert isinstance(out, Flat) and out.n == 5
    assert peak <= 2 * len(frame) + (1 << 16), f"grew by {peak / len(frame):.1f}x the frame"
    assert codec.encode(out, correlation_id=7) == frame


def test_a_long_body_of_few_objects_decodes() -> None:
    small = Codec(Route, max_objects=1024)
    msg = Blob(data=b"x" * 100_000, numbers=list(range(1000)))
    assert small.decode(small.encode(msg)) == msg


def test_encode_refuses_what_decode_would_refuse_for_its_object_count() -> None:
    small = Codec(Route, max_objects=1024)
    with pytest.raises(EncodeError, match="more than 1024 objects"):
        small.encode(Blob(numbers=list(range(2000))))
    assert small.decode(small.encode(Blob(numbers=list(range(1000))))).numbers == list(range(1000))


def test_error_frames_are_bounded_too() -> None:
    body = b"\x83\x01\x01\x02\xa1x\x03" + hostile(0)[2:]  # {1: status, 2: "x", 3: [{}, {}, ...]}
    frame = pack_header(Kind.ERROR, 1, 0, 7, 0, len(body)) + body
    with pytest.raises(TooManyObjects):
        codec.decode(frame)


def test_a_server_answers_resource_exhausted_naming_the_limit() -> None:
    service = Service("listing", Route)

    @service.handler(Listing)
    async def handle(msg: Listing) -> Listing:
        return msg

    async def run() -> bytes | None:
        return await service.handle_frame(request(1, hostile(1)))

    reply = asyncio.run(run())
    assert reply is not None
    with pytest.raises(RemoteError) as info:
        service.codec.decode(reply)
    assert info.value.status is Status.RESOURCE_EXHAUSTED
    assert "max_objects" in info.value.message and str(service.codec.max_objects) in info.value.message


# -- unknown fields travel as the bytes received ------------------------------------------


EXACT = {
    "float32": b"\xca\x3f\xc0\x00\x00",
    "timestamp96 (nanoseconds)": b"\xc7\x0c\xff" + struct.pack(">Iq", 123_456_789, 1_700_000_000),
    "timestamp64": b"\xd7\xff" + struct.pack(">Q", (999 << 34) | 1_700_000_000),
    "ext type 5": b"\xd5\x05ab",
    "non-canonical int": b"\xd3" + struct.pack(">q", 1),
    "map with float keys": b"\x81\xcb" + struct.pack(">d", 1.5) + b"\xc0",
}


@pytest.mark.parametrize("value", EXACT.values(), ids=EXACT.keys())
def test_a_relay_forwards_unknown_values_verbatim(value: bytes) -> None:
    body = b"\x82\x01\x05\x09" + value
    msg = codec.decode(request(2, body))
    assert msg == Flat(n=5)
    assert unknown_fields(msg, raw=True) == {9: value}
    assert codec.encode(msg, correlation_id=7)[HEADER_SIZE:] == body
    assert codec.encode(msg.evolve(n=6), correlation_id=7)[HEADER_SIZE:] == b"\x82\x01\x06\x09" + value


def test_unknown_fields_read_back_as_values() -> None:
    msg = codec.decode(request(2, b"\x82\x01\x05\x09" + EXACT["timestamp64"]))
    (value,) = unknown_fields(msg).values()
    assert isinstance(value, datetime.datetime) and value.tzinfo is not None


# -- the walker agrees with msgpack --------------------------------------------------------

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=300)
    | st.binary(max_size=300),
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.integers(0, 2**32) | st.text(max_size=5), inner,
                                                                  max_size=20),
    max_leaves=60,
)


def objects(value: Any) -> int:
    if isinstance(value, list):
        return 1 + sum(objects(v) for v in value)
    if isinstance(value, dict):
        return 1 + sum(objects(k) + objects(v) for k, v in value.items())
    return 1


@settings(max_examples=300, suppress_health_check=list(HealthCheck), deadline=None)
@given(values, st.binary(max_size=4))
def test_skip_finds_the_end_and_counts_every_object(value: Any, tail: bytes) -> None:
    data = msgpack.packb(value, use_bin_type=True) + tail
    counter = Counter(10**6)
    assert skip(memoryview(data), 0, len(data), counter) == len(data) - len(tail)
    assert counter.count == objects(value)
    with pytest.raises(TooManyObjects):
        skip(data, 0, len(data), Counter(objects(value) - 1))


@settings(max_examples=300, suppress_health_check=list(HealthCheck), deadline=None)
@given(values)
def test_truncated_bodies_are_decode_errors(value: Any) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            skip(data[:cut], 0, cut, Counter(10**6))
    with pytest.raises(DecodeError, match="after the first object"):
        count_objects(data + b"\xc0", len(data))


def test_entries_locate_each_field() -> None:
    body = msgpack.packb({1: [1, 2], 70000: "x", -1: None})
    spans = entries(memoryview(body))
    assert [(t, msgpack.unpackb(body[s:e])) for t, s, e in spans] == [(1, [1, 2]), (70000, "x"), (-1, None)]


@pytest.mark.parametrize("body", [b"\xde", b"\xde\x00", b"\xdf\x00\x00\x00", b"\x81", b"\x81\x01", b"\x81\xc3\x01"])
def test_cut_maps_are_decode_errors(body: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.decode(request(2, body))


def test_a_contract_of_more_than_15_fields_takes_both_paths() -> None:
    class WideRoute(RoutingEnum):
        WIDE = 1

    namespace: dict[str, Any] = {"__annotations__": {f"f{i}": "int" for i in range(20)}}
    namespace.update({f"f{i}": 0 for i in range(20)})
    Wide = contract(WideRoute.WIDE)(type("Wide", (), namespace))
    wide = WideRoute.codec()
    msg = Wide(**{f"f{i}": i for i in range(20)})
    frame = wide.encode(msg)
    assert frame[HEADER_SIZE:HEADER_SIZE + 3] == b"\xde\x00\x14"
    assert wide.decode(frame) == msg
    short = msgpack.packb({i + 1: i for i in range(18)})  # two fields left to their defaults
    assert wide.decode(request(1, short)) == Wide(**{f"f{i}": i for i in range(18)})
    for cut in (b"\xde", b"\xde\x00", b"\xde\x00\x14"):
        with pytest.raises(DecodeError):
            wide.decode(request(1, cut))
