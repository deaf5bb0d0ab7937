"""Contracts, records and the routing enum: definition-time rules, and the generated
encode/decode functions (the fast path agrees with the general one)."""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanomsg_kernel import (
    ContractError,
    RoutingEnum,
    contract,
    contract_info,
    evolve,
    field,
    is_contract,
    record,
    unknown_fields,
)
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.contracts.catalog import CatalogRoute, Item, Price
from nanomsg_kernel.testing import strategy_for


def test_readme_example_shape() -> None:
    assert CalcRoute.CALC_WORK.contract is CalcWork
    assert CalcWork.route is CalcRoute.CALC_WORK
    info = contract_info(CalcWork)
    assert info.version == 2
    assert [(f.name, f.tag, f.since) for f in info.fields] == [
        ("a", 1, 1), ("b", 2, 1), ("op", 3, 1), ("result", 4, 1), ("precision", 5, 2),
    ]


def test_contract_is_frozen_slotted_attrs_class() -> None:
    w = CalcWork(a=1, b=2, op=WorkType.SUM)
    assert attrs.has(CalcWork)
    assert "__dict__" not in dir(w)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        w.a = 5  # type: ignore[misc]
    assert w == CalcWork(1, 2, WorkType.SUM)
    assert hash(w) == hash(CalcWork(1, 2, WorkType.SUM))
    assert repr(w) == "CalcWork(a=1, b=2, op=<WorkType.SUM: 1>, result=None, precision=0)"
    assert w.evolve(result=3).result == 3
    assert attrs.evolve(w, a=9).a == 9
    assert is_contract(w) and is_contract(CalcWork) and not is_contract(object())


def test_validators_run() -> None:
    class R(RoutingEnum):
        ONE = 1

    @contract(R.ONE)
    class Positive:
        n: int = field(validator=attrs.validators.ge(0))

    with pytest.raises(ValueError):
        Positive(n=-1)


def test_explicit_and_implicit_tags_and_reserved() -> None:
    class R(RoutingEnum):
        ONE = 1

    @contract(R.ONE, version=3, reserved=[2, 3])
    class M:
        a: int
        c: str = field(default="", tag=4)
        d: bool = False  # follows c: tag 5

    assert [(f.name, f.tag) for f in contract_info(M).fields] == [("a", 1), ("c", 4), ("d", 5)]
    assert contract_info(M).reserved == frozenset({2, 3})


def _kernel() -> Any:
    class R(RoutingEnum):
        ONE = 1
        TWO = 2

    return R


def test_duplicate_tag_is_refused() -> None:
    R = _kernel()
    with pytest.raises(ContractError, match=r"M\.b: tag 1 is already used by M\.a"):
        @contract(R.ONE)
        class M:
            a: int
            b: int = field(default=0, tag=1)


def test_reserved_tag_is_refused_with_hint() -> None:
    R = _kernel()
    with pytest.raises(ContractError, match=r"M\.b: tag 2 is reserved \(by declaration order"):
        @contract(R.ONE, reserved=[2])
        class M:
            a: int
            b: int


def test_second_contract_on_a_member_is_refused() -> None:
    R = _kernel()

    @contract(R.ONE)
    class A:
        x: int

    with pytest.raises(ContractError, match="R.ONE already has contract A"):
        @contract(R.ONE)
        class B:
            x: int


def test_validate_names_members_without_contract() -> None:
    R = _kernel()

    @contract(R.ONE)
    class A:
        x: int

    with pytest.raises(ContractError, match="no contract for TWO"):
        R.validate()
    with pytest.raises(ContractError, match="no contract for TWO"):
        R.codec()
    with pytest.raises(ContractError, match="R.TWO has no contract"):
        _ = R.TWO.contract


@pytest.mark.parametrize(
    "annotation, problem",
    [
        (set, "unsupported type set"),
        (list, "bare list needs element types"),
        (int | str, "unsupported union"),
        (dict[float, int], "dict keys must be str or int"),
        (datetime.date, "unsupported type date"),
        (object, "unsupported type object"),
    ],
)
def test_unsupported_types_name_class_and_field(annotation: Any, problem: str) -> None:
    R = _kernel()
    ns = {"__annotations__": {"bad": annotation}}
    cls = type("Holder", (), ns)
    with pytest.raises(ContractError, match=rf"Holder\.bad: {problem}"):
        contract(R.ONE)(cls)


