"""Two services in one node: ``orders`` calls ``stock`` through a binding and tells it about
each order with an event.

Run it with ``python examples/two_services.py``. It serves ``orders`` over ``tcp://`` on a
free port of 127.0.0.1, places two orders through a client (the second asks for more than
is left and is refused), waits until ``stock`` has received the event of the first order,
and prints what happened::

    order 1: 3 apple, 2 left
    refused: CONFLICT: only 2 apple left
    stock heard of order 1

``stock`` is reached only through the binding the node gives ``orders``: ``{"stock": stock}``
makes each call a direct in-process call; ``{"stock": "tcp://host:port"}`` would send the
same calls over the network, with the same handler code.
"""

from __future__ import annotations

import asyncio
import itertools

from nanomsg_kernel import (
    Client,
    Context,
    Node,
    RemoteError,
    RoutingEnum,
    Service,
    ServiceError,
    Status,
    contract,
    evolve,
)


class ShopRoute(RoutingEnum):
    """The shop's kernel: one stable wire id per contract."""

    RESERVE = 1
    PLACE_ORDER = 2
    ORDER_PLACED = 3


@contract(ShopRoute.RESERVE)
class Reserve:
    """Take ``qty`` of ``item`` from the stock; the reply says how many are ``left``."""

    item: str
    qty: int
    left: int | None = None


@contract(ShopRoute.PLACE_ORDER)
class PlaceOrder:
    """An order from outside; the reply carries its ``order_id``."""

    item: str
    qty: int
    order_id: int | None = None
    left: int | None = None


@contract(ShopRoute.ORDER_PLACED)
class OrderPlaced:
    """Event: an order was placed."""

    order_id: int
    item: str
    qty: int


stock = Service("stock", ShopRoute)
orders = Service("orders", ShopRoute)

levels = {"apple": 5}
heard: list[OrderPlaced] = []
heard_one = asyncio.Event()
order_ids = itertools.count(1)


@stock.handler(Reserve)
async def reserve(msg: Reserve) -> Reserve:
    """Take the items, or refuse with ``CONFLICT`` when too few are left."""
    have = levels.get(msg.item, 0)
    if msg.qty > have:
        raise ServiceError(Status.CONFLICT, f"only {have} {msg.item} left")
    levels[msg.item] = have - msg.qty
    return evolve(msg, left=have - msg.qty)


@stock.subscribe(OrderPlaced)
def order_placed(event: OrderPlaced) -> None:
    """Remember each order placed."""
    heard.append(event)
    heard_one.set()


@orders.handler(PlaceOrder)
async def place_order(msg: PlaceOrder, ctx: Context) -> PlaceOrder:
    """Reserve the items through the ``stock`` binding, then announce the order."""
    reserved: Reserve = await ctx.bindings.stock.call(Reserve(item=msg.item, qty=msg.qty))
    order_id = next(order_ids)
    await ctx.bindings.stock.publish(OrderPlaced(order_id=order_id, item=msg.item, qty=msg.qty))
    return evolve(msg, order_id=order_id, left=reserved.left)


async def main() -> None:
    """Serve the node, place two orders, and wait for the event of the first."""
    node = Node("shop")
    node.add(stock)
    node.add(orders, bindings={"stock": stock}, listen=["tcp://127.0.0.1:0"])
    async with node:
        url = node.listeners[0].url
        async with Client(ShopRoute, url) as client:
            placed: PlaceOrder = await client.call(PlaceOrder(item="apple", qty=3), timeout=5.0)
            print(f"order {placed.order_id}: {placed.qty} {placed.item}, {placed.left} left")
            try:
                await client.call(PlaceOrder(item="apple", qty=3), timeout=5.0)
            except RemoteError as exc:
                print(f"refused: {exc.status.name}: {exc.message}")
        await asyncio.wait_for(heard_one.wait(), timeout=5.0)
        print(f"stock heard of order {heard[0].order_id}")


if __name__ == "__main__":
    asyncio.run(main())
