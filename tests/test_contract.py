"""Contracts, records and the routing enum: definition-time rules."""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Any

import attrs
import pytest

from contracts.calc import CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel import (
    ContractError,
    RoutingEnum,
    contract,
    contract_info,
    field,
    is_contract,
    record,
)


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


def test_contract_needs_a_routing_member() -> None:
    with pytest.raises(ContractError, match="needs a RoutingEnum member"):
        contract(1)  # type: ignore[arg-type]
