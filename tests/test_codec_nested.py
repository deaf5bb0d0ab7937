"""Maps inside a body: a nested record's unknown fields travel as the bytes received, and a
repeated key in any map (a nested record's, a dict field's) is refused, as in the body's own map."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings

from nanomsg_kernel import DecodeError, Kind, RoutingEnum, contract, record, unknown_fields
from nanomsg_kernel.frame import HEADER_SIZE, pack_header
from nanomsg_kernel.testing import strategy_for


class Route(RoutingEnum):
    OUTER = 1


@record
class Leaf:
    n: int = 0


@record
class Inner:
    x: int = 0
    leaf: Leaf | None = None


@contract(Route.OUTER)
class Outer:
    inner: Inner = Inner()
    items: list[Inner] = []  # noqa: RUF012 - attrs copies the default per instance
    table: dict[str, Inner] = {}  # noqa: RUF012
    counts: dict[int, int] = {}  # noqa: RUF012
    pair: tuple[Inner, int] | None = None


codec = Route.codec()


def request(body: bytes) -> bytes:
    return pack_header(Kind.REQUEST, 1, 1, 1, 0, len(body)) + body


def body_of(m: dict[int, bytes]) -> bytes:
    """A map of tag -> msgpack bytes, written as given."""
    out = bytearray([0x80 | len(m)])
    for k, v in m.items():
        out += msgpack.packb(k) + v
    return bytes(out)


EXACT = {
    "float32": b"\xca\x3f\xc0\x00\x00",
    "timestamp96 (nanoseconds)": b"\xc7\x0c\xff" + struct.pack(">Iq", 123_456_789, 1_700_000_000),
    "ext type 5": b"\xd5\x05ab",
    "non-canonical int": b"\xd3" + struct.pack(">q", 1),
}


def inner_with(value: bytes) -> bytes:
    """Inner {x: 3, leaf: None, 9: value}: tag 9 is unknown to Inner."""
    return body_of({1: b"\x03", 2: b"\xc0", 9: value})


@pytest.mark.parametrize("value", EXACT.values(), ids=EXACT.keys())
def test_a_nested_records_unknown_fields_are_forwarded_verbatim(value: bytes) -> None:
    inner = inner_with(value)
    deeper = body_of({1: b"\x04", 2: body_of({1: b"\x05", 7: value})})  # Inner(x=4, leaf=Leaf{n: 5, 7: value})
    body = body_of({
        1: inner,
        2: b"\x92" + inner + deeper,
        3: b"\x81\xa1k" + inner,
        4: b"\x80",
        5: b"\x92" + inner + b"\x01",
    })
    msg = codec.decode(request(body))
    assert msg.inner == Inner(x=3) and msg.items[1] == Inner(x=4, leaf=Leaf(n=5))
    assert unknown_fields(msg.inner, raw=True) == {9: value}
    assert unknown_fields(msg.items[1].leaf, raw=True) == {7: value}
    assert unknown_fields(msg.table["k"], raw=True) == {9: value}
    assert msg.pair is not None and unknown_fields(msg.pair[0], raw=True) == {9: value}
    assert codec.encode(msg)[HEADER_SIZE:] == body  # a relay writes them back unchanged
    changed = codec.encode(msg.evolve(counts={1: 2}))[HEADER_SIZE:]
    assert changed == body.replace(b"\x04\x80", b"\x04\x81\x01\x02")


def test_unknown_nested_values_read_back_as_values() -> None:
    msg = codec.decode(request(body_of({1: inner_with(EXACT["float32"])})))
    assert unknown_fields(msg.inner) == {9: 1.5}


REPEATS = {
    "nested record": (body_of({1: b"\x82\x01\x01\x01\x02"}), r"Outer\.inner: map key 1 repeats"),
    "record in a list": (body_of({2: b"\x92\x80\x82\x01\x01\x01\x02"}), r"Outer\.items\[1\]: map key 1 repeats"),
    "record in a record": (body_of({1: b"\x81\x02\x82\x01\x01\x01\x02"}), r"Outer\.inner\.leaf: map key 1 repeats"),
    "dict field": (body_of({4: b"\x82\x01\x01\x01\x02"}), r"Outer\.counts: map key 1 repeats"),
    "dict of records": (body_of({3: b"\x82\xa1k\x80\xa1k\x80"}), r"Outer\.table: map key 'k' repeats"),
    "record in a dict": (body_of({3: b"\x81\xa1k\x82\x01\x01\x01\x02"}), r"Outer\.table\['k'\]: map key 1 repeats"),
    "record in a tuple": (body_of({5: b"\x92\x82\x01\x01\x01\x02\x00"}), r"Outer\.pair\[0\]: map key 1 repeats"),
}


@pytest.mark.parametrize(("body", "error"), REPEATS.values(), ids=REPEATS.keys())
def test_a_repeated_key_in_a_nested_map_is_refused(body: bytes, error: str) -> None:
    with pytest.raises(DecodeError, match=error):
        codec.decode(request(body))


def test_keys_of_nested_records_are_integers_and_of_dicts_their_type() -> None:
    with pytest.raises(DecodeError, match=r"Outer\.inner: map key True is not a field tag"):
        codec.decode(request(body_of({1: b"\x81\xc3\x01"})))
    with pytest.raises(DecodeError, match=r"Outer\.counts<key True>: expected int, got bool"):
        codec.decode(request(body_of({4: b"\x81\xc3\x01"})))
    with pytest.raises(DecodeError, match=r"Outer\.table<key 1>: expected str, got int 1"):
        codec.decode(request(body_of({3: b"\x81\x01\x80"})))


def test_what_is_not_a_map_is_left_to_the_fields_decoder() -> None:
    with pytest.raises(DecodeError, match=r"Outer\.inner: expected Inner \(a map\), got int 5"):
        codec.decode(request(body_of({1: b"\x05"})))
    with pytest.raises(DecodeError, match=r"Outer\.items: expected list \(an array\), got int 5"):
        codec.decode(request(body_of({2: b"\x05"})))
    with pytest.raises(DecodeError, match=r"malformed msgpack body: truncated"):
        codec.decode(request(body_of({1: b"\x82\x01"})))


@settings(max_examples=150, deadline=None)
@given(strategy_for(Outer))
def test_nested_contracts_round_trip(msg: Outer) -> None:
    frame = codec.encode(msg)
    assert codec.decode(frame) == msg
    assert codec.encode(codec.decode(frame)) == frame
