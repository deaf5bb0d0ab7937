"""A product catalogue kernel that exercises every supported field type."""

from __future__ import annotations

import datetime
import enum
import uuid

from nanomsg_kernel import RoutingEnum, contract, field, record


class CatalogRoute(RoutingEnum):
    """Routes of the catalogue kernel (stable wire ids)."""

    PUT_ITEM = 10
    GET_ITEM = 11
    ITEM_CHANGED = 12


class Colour(enum.Enum):
    """A string-valued enum."""

    RED = "red"
    GREEN = "green"
    BLUE = "blue"


@record
class Price:
    """An amount in minor units of a currency."""

    amount: int
    currency: str = "EUR"


@record
class Item:
    """One catalogue entry, with nested records and containers."""

    id: uuid.UUID
    name: str
    price: Price
    tags: list[str] = field(factory=list)
    dimensions: tuple[float, float, float] | None = None
    colours: tuple[Colour, ...] = ()
    stock: dict[str, int] = field(factory=dict)
    ratings: dict[int, float] = field(factory=dict)
    image: bytes = b""
    active: bool = True
    created: datetime.datetime | None = None
    variants: list[Price] = field(factory=list)


@contract(CatalogRoute.PUT_ITEM, reserved=[3])
class PutItem:
    """Store an item; the reply echoes it with ``revision`` set."""

    item: Item
    revision: int = 0
    note: str | None = field(default=None, tag=4)


@contract(CatalogRoute.GET_ITEM)
class GetItem:
    """Look an item up by id; the reply carries it in ``item``."""

    id: uuid.UUID
    item: Item | None = None


@contract(CatalogRoute.ITEM_CHANGED)
class ItemChanged:
    """Event: an item changed."""

    id: uuid.UUID
    revision: int
    at: datetime.datetime
