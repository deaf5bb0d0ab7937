"""Across versions: messages of one schema version decode under the other, checked with hypothesis.

The decisive test is the agreement table: for single changes, the directions ``schema diff``
says a change breaks are exactly the directions in which live classes built from the two
schemas fail to read each other's messages.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nanomsg_kernel.codegen.diff import BACKWARD, FORWARD, diff
from nanomsg_kernel.codegen.load_kernel import load_routes
from nanomsg_kernel.codegen.model import KernelSchema
from nanomsg_kernel.codegen.schema import load_path, load_text
from nanomsg_kernel.contracts.calc import CalcRoute
from nanomsg_kernel.testing import assert_compatible, assert_evolution

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = 40

TEMPLATE = """\
format = 1

[routes]
name = "R"

[routes.members]
WORK = 1

[enums.Colour]
members = {{ {colours} }}

[records.Point]
version = {point_version}

[records.Point.fields]
{point}

[contracts.Work]
route = "WORK"
version = {version}
reserved = [{reserved}]

[contracts.Work.fields]
{fields}
"""

BASE = {
    "colours": 'RED = "red", BLUE = "blue"',
    "point_version": "1",
    "point": 'x = { tag = 1, type = "int" }',
    "version": "1",
    "reserved": "",
    "fields": "",
}
A = 'a = { tag = 1, type = "int" }'
COLOUR = 'colour = { tag = 2, type = "Colour" }'
AT = 'at = { tag = 3, type = "optional[Point]", default_none = true }'
STANDARD = f"{A}\n{COLOUR}\n{AT}"


def k(**over: str) -> KernelSchema:
    parts = {**BASE, "fields": STANDARD, **over}
    return load_text(TEMPLATE.format(**parts), "k.toml", "k")


def with_a(line: str) -> str:
    return STANDARD.replace(A, line)


CASES: list[tuple[str, dict[str, str], dict[str, str], set[str]]] = [
    ("field added with a default", {}, {"version": "2", "fields": STANDARD + '\nb = { tag = 4, type = "str", default = "", since = 2 }'}, set()),
    ("required field added", {}, {"version": "2", "fields": A + '\nb = { tag = 4, type = "str", since = 2 }\n' + COLOUR + "\n" + AT}, {BACKWARD}),
    ("required field removed", {}, {"version": "2", "reserved": "1", "fields": f"{COLOUR}\n{AT}"}, {FORWARD}),
    ("optional field removed", {}, {"version": "2", "reserved": "3", "fields": f"{A}\n{COLOUR}"}, set()),
    ("int to float", {}, {"fields": with_a('a = { tag = 1, type = "float" }')}, {FORWARD}),
    ("float to int", {"fields": with_a('a = { tag = 1, type = "float" }')}, {}, {BACKWARD}),
    ("int to optional[int]", {}, {"fields": with_a('a = { tag = 1, type = "optional[int]" }')}, {FORWARD}),
    ("optional[int] to int", {"fields": with_a('a = { tag = 1, type = "optional[int]" }')}, {}, {BACKWARD}),
    ("int to str", {}, {"fields": with_a('a = { tag = 1, type = "str" }')}, {BACKWARD, FORWARD}),
    ("tag reused", {}, {"fields": with_a('name = { tag = 1, type = "bytes" }')}, {BACKWARD, FORWARD}),
    ("field renamed", {}, {"fields": with_a('amount = { tag = 1, type = "int" }')}, set()),
    ("list to tuple", {"fields": with_a('a = { tag = 1, type = "list[int]" }')},
     {"fields": with_a('a = { tag = 1, type = "tuple[int, ...]" }')}, set()),
    ("fixed tuple to list", {"fields": with_a('a = { tag = 1, type = "tuple[int, int]" }')},
     {"fields": with_a('a = { tag = 1, type = "list[int]" }')}, {FORWARD}),
    ("dict values int to float", {"fields": with_a('a = { tag = 1, type = "dict[str, int]" }')},
     {"fields": with_a('a = { tag = 1, type = "dict[str, float]" }')}, {FORWARD}),
    ("enum value added", {}, {"colours": 'RED = "red", BLUE = "blue", GREEN = "green"'}, {FORWARD}),
    ("enum value removed", {}, {"colours": 'RED = "red"'}, {BACKWARD}),
    ("enum member renamed", {}, {"colours": 'ROUGE = "red", BLUE = "blue"'}, set()),
    ("enum values str to int", {}, {"colours": "RED = 1, BLUE = 2"}, {BACKWARD, FORWARD}),
    ("enum to its value type", {}, {"fields": STANDARD.replace('"Colour"', '"str"')}, {FORWARD}),
    ("record field added with a default", {},
     {"point_version": "2", "point": BASE["point"] + '\ny = { tag = 2, type = "float", default = 0, since = 2 }'}, set()),
    ("record field added required", {},
     {"point_version": "2", "point": BASE["point"] + '\ny = { tag = 2, type = "float", since = 2 }'}, {BACKWARD}),
    ("tag reserved", {}, {"reserved": "9"}, set()),
    ("field added without a version bump", {}, {"fields": STANDARD + '\nb = { tag = 4, type = "int", default = 0 }'}, set()),
]


def failing_directions(old: KernelSchema, new: KernelSchema) -> set[str]:
    old_routes, new_routes = load_routes(old), load_routes(new)
    failed = set()
    for direction in (BACKWARD, FORWARD):
        try:
            assert_compatible(old_routes, new_routes, mode=direction, max_examples=EXAMPLES)
        except AssertionError:
            failed.add(direction)
    return failed


@pytest.mark.parametrize(("old", "new", "wire_breaks"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_diff_and_live_decoding_agree(old: dict[str, str], new: dict[str, str], wire_breaks: set[str]) -> None:
    old_k, new_k = k(**old), k(**new)
    report = diff(old_k, new_k)
    said = set().union(*(c.breaks for c in report.changes)) & {BACKWARD, FORWARD}
    assert said == wire_breaks, report.text()
    assert failing_directions(old_k, new_k) == wire_breaks
    if not wire_breaks:  # both ways, including the trip there and back
        assert_compatible(load_routes(old_k), load_routes(new_k), max_examples=EXAMPLES)


def test_the_example_kernel_evolves_from_v1_to_v2() -> None:
    report = assert_evolution(ROOT / "schemas" / "history" / "calc.v1.toml", ROOT / "schemas" / "calc.toml",
                              max_examples=EXAMPLES)
    assert report.rules() == {"field-added", "version-raised"}


def test_the_generated_kernel_reads_v1_messages_and_v1_reads_it() -> None:
    v1 = load_routes(load_path(ROOT / "schemas" / "history" / "calc.v1.toml"))
    assert_compatible(v1, CalcRoute, max_examples=EXAMPLES)
    old_work = v1.CALC_WORK.contract(1, 2, v1.CALC_WORK.contract.__nk_info__.fields[2].spec.py.DIV)
    new_work = CalcRoute.codec().decode(v1.codec().encode(old_work))
    assert new_work.precision == 0 and new_work.a == 1 and new_work.op.name == "DIV"
    # a v1 peer keeps the field it does not know and sends it back
    passed = v1.codec().decode(CalcRoute.codec().encode(new_work.evolve(precision=3)))
    assert CalcRoute.codec().decode(v1.codec().encode(passed)).precision == 3


def test_a_catalog_evolution_with_records_and_a_new_route() -> None:
    text = (ROOT / "schemas" / "catalog.toml").read_text()
    v2 = (
        text.replace("[records.Item]\n", "[records.Item]\nversion = 2\n")
        .replace('variants = { tag = 12, type = "list[Price]", default = [] }',
                 'variants = { tag = 12, type = "list[Price]", default = [] }\n'
                 'barcode = { tag = 13, type = "optional[str]", default_none = true, since = 2 }')
        .replace("ITEM_CHANGED = 12", "ITEM_CHANGED = 12\nDROP_ITEM = 13")
        + '\n[contracts.DropItem]\nroute = "DROP_ITEM"\n\n[contracts.DropItem.fields]\nid = { tag = 1, type = "uuid" }\n'
    )
    old, new = load_path(ROOT / "schemas" / "catalog.toml"), load_text(v2, "catalog.v2.toml", "catalog")
    report = assert_evolution(old, new, max_examples=25)
    assert report.rules() == {"field-added", "version-raised", "route-added"}


def test_an_incompatible_pair_is_caught_by_both_the_diff_and_the_property() -> None:
    old = k()
    new = k(version="2", fields=A + '\nb = { tag = 4, type = "str", since = 2 }\n' + COLOUR + "\n" + AT)
    with pytest.raises(AssertionError, match=r"Work.b \[field-added-required; breaks backward\]"):
        assert_evolution(old, new, max_examples=EXAMPLES)
    with pytest.raises(AssertionError, match=r"old Work read by new Work: .* does not decode: Work.b: missing "
                                             r"required field \(tag 4\)"):
        assert_compatible(load_routes(old), load_routes(new), max_examples=EXAMPLES)


def test_a_change_of_meaning_under_the_same_tag_is_caught_even_when_it_decodes() -> None:
    # both sides decode (every int is a float), but int -> float -> int does not come back
    old, new = k(), k(fields=with_a('a = { tag = 1, type = "float" }'))
    with pytest.raises(AssertionError):
        assert_compatible(load_routes(old), load_routes(new), max_examples=EXAMPLES)
    assert_compatible(load_routes(old), load_routes(new), mode="backward", max_examples=EXAMPLES)
    assert_evolution(old, new, mode="backward", max_examples=EXAMPLES)


def test_a_removed_route_fails_the_backward_check() -> None:
    two = TEMPLATE.replace("WORK = 1", "WORK = 1\nPING = 2") + '\n[contracts.Ping]\nroute = "PING"\n'
    old = load_text(two.format(**{**BASE, "fields": STANDARD}), "k.toml", "k")
    with pytest.raises(AssertionError, match=r"route 2 \(Ping\) is gone from the new kernel"):
        assert_compatible(load_routes(old), load_routes(k()), max_examples=5)
    assert_compatible(load_routes(old), load_routes(k()), mode="forward", max_examples=5)
    with pytest.raises(ValueError, match="mode must be one of"):
        assert_compatible(load_routes(old), load_routes(k()), mode="both")
