"""A local binding behaves like the wire: the same checks each way, nothing mutable shared."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest

from nanomsg_kernel import (
    Client,
    EncodeError,
    LocalBinding,
    RemoteError,
    RoutingEnum,
    Service,
    Status,
    contract,
    record,
)


class ShopRoute(RoutingEnum):
    RESERVE = 1
    NOTE = 2


@record
class Line:
    sku: str
    tags: list[str] = attrs.Factory(list)


@contract(ShopRoute.RESERVE)
class Reserve:
    qty: int
    items: list[int] = attrs.Factory(list)
    lines: dict[str, Line] = attrs.Factory(dict)
    total: int | None = None


@contract(ShopRoute.NOTE)
class Note:
    text: str


_urls = itertools.count()


def make_service(handler: Callable[[Reserve], Awaitable[Reserve]]) -> Service:
    service = Service("shop", ShopRoute)
    service.handler(Reserve)(handler)
    return service


async def both_ways(service: Service, msg: Any) -> tuple[Any, Any]:
    """The outcome of ``msg`` through a binding and over inproc:// (a reply or an exception)."""
    outcomes: list[Any] = []
    binding = LocalBinding("shop", service)
    url = f"inproc://binding-wire-{next(_urls)}"
    async with service.serve(url), Client(ShopRoute, url) as client:
        for call in (binding.call, client.call):
            try:
                outcomes.append(await call(msg, timeout=5.0))
            except Exception as exc:
                outcomes.append(exc)
    return outcomes[0], outcomes[1]


def test_a_request_the_encoder_refuses_is_refused_through_a_binding() -> None:
    reached: list[Reserve] = []

    async def handle(msg: Reserve) -> Reserve:
        reached.append(msg)
        return msg

    for bad in (Reserve(qty="2"), Reserve(qty=2**63), Reserve(qty=1, items=[1, "x"]),  # type: ignore[arg-type, list-item]
                Reserve(qty=1, lines={"a": Line(sku="\ud800")})):
        local, wire = asyncio.run(both_ways(make_service(handle), bad))
        assert isinstance(local, EncodeError) and isinstance(wire, EncodeError), (local, wire)
        assert str(local) == str(wire)
    assert reached == []


def test_a_reply_the_encoder_refuses_is_internal_through_a_binding() -> None:
    async def handle(msg: Reserve) -> Reserve:
        return msg.evolve(total=2**64)

    local, wire = asyncio.run(both_ways(make_service(handle), Reserve(qty=1)))
    assert isinstance(local, RemoteError) and isinstance(wire, RemoteError)
    assert local.status is wire.status is Status.INTERNAL
    assert local.message == wire.message and "Reserve.total" in local.message


def test_the_callee_and_the_caller_share_nothing_mutable() -> None:
    seen: list[Reserve] = []

    async def handle(msg: Reserve) -> Reserve:
        msg.items.append(99)
        msg.lines["a"].tags.append("callee")
        seen.append(msg)
        return msg

    async def run() -> tuple[Reserve, Reserve]:
        request = Reserve(qty=1, items=[1], lines={"a": Line(sku="a")})
        reply = await LocalBinding("shop", make_service(handle)).call(request)
        return request, reply

    request, reply = asyncio.run(run())
    assert request.items == [1] and request.lines["a"].tags == []
    assert reply.items == [1, 99] and reply.lines["a"].tags == ["callee"]
    reply.items.append(100)
    assert seen[0].items == [1, 99]


def test_immutable_messages_are_handed_over_as_they_are() -> None:
    codec = ShopRoute.codec()
    flat = Reserve(qty=3)
    assert codec.isolate(flat) is not flat  # it holds lists
    note = Note(text="plain")
    assert codec.isolate(note) is note
    unicode = Note(text="ünïcode")
    assert codec.isolate(unicode) == unicode
    with pytest.raises(EncodeError):
        codec.isolate(Note(text="\ud800"))
    with pytest.raises(EncodeError, match="not a contract of ShopRoute"):
        codec.isolate(Line(sku="x"))


def test_an_int_subclass_arrives_as_an_int_both_ways() -> None:
    class Qty(int):
        pass

    async def handle(msg: Reserve) -> Reserve:
        assert type(msg.qty) is int
        return msg

    local, wire = asyncio.run(both_ways(make_service(handle), Reserve(qty=Qty(4))))
    assert local == wire == Reserve(qty=4)
    assert type(local.qty) is type(wire.qty) is int
