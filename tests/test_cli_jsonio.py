"""Contracts to JSON and back (what ``call`` sends and prints)."""

from __future__ import annotations

import datetime
import json
import math
import uuid

import pytest
from hypothesis import given, settings

from nanomsg_kernel.app.jsonio import dumps, from_json, loads, plain_json, to_json
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.contracts.catalog import Colour, GetItem, Item, ItemChanged, Price, PutItem
from nanomsg_kernel.errors import EncodeError
from nanomsg_kernel.testing import strategy_for


def _item(**changes: object) -> Item:
    base = Item(
        id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        name="lamp",
        price=Price(1999),
        tags=["a", "b"],
        dimensions=(1.0, 2.5, math.inf),
        colours=(Colour.RED, Colour.BLUE),
        stock={"paris": 3},
        ratings={5: 4.5},
        image=b"\x00\xffhi",
        created=datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC),
        variants=[Price(10, "USD")],
    )
    return base.evolve(**changes)


def test_calc_work_by_member_name_and_by_value() -> None:
    assert loads(CalcWork, '{"a": 6, "b": 3, "op": "DIV"}') == CalcWork(a=6, b=3, op=WorkType.DIV)
    assert from_json(CalcWork, {"a": 6, "b": 3, "op": 4}) == CalcWork(a=6, b=3, op=WorkType.DIV)
    assert to_json(CalcWork(a=6, b=3, op=WorkType.DIV, result=2)) == {
        "a": 6, "b": 3, "op": "DIV", "result": 2, "precision": 0,
    }


def test_every_field_type_round_trips_through_json_text() -> None:
    msg = PutItem(item=_item(), revision=3, note=None)
    text = dumps(msg)
    data = json.loads(text)
    item = data["item"]
    assert item["id"] == "12345678-1234-5678-1234-567812345678"
    assert item["image"] == "AP9oaQ=="
    assert item["colours"] == ["RED", "BLUE"]
    assert item["dimensions"] == [1.0, 2.5, "Infinity"]
    assert item["ratings"] == {"5": 4.5}
    assert item["created"] == "2024-05-01T12:30:00+00:00"
    assert item["variants"] == [{"amount": 10, "currency": "USD"}]
    assert loads(PutItem, text) == msg


def test_bytes_in_hex_both_ways_and_prefixes() -> None:
    msg = PutItem(item=_item(image=b"\x01\x02"))
    data = to_json(msg, bytes_format="hex")
    assert data["item"]["image"] == "0102"
    assert from_json(PutItem, data, bytes_format="hex") == msg
    data["item"]["image"] = "hex:0a0b"
    assert from_json(PutItem, data).item.image == b"\n\x0b"
    data["item"]["image"] = "base64:AQI="
    assert from_json(PutItem, data, bytes_format="hex").item.image == b"\x01\x02"


def test_string_enum_by_value_and_z_suffix_datetime() -> None:
    data = to_json(ItemChanged(id=uuid.UUID(int=1), revision=1, at=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)))
    data["at"] = "2024-01-01T00:00:00Z"
    assert from_json(ItemChanged, data).at == datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    item = to_json(_item())
    item["colours"] = ["green", "RED"]
    assert from_json(Item, item).colours == (Colour.GREEN, Colour.RED)


@pytest.mark.parametrize(
    ("cls", "value", "message"),
    [
        (CalcWork, {"a": 6, "b": 3, "op": "POW"}, "CalcWork.op: expected one of SUM, DIFF, MULT, DIV"),
        (CalcWork, {"a": "6", "b": 3, "op": "SUM"}, 'CalcWork.a: expected an integer, got "6"'),
        (CalcWork, {"a": 2**63, "b": 3, "op": "SUM"}, "CalcWork.a: expected a 64-bit signed integer"),
        (CalcWork, {"a": True, "b": 3, "op": "SUM"}, "CalcWork.a: expected an integer, got true"),
        (CalcWork, {"b": 3, "op": "SUM"}, "CalcWork.a: required field is missing"),
        (CalcWork, {"a": 1, "b": 3, "op": "SUM", "c": 1}, "CalcWork.c: unknown field 'c'"),
        (CalcWork, [1, 2], "CalcWork: expected an object with the fields of CalcWork, got an array"),
        (CalcWork, {"a": 1, "b": 3, "op": True}, "CalcWork.op: expected one of"),
        (Echo, {"text": 5}, "Echo.text: expected a string, got 5"),
        (GetItem, {"id": "nope"}, 'GetItem.id: expected a UUID string, got "nope"'),
        (ItemChanged, {"id": str(uuid.UUID(int=1)), "revision": 1, "at": "2024-01-01T00:00:00"},
         "ItemChanged.at: expected a datetime with a UTC offset"),
        (PutItem, {"item": {"id": str(uuid.UUID(int=1)), "name": "x", "price": {"amount": 1, "currency": 3}}},
         "PutItem.item.price.currency: expected a string, got 3"),
        (PutItem, {"item": {"id": str(uuid.UUID(int=1)), "name": "x", "price": {"amount": 1}, "tags": ["a", 2]}},
         "PutItem.item.tags[1]: expected a string, got 2"),
        (PutItem, {"item": {"id": str(uuid.UUID(int=1)), "name": "x", "price": {"amount": 1},
                            "dimensions": [1, 2]}},
         "PutItem.item.dimensions: expected an array of 3 items, got 2"),
        (PutItem, {"item": {"id": str(uuid.UUID(int=1)), "name": "x", "price": {"amount": 1},
                            "ratings": {"five": 1.0}}},
         'PutItem.item.ratings: expected an integer key, got "five"'),
        (PutItem, {"item": {"id": str(uuid.UUID(int=1)), "name": "x", "price": {"amount": 1}, "image": "!!"}},
         "PutItem.item.image: expected bytes as a base64 string"),
    ],
)
def test_errors_name_the_field(cls: type, value: object, message: str) -> None:
    with pytest.raises(EncodeError) as info:
        from_json(cls, value)
    assert str(info.value).startswith(message), str(info.value)


def test_invalid_json_text_is_an_encode_error() -> None:
    with pytest.raises(EncodeError, match="CalcWork: not valid JSON"):
        loads(CalcWork, "{a: 1}")


def test_plain_json_for_kernel_less_values() -> None:
    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    assert plain_json({1: b"\x01", 2: [math.nan, when]}) == {"1": "AQ==", "2": ["NaN", "2024-01-01T00:00:00+00:00"]}
    assert plain_json({1: b"\x01"}, bytes_format="hex") == {"1": "01"}


@settings(max_examples=150, deadline=None)
@given(strategy_for(PutItem))
def test_json_round_trip_of_generated_messages(msg: PutItem) -> None:
    back = loads(PutItem, dumps(msg))
    # NaN never equals itself: compare the encoded bodies, which are byte-identical when equal.
    codec = type(msg.route).codec()
    assert codec.encode_body(back) == codec.encode_body(msg)


@settings(max_examples=100, deadline=None)
@given(strategy_for(CalcWork))
def test_json_round_trip_of_calc_work(msg: CalcWork) -> None:
    assert loads(CalcWork, dumps(msg, indent=None)) == msg
    assert CalcRoute.codec().encode_body(msg)
