"""The compiled ``evolve`` against the generated one (the reference): equal copies that share
the same values and unknown fields, and the same error for every bad call."""

from __future__ import annotations

import gc
import sys
from typing import Any

import attrs
import msgpack
import pytest
from differential import Branch, Checked, Empty, Every, Flat, Leaf, Nested, Route, Wide, codecs, outcome
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nanomsg_kernel
from nanomsg_kernel import Kind, evolve, unknown_fields
from nanomsg_kernel.contract import _pure_evolve
from nanomsg_kernel.contracts.calc import CalcWork, WorkType
from nanomsg_kernel.frame import pack_header
from nanomsg_kernel.native import speedups
from nanomsg_kernel.testing import strategy_for

if speedups is None:  # a machine without a compiler, or the pure pass of CI
    pytest.skip("the compiled extension is not built, or NANOMSG_KERNEL_PURE is set", allow_module_level=True)

SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
PLAIN = (Every, Nested, Wide, Flat, Empty, Leaf, Branch)
_, pure_codec = codecs()


def _fields(cls: type) -> list[str]:
    return [a.alias or a.name for a in attrs.fields(cls)]


def same_copy(a: Any, b: Any, original: Any, changes: dict[str, Any]) -> None:
    """``a`` and ``b`` are equal copies of ``original`` with ``changes``, sharing every value."""
    assert type(a) is type(b) is type(original)
    assert a == b and a is not original
    for f in attrs.fields(type(a)):
        assert getattr(a, f.name) is getattr(b, f.name)
        expected = changes[f.alias or f.name] if (f.alias or f.name) in changes else getattr(original, f.name)
        assert getattr(a, f.name) is expected
    assert dict(unknown_fields(a, raw=True)) == dict(unknown_fields(b, raw=True))


def test_plain_contracts_get_the_compiled_evolve_and_others_keep_theirs() -> None:
    for cls in (*PLAIN, CalcWork):
        assert type(cls.evolve).__name__ == "Evolver", cls
        assert cls.__nk_evolve__ is cls.evolve  # type: ignore[attr-defined]
        assert cls.evolve.__wrapped__.__qualname__ == f"{cls.__qualname__}.evolve"
    assert type(Checked.evolve).__name__ == "function"  # a validator: built by calling the class
    assert type(evolve).__name__ == "builtin_function_or_method" and evolve is nanomsg_kernel.evolve


@st.composite
def evolutions(draw: st.DrawFn) -> tuple[Any, dict[str, Any]]:
    """An object of a plain class and some changes (values of other objects of the class)."""
    cls = draw(st.sampled_from(PLAIN))
    msg, other = draw(strategy_for(cls)), draw(strategy_for(cls))
    names = draw(st.lists(st.sampled_from(_fields(cls)), unique=True)) if _fields(cls) else []
    changes = {n: getattr(other, attrs.fields_dict(cls)[n].name) for n in names}
    return msg, changes


@SETTINGS
@given(evolutions())
def test_the_same_copy_as_the_generated_evolve(case: tuple[Any, dict[str, Any]]) -> None:
    msg, changes = case
    reference = type(msg).evolve.__wrapped__(msg, **changes)
    same_copy(type(msg).evolve(msg, **changes), reference, msg, changes)
    same_copy(msg.evolve(**changes), reference, msg, changes)
    same_copy(evolve(msg, **changes), _pure_evolve(msg, **changes), msg, changes)


def test_unknown_fields_are_shared_when_objects_of_the_class_carry_them() -> None:
    body = msgpack.packb({1: 5, 99: [1, 2]})  # Every from a newer kernel: tag 99 is unknown here
    msg = pure_codec.decode(pack_header(Kind.REQUEST, int(Route.EVERY), 1, 1, 0, len(body)) + body)
    extra = dict(unknown_fields(msg, raw=True))
    assert list(extra) == [99]
    for copy in (evolve(msg, s="x"), msg.evolve(i=7), _pure_evolve(msg, s="x")):
        assert dict(unknown_fields(copy, raw=True)) == extra
        assert pure_codec.encode_body(copy).endswith(msgpack.packb(99) + msgpack.packb([1, 2]))
    assert not unknown_fields(evolve(Every(), i=1))


def failure(call: Any) -> Any:
    """What a call gives: :func:`outcome`, or the type and text of any exception it raised."""
    try:
        return outcome(call)
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc))


def _unset() -> Any:
    return object.__new__(Every)  # its slots were never filled


BAD_CALLS = {
    "an unknown keyword": lambda f: f(Every(), nope=1),
    "a positional change": lambda f: f(Every(), 1),
    "no object": lambda f: f(),
    "a subclass's object": lambda f: f(type("Sub", (Every,), {"__slots__": ()})(), i=1),
    "an object of another class": lambda f: f(Flat(), i=1),
    "an object whose slots were never filled": lambda f: f(_unset(), i=1),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_a_bad_call_fails_as_the_generated_evolve_fails(case: str) -> None:
    call = BAD_CALLS[case]
    assert failure(lambda: call(Every.evolve)) == failure(lambda: call(Every.evolve.__wrapped__))


@pytest.mark.parametrize("case", ["an unknown keyword", "a positional change", "no object",
                                  "an object whose slots were never filled"])
def test_the_module_evolve_fails_as_the_pure_one(case: str) -> None:
    call = BAD_CALLS[case]
    assert failure(lambda: call(evolve)) == failure(lambda: call(_pure_evolve))


def test_the_module_evolve_takes_any_attrs_object_as_the_pure_one() -> None:
    @attrs.frozen
    class Plain:
        n: int

    assert evolve(Plain(1), n=2) == _pure_evolve(Plain(1), n=2) == Plain(2)
    assert failure(lambda: evolve(5, n=1)) == failure(lambda: _pure_evolve(5, n=1))
    assert Checked(n=1).evolve(n=2) == evolve(Checked(n=1), n=2) == Checked(n=2)
    assert failure(lambda: evolve(Checked(n=1), n=-1)) == failure(lambda: _pure_evolve(Checked(n=1), n=-1))


def test_many_copies_hold_no_reference_they_should_not() -> None:
    msg = CalcWork(a=6, b=7, op=WorkType.MULT)
    value = 10**30  # a fresh int, counted below
    before = sys.getrefcount(value), sys.getrefcount(msg.op)
    copies = [evolve(msg, result=value) for _ in range(1000)]
    assert sys.getrefcount(value) == before[0] + 1000
    del copies
    gc.collect()
    assert (sys.getrefcount(value), sys.getrefcount(msg.op)) == before
