"""A kernel of every field type, and the outcome of one codec call, for comparing the compiled
codec with the pure one (tests/test_compiled_codec.py, tests/fuzz_compiled.py)."""

from __future__ import annotations

import datetime
import enum
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import msgpack

from nanomsg_kernel import RoutingEnum, contract, field, record, unknown_fields
from nanomsg_kernel.codec import Codec
from nanomsg_kernel.errors import NanomsgError, RemoteError


class Route(RoutingEnum):
    EVERY = 1
    NESTED = 2
    CHECKED = 3
    EMPTY = 4
    WIDE = 5
    FLAT = 6


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Perm(enum.IntFlag):
    R = 1
    W = 2


@record
class Leaf:
    n: int = 0
    s: str = ""


@record
class Branch:
    leaf: Leaf
    leaves: list[Leaf] = field(factory=list)
    by_name: dict[str, Leaf] = field(factory=dict)


@contract(Route.EVERY)
class Every:
    i: int = 0
    f: float = 0.0
    b: bool = False
    s: str = ""
    raw: bytes = b""
    when: datetime.datetime | None = None
    uid: uuid.UUID | None = None
    colour: Colour = Colour.RED
    level: Level = Level.LOW
    perm: Perm = Perm(0)
    ints: list[int] = field(factory=list)
    floats: tuple[float, ...] = ()
    pair: tuple[int, str] = (0, "")
    table: dict[int, str] = field(factory=dict)
    names: dict[str, float] = field(factory=dict)
    maybe: int | None = None


@contract(Route.NESTED)
class Nested:
    branch: Branch
    maybe: Branch | None = None
    many: list[Branch] = field(factory=list)
    pairs: tuple[Leaf, Level] | None = None


@contract(Route.CHECKED)
class Checked:
    n: int = field(validator=attrs.validators.ge(0))
    _hidden: str = field(kw_only=True, default="")
    count: int = field(kw_only=True, alias="c", default=0)


@contract(Route.EMPTY)
class Empty:
    pass


@contract(Route.WIDE)
class Wide:
    f1: int = 1
    f2: int = 2
    f3: int = 3
    f4: int = 4
    f5: int = 5
    f6: int = 6
    f7: int = 7
    f8: int = 8
    f9: int = 9
    f10: int = 10
    f11: int = 11
    f12: int = 12
    f13: int = 13
    f14: int = 14
    f15: int = 15
    f16: str = ""
    f17: Leaf | None = None


@contract(Route.FLAT)
class Flat:
    """Immutable fields only: an in-process call may share it as it is."""

    i: int = 0
    f: float = 0.0
    b: bool = False
    s: str = ""
    raw: bytes = b""
    uid: uuid.UUID | None = None
    colour: Colour = Colour.RED
    level: Level | None = Level.LOW


def codecs(**kw: Any) -> tuple[Codec, Codec]:
    """(compiled, pure) codecs of the kernel, with the same limits."""
    return Codec(Route, compiled=True, **kw), Codec(Route, compiled=False, **kw)


def _described(value: Any) -> Any:
    if attrs.has(type(value)):
        return (type(value).__name__, dict(unknown_fields(value, raw=True)),
                tuple(_described(getattr(value, a.name)) for a in attrs.fields(type(value))))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_described(x) for x in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, _described(v)) for k, v in value.items()))
    if isinstance(value, float) and value != value:
        return ("nan", msgpack.packb(value))
    return (type(value).__name__, value)


def outcome(call: Callable[[], Any]) -> Any:
    """What a codec call gives: its result, described deeply (types, unknown fields' bytes,
    NaN by its bits), or the type and text of the error it raised."""
    try:
        result = call()
    except RemoteError as exc:
        return ("remote", type(exc).__name__, exc.status, exc.message)
    except NanomsgError as exc:
        return ("error", type(exc).__name__, str(exc))
    if isinstance(result, tuple) and result and attrs.has(type(result[0])):  # decode_request
        return ("request", _described(result[0]), result[1:])
    return ("ok", _described(result))
