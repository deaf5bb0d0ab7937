"""The in-memory test harness: a node's services called without sockets, their events
captured, their bindings faked."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from nanomsg_kernel import (
    CapabilityError,
    ConfigError,
    Context,
    DeadlineExceeded,
    Message,
    Node,
    RemoteError,
    RoutingEnum,
    Service,
    ServiceError,
    Status,
    contract,
    field,
)
from nanomsg_kernel.harness import BindingCall, Harness


class ShopRoute(RoutingEnum):
    RESERVE = 1
    PLACE_ORDER = 2
    ORDER_PLACED = 3
    CHARGE = 4


@contract(ShopRoute.RESERVE)
class Reserve(Message):
    item: str
    qty: int
    left: int | None = None


@contract(ShopRoute.PLACE_ORDER)
class PlaceOrder(Message):
    item: str
    qty: int
    tags: list[str] = field(factory=list)
    order_id: int | None = None


@contract(ShopRoute.ORDER_PLACED)
class OrderPlaced(Message):
    order_id: int
    item: str


@contract(ShopRoute.CHARGE)
class Charge(Message):
    order_id: int
    paid: bool = False


def make_shop() -> tuple[Node, Service, Service]:
    stock = Service("stock", ShopRoute)
    orders = Service("orders", ShopRoute)
    levels = {"apple": 5}
    heard: list[int] = []

    @stock.handler(Reserve)
    def reserve(msg: Reserve) -> Reserve:  # a sync handler: runs in the service's threads
        if levels.get(msg.item, 0) < msg.qty:
            raise ServiceError(Status.CONFLICT, f"only {levels.get(msg.item, 0)} {msg.item} left")
        levels[msg.item] -= msg.qty
        return msg.evolve(left=levels[msg.item])

    @stock.subscribe(OrderPlaced)
    async def placed(event: OrderPlaced) -> None:
        heard.append(event.order_id)

    @orders.handler(PlaceOrder)
    async def place(msg: PlaceOrder, ctx: Context) -> PlaceOrder:
        if msg.qty > 100:
            await asyncio.Event().wait()  # stuck: the caller's deadline ends it
        await ctx.bindings.stock.call(Reserve(item=msg.item, qty=msg.qty))
        charged = await ctx.bindings.payments.call(Charge(order_id=7))
        if not charged.paid:
            raise ServiceError(Status.CONFLICT, "not paid")
        await ctx.bindings.stock.publish(OrderPlaced(order_id=7, item=msg.item))
        return msg.evolve(order_id=7, tags=[*msg.tags, "placed"])

    stock.heard = heard  # type: ignore[attr-defined]
    node = Node("shop")
    node.add(stock, listen=["tcp://127.0.0.1:7999"])
    node.add(orders, listen=["tcp://127.0.0.1:7998"],
             bindings={"stock": "tcp://127.0.0.1:7999", "payments": "tcp://payments.example:7000"})
    return node, orders, stock


async def test_calls_events_and_fakes_without_sockets() -> None:
    node, _orders, stock = make_shop()
    async with Harness(node) as h:
        h.fake("orders", "payments", lambda msg: msg.evolve(paid=True))
        done = await h.call(PlaceOrder(item="apple", qty=3, tags=["gift"]))
        assert (done.order_id, done.tags) == (7, ["gift", "placed"])
        # A URL binding to the node's own listener is a direct call to that service.
        assert h.calls_to("orders", "stock") == [Reserve(item="apple", qty=3)]
        assert h.calls_to("orders", "payments") == [Charge(order_id=7)]
        assert h.events(OrderPlaced) == [OrderPlaced(order_id=7, item="apple")]
        assert h.published == [BindingCall("orders", "stock", OrderPlaced(order_id=7, item="apple"))]
        assert stock.heard == [7]  # type: ignore[attr-defined]
        # Errors arrive as a client's would.
        with pytest.raises(RemoteError) as err:
            await h.call(PlaceOrder(item="apple", qty=3))
        assert (err.value.status, err.value.message) == (Status.CONFLICT, "only 2 apple left")
        with pytest.raises(DeadlineExceeded):
            await h.call(PlaceOrder(item="apple", qty=1000), timeout=0.05)
        # An event from the test reaches every subscriber, and has run when publish returns.
        await h.publish(OrderPlaced(order_id=9, item="pear"))
        assert stock.heard == [7, 9]  # type: ignore[attr-defined]
        assert (await h.call(Reserve(item="apple", qty=1))).left == 1
    assert not node.listeners  # nothing listened


async def test_a_fake_service_or_an_async_fake_that_refuses() -> None:
    node, _orders, _stock = make_shop()
    payments = Service("fake-payments", ShopRoute)
    charged: list[Charge] = []

    @payments.handler(Charge)
    async def charge(msg: Charge) -> Charge:
        charged.append(msg)
        return msg.evolve(paid=True)

    async with Harness(node) as h:
        h.fake("orders", "payments", payments)
        assert (await h.call(PlaceOrder(item="apple", qty=1))).order_id == 7
        assert charged == [Charge(order_id=7)]

        async def declined(msg: Charge) -> Charge:
            raise ServiceError(Status.FORBIDDEN, "card declined")

        h.fake("orders", "payments", declined)  # replaced while running
        with pytest.raises(RemoteError) as err:
            await h.call(PlaceOrder(item="apple", qty=1))
        assert err.value.status is Status.FORBIDDEN and err.value.message == "card declined"


async def test_an_unfaked_remote_binding_says_how_to_fake_it() -> None:
    node, _orders, _stock = make_shop()
    async with Harness(node) as h:
        with pytest.raises(RemoteError) as err:  # the handler's CapabilityError: INTERNAL to the caller
            await h.call(PlaceOrder(item="apple", qty=1))
        assert err.value.status is Status.INTERNAL
        with pytest.raises(CapabilityError, match=r"harness.fake\('orders', 'payments', \.\.\.\)"):
            await h.node.services["orders"].bindings.payments.call(Charge(order_id=1))


async def test_a_single_service_with_bindings_and_usage_errors() -> None:
    _node, orders, stock = make_shop()
    async with Harness(stock) as h:
        assert (await h.call(Reserve(item="apple", qty=2))).left == 3
        with pytest.raises(ConfigError, match="no service of the node handles PlaceOrder"):
            await h.call(PlaceOrder(item="apple", qty=1))
        with pytest.raises(ConfigError, match="no binding 'nope'"):
            h.fake("stock", "nope", lambda m: m)
    h2 = Harness(orders, bindings={"stock": stock, "payments": "tcp://127.0.0.1:9"})
    with pytest.raises(ConfigError, match="not started"):
        await h2.call(PlaceOrder(item="apple", qty=1))
    with pytest.raises(ConfigError, match="not in the node"):
        await h2.start()
    with pytest.raises(ConfigError, match="a node has its own"):
        Harness(Node(), bindings={})


def test_the_harness_imports_without_hypothesis() -> None:
    script = ("import sys; sys.modules['hypothesis'] = None; "
              "from nanomsg_kernel.harness import Harness; from nanomsg_kernel import Harness as H; "
              "assert H is Harness; print('ok')")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout == "ok\n", proc.stderr