def test_routed_contract_cannot_be_nested() -> None:
    R = _kernel()
    with pytest.raises(ContractError, match=r"Outer\.inner: Echo is a routed contract"):
        @contract(R.ONE)
        class Outer:
            inner: Echo


def test_reserved_field_names() -> None:
    R = _kernel()
    with pytest.raises(ContractError, match="field name 'route' is reserved"):
        @contract(R.ONE)
        class M:
            route: int


def test_since_newer_than_version() -> None:
    R = _kernel()
    with pytest.raises(ContractError, match="since=2 is newer than the class version 1"):
        @contract(R.ONE)
        class M:
            a: int = field(default=0, since=2)


def test_records_nest_and_support_all_types() -> None:
    class Kind(enum.Enum):
        A = "a"

    @record
    class Inner:
        when: datetime.datetime
        ident: uuid.UUID

    @record(reserved=[1])
    class Outer:
        items: list[Inner] = field(tag=2, factory=list)
        kinds: tuple[Kind, ...] = ()
        table: dict[int, bytes] = field(factory=dict)
        pair: tuple[int, float] | None = None

    assert contract_info(Outer).route is None
    assert [f.spec.describe() for f in contract_info(Outer).fields] == [
        "list[Inner]", "tuple[Kind, ...]", "dict[int, bytes]", "optional[tuple[int, float]]",
    ]


def test_route_value_must_fit_u16() -> None:
    class Big(RoutingEnum):
        HUGE = 70000

    with pytest.raises(ContractError, match="route ids are 0 to 65535"):
        @contract(Big.HUGE)
        class M:
            a: int


def test_route_ids_of_the_builtin_contracts_are_reserved() -> None:
    class High(RoutingEnum):
        TOP = 0xFF00

    with pytest.raises(ContractError, match="reserved for the built-in contracts"):
        @contract(High.TOP)
        class M:
            a: int


def test_contract_needs_a_routing_member() -> None:
    with pytest.raises(ContractError, match="needs a RoutingEnum member"):
        contract(1)  # type: ignore[arg-type]


# -- the generated fast functions agree with the general ones ------------------------------

LAYOUT_CLASSES = [*CalcRoute.contracts().values(), *CatalogRoute.contracts().values(), Item, Price]

# Values that are right or wrong for every field type somewhere: ints in and out of 64-bit
# range, bools, floats, text, bytes, None, arrays and maps (as msgpack would give them).
WIRE_VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=False),
        st.text(max_size=8), st.binary(max_size=17), st.sampled_from([1, 2, 3, 4, 16, "red", 2**63, -(2**63) - 1]),
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.integers(0, 12) | st.text(max_size=3), inner, max_size=4),
    max_leaves=10,
)


def _outcome(fn: Any, arg: Any) -> tuple[str, Any]:
    try:
        out = fn(arg)
    except Exception as exc:
        return ("raised", (type(exc), str(exc)))
    if is_contract(out):
        return ("object", (out, unknown_fields(out)))
    return ("map", out)


EDGES = st.sampled_from([2**63, -(2**63) - 1, 2**64, 2**63 - 1, -(2**63), True, 1.0, "1", b"1", None, [], {}, 9, "red"])


