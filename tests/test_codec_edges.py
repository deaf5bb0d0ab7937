"""The codec's edges: each is refused or round-trips, none half-works."""

from __future__ import annotations

import asyncio
import datetime
import enum
import math
import uuid
from typing import Any

import attrs
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanomsg_kernel import (
    ContractError,
    DecodeError,
    EncodeError,
    Kind,
    RemoteError,
    RoutingEnum,
    Service,
    ServiceError,
    Status,
    contract,
    contract_info,
    field,
    record,
)
from nanomsg_kernel.codec import decode_error_body, encode_error_body
from nanomsg_kernel.frame import pack_header
from nanomsg_kernel.testing import strategy_for


class Perm(enum.IntFlag):
    R = 1
    W = 2
    X = 4


class Mode(enum.Flag):
    A = 1
    B = 2


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Route(RoutingEnum):
    PAIR = 1
    NESTED = 2
    FLAGS = 3
    ALIASED = 4
    MIXED = 5


@contract(Route.PAIR)
class Pair:
    a: int
    b: int = 0


@record
class Inner:
    x: int = 0
    y: int = 0


@contract(Route.NESTED)
class Nested:
    inner: Inner
    names: dict[str, int] = attrs.Factory(dict)


@contract(Route.FLAGS)
class Flags:
    perm: Perm
    mode: Mode = Mode(0)
    maybe: Perm | None = None


@contract(Route.ALIASED)
class Aliased:
    first: int = field(validator=attrs.validators.ge(0))
    _secret: str = field(kw_only=True, default="")
    count: int = field(kw_only=True, alias="n", default=0)


@contract(Route.MIXED)
class Mixed:
    i: int = 0
    f: float = 0.0
    s: str = ""
    b: bytes = b""
    flag: bool = False
    when: datetime.datetime | None = None
    uid: uuid.UUID | None = None
    color: Color = Color.RED
    ints: list[int] = attrs.Factory(list)
    table: dict[int, str] = attrs.Factory(dict)
    pair: tuple[int, str] = (0, "")
    inner: Inner | None = None


codec = Route.codec()


def request(route: int, body: bytes) -> bytes:
    return pack_header(Kind.REQUEST, route, 1, 1, 0, len(body)) + body


# -- map keys -----------------------------------------------------------------------------

BAD_KEYS = {
    "True for tag 1": b"\x82\xc3\x05\x02\x06",
    "1.0 for tag 1": b"\x82\xcb" + msgpack.packb(1.0)[1:] + b"\x05\x02\x06",
    "float32 1.0": b"\x82\xca\x3f\x80\x00\x00\x05\x02\x06",
    "tag 1 twice": b"\x83\x01\x05\x01\x06\x02\x06",
    "tag 2 twice": b"\x83\x01\x05\x02\x06\x02\x07",
    "True, tag 2 missing": b"\x81\xc3\x05",
    "str key": b"\x82\xa1a\x05\x02\x06",
}


