"""What a type checker knows of the public calls (checked by tests/test_docs_types.py).

Not run: ``mypy --strict`` reads it. ``assert_type`` fails the check when a call's type is
not the one written, and each ``# type: ignore[code]`` marks a line that must stay an error
(strict mode reports an ignore that is no longer needed).
"""

from __future__ import annotations

from typing import assert_type

from nanomsg_kernel import (
    Binding,
    Client,
    Context,
    LocalBinding,
    Message,
    RemoteBinding,
    Request,
    RoutingEnum,
    Service,
    SyncClient,
    contract,
    evolve,
)


class ShopRoute(RoutingEnum):
    RESERVE = 1
    RESERVED = 2
    PING = 3
    LOOKUP = 4


@contract(ShopRoute.RESERVED)
class Reserved(Message):
    sku: str
    qty: int


@contract(ShopRoute.RESERVE)
class Reserve(Request[Reserved]):
    """Answered by a :class:`Reserved`, not by an evolved copy of itself."""

    sku: str
    qty: int


@contract(ShopRoute.PING)
class Ping:
    """No base class: answered by an evolved copy of itself (the default)."""

    n: int
    pong: int | None = None


@contract(ShopRoute.LOOKUP)
class Lookup(Request["Reserved | Ping"]):
    """Answered by one of two contracts."""

    sku: str


shop = Service("shop", ShopRoute, max_workers=4)


@shop.handler(Ping)
def ping(msg: Ping, ctx: Context) -> Ping:
    assert_type(ctx.time_left(), float | None)
    ctx.logger.info("ping %d", msg.n)
    reserved = ctx.bindings.stock.call_sync(Reserve(sku="a", qty=1))
    assert_type(reserved, Reserved)
    assert_type(ctx.bindings.stock.call_sync(msg), Ping)
    return evolve(msg, pong=msg.n)


@shop.handler(Reserve)
async def reserve(msg: Reserve, ctx: Context) -> Reserved:
    assert_type(await ctx.bindings.stock.call(msg), Reserved)
    assert_type(await ctx.bindings["stock"].call(Ping(n=1), timeout=1.0), Ping)
    assert_type(await ctx.bindings.stock.call(Lookup(sku="a")), Reserved | Ping)
    await ctx.bindings.stock.publish(Ping(n=2))
    return Reserved(sku=msg.sku, qty=msg.qty)


async def calls(client: Client, binding: Binding, local: LocalBinding, remote: RemoteBinding) -> None:
    assert_type(await client.call(Reserve(sku="a", qty=1)), Reserved)
    assert_type(await client.call(Reserve(sku="a", qty=1), timeout=0.5), Reserved)
    assert_type(await client.call(Ping(n=1)), Ping)
    assert_type(await client.call(Lookup(sku="a")), Reserved | Ping)
    assert_type(await binding.call(Reserve(sku="a", qty=1)), Reserved)
    assert_type(await binding.call(Ping(n=1), deadline=10.0), Ping)
    assert_type(await local.call(Reserve(sku="a", qty=1)), Reserved)
    assert_type(await remote.call(Ping(n=1)), Ping)
    async with Client(ShopRoute, "inproc://shop") as conn:
        assert_type(conn, Client)
        got = await conn.call(Reserve(sku="a", qty=1))
        wrong: Reserve = got  # type: ignore[assignment]
        del wrong
        await conn.publish(Ping(n=3))


def sync_calls() -> None:
    with SyncClient(ShopRoute, "tcp://127.0.0.1:7000", timeout=1.0) as client:
        assert_type(client, SyncClient)
        assert_type(client.call(Reserve(sku="a", qty=1)), Reserved)
        assert_type(client.call(Ping(n=1), timeout=0.5), Ping)
        assert_type(client.call(Lookup(sku="a")), Reserved | Ping)
        assert_type(client.publish(Ping(n=3)), None)


def evolving(r: Reserved, p: Ping) -> None:
    assert_type(r.evolve(qty=2), Reserved)
    assert_type(evolve(r, qty=2), Reserved)
    assert_type(evolve(p, pong=1), Ping)
    p.evolve(pong=1)  # type: ignore[attr-defined]