@st.composite
def _maps(draw: st.DrawFn) -> tuple[type, dict[Any, Any]]:
    """A class and the map of one of its instances, possibly damaged: a value replaced by an
    edge case or a random wire value, a field dropped, an unknown tag added."""
    cls = draw(st.sampled_from(LAYOUT_CLASSES))
    m = dict(contract_info(cls).to_map(draw(strategy_for(cls, max_size=3))))
    for damage in draw(st.lists(st.sampled_from(["replace", "drop", "unknown"]), max_size=2)):
        if damage == "replace":
            m[draw(st.sampled_from(sorted(m, key=repr) or [1]))] = draw(EDGES | WIRE_VALUES)
        elif damage == "drop" and m:
            del m[draw(st.sampled_from(sorted(m, key=repr)))]
        elif damage == "unknown":
            m[draw(st.integers(1, 40) | st.text(max_size=2))] = draw(WIRE_VALUES)
    return cls, m


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(_maps())
def test_fast_and_general_from_map_agree(case: tuple[type, dict[Any, Any]]) -> None:
    cls, m = case
    layout = contract_info(cls).layout
    assert _outcome(layout.from_map, m) == _outcome(layout.general_from_map, m)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fast_and_general_to_map_agree(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(LAYOUT_CLASSES))
    msg = data.draw(strategy_for(cls, max_size=3))
    layout = contract_info(cls).layout
    assert _outcome(layout.to_map, msg) == _outcome(layout.general_to_map, msg)
    # attrs does not check types on construction: put a random value in one field
    name = data.draw(st.sampled_from([f.name for f in contract_info(cls).fields]))
    bad = attrs.evolve(msg, **{name: data.draw(EDGES | WIRE_VALUES | st.sampled_from([WorkType.SUM, CalcRoute.ECHO]))})
    assert _outcome(layout.to_map, bad) == _outcome(layout.general_to_map, bad)


def test_fast_path_taken_for_complete_maps_and_general_for_the_rest() -> None:
    layout = contract_info(CalcWork).layout
    w = CalcWork(a=1, b=-(2**63), op=WorkType.DIV, result=2**63 - 1, precision=3)
    assert layout.from_map(layout.to_map(w)) == w
    assert layout.to_map(w) == {1: 1, 2: -(2**63), 3: 4, 4: 2**63 - 1, 5: 3}
    assert "def from_map(m):" in layout.source and "def _general_from_map(m):" in layout.source
    # a missing default field and an unknown tag go through the general function
    assert layout.from_map({1: 1, 2: 2, 3: 1}) == CalcWork(1, 2, WorkType.SUM)
    kept = layout.from_map({1: 1, 2: 2, 3: 1, 4: None, 5: 0, 9: "x"})
    assert unknown_fields(kept) == {9: "x"} and layout.to_map(kept)[9] == "x"
    with pytest.raises(Exception, match=r"CalcWork\.b: expected int \(64-bit signed\)"):
        layout.from_map({1: 1, 2: 2**63, 3: 1, 4: None, 5: 0})


def test_validators_converters_and_post_init_run_on_both_decode_paths() -> None:
    class R(RoutingEnum):
        ONE = 1

    seen: list[int] = []

    @contract(R.ONE)
    class Checked:
        n: int = field(validator=attrs.validators.ge(0))
        label: str = field(default="x", converter=str.upper)

        def __attrs_post_init__(self) -> None:
            seen.append(self.n)

    layout = contract_info(Checked).layout
    assert layout.from_map({1: 5, 2: "ab"}) == Checked(n=5, label="AB")  # fast path (complete)
    assert layout.from_map({1: 6}) == Checked(n=6)  # general path (default)
    assert layout.from_map({1: 6}).label == "X"
    assert seen[:3] == [5, 5, 6]
    for m in ({1: -1, 2: "ab"}, {1: -1}):
        with pytest.raises(ValueError, match="must be >= 0"):
            layout.from_map(m)


# -- evolve: generated per class, the same results and errors as attrs.evolve ------------


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_evolve_matches_attrs_evolve(data: st.DataObject) -> None:
    w = data.draw(strategy_for(CalcWork))
    names = data.draw(st.sets(st.sampled_from(["a", "b", "op", "result", "precision"])))
    changes = {n: getattr(data.draw(strategy_for(CalcWork)), n) for n in names}
    expected = attrs.evolve(w, **changes)
    for got in (evolve(w, **changes), w.evolve(**changes)):
        assert type(got) is CalcWork and got == expected and got is not w
    assert w == attrs.evolve(w)  # the original is untouched