@pytest.mark.parametrize("body", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_keys_that_are_not_tags_once_are_refused(body: bytes) -> None:
    with pytest.raises(DecodeError, match=r"Pair: map key .* (is not a field tag|repeats)"):
        codec.decode(request(1, body))
    as_map = msgpack.unpackb(body, strict_map_key=False)
    if len(as_map) == body[0] - 0x80:  # a repeated key is gone from the dict msgpack makes
        with pytest.raises(DecodeError):
            contract_info(Pair).from_map(as_map)


def test_keys_in_nested_records_are_tags_too() -> None:
    good = msgpack.packb({1: {1: 1, 2: 2}, 2: {"k": 1}})
    assert codec.decode(request(2, good)) == Nested(Inner(1, 2), {"k": 1})
    for body in (
        b"\x82\x01\x82\xc3\x01\x02\x02\x02\x80",  # inner {True: 1, 2: 2}
        b"\x82\x01\x82\xcb" + msgpack.packb(1.0)[1:] + b"\x01\x02\x02\x02\x80",  # inner {1.0: 1, 2: 2}
    ):
        with pytest.raises(DecodeError, match=r"Nested\.inner.*not a field tag"):
            codec.decode(request(2, body))


# -- flag enums ---------------------------------------------------------------------------


def test_flag_fields_round_trip_every_combination() -> None:
    for perm in (Perm.R | Perm.W, Perm(0), Perm.R | Perm.W | Perm.X, ~Perm.W):
        msg = Flags(perm=perm, mode=Mode.A | Mode.B, maybe=perm)
        assert codec.decode(codec.encode(msg)) == msg


def test_flag_bits_outside_the_members_are_refused_both_ways() -> None:
    with pytest.raises(EncodeError, match=r"Flags\.perm"):
        codec.encode(Flags(perm=Perm(8)))
    with pytest.raises(DecodeError, match=r"Flags\.perm"):
        codec.decode(request(3, msgpack.packb({1: 8, 2: 0, 3: None})))
    with pytest.raises(DecodeError, match=r"Flags\.perm"):
        codec.decode(request(3, msgpack.packb({1: -1, 2: 0, 3: None})))


def test_flag_strategy_draws_combinations() -> None:
    seen: set[int] = set()

    @settings(max_examples=200, database=None)
    @given(strategy_for(Flags))
    def check(msg: Flags) -> None:
        seen.add(msg.perm.value)
        assert codec.decode(codec.encode(msg)) == msg

    check()
    assert {3, 5, 6, 7} & seen


# -- aliases ------------------------------------------------------------------------------


def test_kw_only_fields_with_aliases_decode() -> None:
    msg = Aliased(1, secret="s", n=3)
    assert codec.decode(codec.encode(msg)) == msg
    assert codec.decode(request(4, msgpack.packb({1: 1}))) == Aliased(1)
    with pytest.raises(DecodeError, match="first"):
        codec.decode(request(4, msgpack.packb({1: -1, 2: "", 3: 0})))


def test_strategy_for_honours_aliases() -> None:
    @record
    class Private:
        _token: str = field(kw_only=True)
        level: int = field(kw_only=True, alias="lvl", default=0)

    @settings(max_examples=50, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy_for(Mixed), strategy_for(Private))
    def check(mixed: Mixed, private: Private) -> None:
        assert codec.decode(codec.encode(mixed)) == mixed
        assert contract_info(Private).from_map(contract_info(Private).to_map(private)) == private

    check()


# -- encode raises EncodeError, and refuses what decode refuses ---------------------------


def test_a_huge_int_for_a_float_is_an_encode_error() -> None:
    with pytest.raises(EncodeError, match=r"Mixed\.f"):
        codec.encode(Mixed(f=10**400))  # type: ignore[arg-type]


class Exploding(int):
    def __index__(self) -> int:
        raise RuntimeError("boom")

    def __int__(self) -> int:
        raise RuntimeError("boom")


ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.integers().map(lambda i: 10**400 * (i or 1)),
    st.floats(), st.text(st.characters(codec=None, categories=None), max_size=8), st.binary(max_size=8),
    st.datetimes(), st.datetimes(timezones=st.just(datetime.UTC)), st.uuids(), st.sampled_from(list(Color)),
    st.sampled_from([Perm.R, Perm(8), Mode.A]), st.just(Exploding(3)), st.just(bytearray(b"ab")),
    st.lists(st.integers(-(2**64), 2**64), max_size=3), st.tuples(st.integers(), st.text(max_size=3)),
    st.dictionaries(st.integers(-3, 3) | st.booleans() | st.text(max_size=2), st.text(max_size=3), max_size=3),
    st.builds(Inner, x=st.integers(-(2**64), 2**64)), st.just(object()),
)


@settings(max_examples=600, database=None, suppress_health_check=list(HealthCheck), deadline=None)
@given(st.dictionaries(st.sampled_from([a.name for a in attrs.fields(Mixed)]), ANYTHING, max_size=4))
def test_encode_refuses_what_decode_refuses(values: dict[str, Any]) -> None:
    msg = Mixed()
    for name, value in values.items():
        object.__setattr__(msg, name, value)
    try:
        frame = codec.encode(msg)
    except EncodeError:
        return  # any other exception fails the test
    back = codec.decode(frame)  # what encodes must decode ...
    assert codec.encode(back) == frame  # ... and mean the same
    for name, value in values.items():
        got = getattr(back, name)
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got)
        elif not isinstance(value, (list, tuple, dict, bytearray, Inner)):
            assert got == value, name


# -- error replies keep their status ------------------------------------------------------


@pytest.mark.parametrize("message", ["lone \ud800 surrogate", "x" * 100_000, "", "ünïcode"])
@pytest.mark.parametrize("details", [None, {"k": 1}, object(), "\udcff"])
def test_an_error_body_always_encodes_with_its_status(message: str, details: Any) -> None:
    error = decode_error_body(encode_error_body(Status.BAD_REQUEST, message, details))
    assert error.status is Status.BAD_REQUEST
    assert error.message.startswith(message[:10].replace("\ud800", "\\ud800"))


def test_a_service_error_with_any_text_keeps_its_status_over_the_wire() -> None:
    service = Service("pairs", Route)

    @service.handler(Pair)
    async def handle(msg: Pair) -> Pair:
        raise ServiceError(Status.BAD_REQUEST, "bad \ud800 value", details={"why": "\udcff"})

    reply = asyncio.run(service.handle_frame(codec.encode(Pair(1), correlation_id=5)))
    assert reply is not None
    with pytest.raises(RemoteError) as info:
        codec.decode(reply)
    assert info.value.status is Status.BAD_REQUEST
    assert info.value.message == "bad \\ud800 value"


def test_definition_time_errors_stay_contract_errors() -> None:
    class Negative(enum.IntFlag):
        N = -1

    with pytest.raises(ContractError, match="Negative"):

        @record
        class Bad:
            n: Negative


@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
def test_a_uint64_above_the_int64_range_is_refused_on_the_common_path(value: int) -> None:
    with pytest.raises(DecodeError, match=r"Pair\.a: expected int \(64-bit signed\)"):
        codec.decode(request(1, msgpack.packb({1: value, 2: 0})))
    assert codec.decode(request(1, msgpack.packb({1: -(2**63), 2: 2**63 - 1}))) == Pair(-(2**63), 2**63 - 1)