def test_evolve_is_generated_per_class() -> None:
    assert CalcWork.evolve is CalcWork.__nk_evolve__  # type: ignore[attr-defined]
    assert CalcWork.evolve is not Echo.evolve
    assert CalcWork.evolve.__qualname__ == "CalcWork.evolve"
    assert Item.evolve.__qualname__ == "Item.evolve" and Price.evolve.__qualname__ == "Price.evolve"


def test_evolve_refuses_unknown_and_positional_arguments() -> None:
    w = CalcWork(a=1, b=2, op=WorkType.SUM)
    with pytest.raises(TypeError):
        attrs.evolve(w, nope=1)
    for call in (lambda: evolve(w, nope=1), lambda: w.evolve(nope=1), lambda: w.evolve(3),  # type: ignore[misc]
                 lambda: evolve(w, route=CalcRoute.ECHO), lambda: evolve(w, _nk_unknown={9: 1})):
        with pytest.raises(TypeError, match="unexpected keyword argument|positional argument"):
            call()


def test_evolve_runs_validators_converters_and_post_init() -> None:
    class R(RoutingEnum):
        ONE = 1

    seen: list[int] = []

    @contract(R.ONE)
    class Checked:
        n: int = field(validator=attrs.validators.ge(0))
        label: str = field(default="x", converter=str.upper)
        size: int = field(default=0, kw_only=True)

        def __attrs_post_init__(self) -> None:
            seen.append(self.n)

    c = Checked(n=1, label="ab")
    seen.clear()
    first, second = evolve(c, label="cd"), c.evolve(n=4, size=2)
    assert seen == [1, 4]  # post-init ran for both copies
    assert first == Checked(n=1, label="CD") == attrs.evolve(c, label="cd")
    assert second == Checked(n=4, label="AB", size=2)
    for call in (lambda: evolve(c, n=-1), lambda: c.evolve(n=-1), lambda: attrs.evolve(c, n=-1)):
        with pytest.raises(ValueError, match="must be >= 0"):
            call()


def test_evolve_takes_aliases_like_attrs() -> None:
    @record
    class Private:
        _secret: int
        shown: int = field(default=0, alias="visible")

    p = Private(secret=1, visible=2)
    assert evolve(p, secret=5) == attrs.evolve(p, secret=5) == Private(secret=5, visible=2)
    assert p.evolve(visible=7).shown == 7
    with pytest.raises(TypeError):
        attrs.evolve(p, _secret=5)
    with pytest.raises(TypeError):
        evolve(p, _secret=5)
    with pytest.raises(TypeError):
        p.evolve(shown=5)


def test_evolve_keeps_unknown_fields_once_any_were_decoded() -> None:
    class R(RoutingEnum):
        ONE = 1

    @contract(R.ONE)
    class Relay:
        a: int
        b: str = ""

    plain = Relay(a=1)
    assert unknown_fields(evolve(plain, a=2)) == {}  # before any unknown field was seen
    layout = contract_info(Relay).layout
    newer = layout.from_map({1: 1, 2: "x", 7: [1, 2]})
    assert unknown_fields(newer) == {7: [1, 2]}
    for copy in (evolve(newer, a=2), newer.evolve(b="y"), newer.evolve().evolve(a=3)):
        assert unknown_fields(copy) == {7: [1, 2]}
        assert layout.to_map(copy)[7] == [1, 2]
    assert evolve(newer, a=2) == Relay(a=2, b="x")
    assert unknown_fields(evolve(plain, a=2)) == {}  # an object without extras stays without


def test_evolve_of_a_subclass_keeps_the_subclass() -> None:
    class Sub(CalcWork):
        pass

    s = Sub(a=1, b=2, op=WorkType.SUM)
    for got in (evolve(s, a=5), s.evolve(a=5), attrs.evolve(s, a=5)):
        assert type(got) is Sub and got.a == 5 and got.b == 2


def test_evolve_of_a_plain_attrs_class_is_attrs_evolve() -> None:
    @attrs.frozen
    class Plain:
        x: int

    assert evolve(Plain(1), x=2) == Plain(2)
    with pytest.raises(TypeError):
        evolve(Plain(1), y=2)
