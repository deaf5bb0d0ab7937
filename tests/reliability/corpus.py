"""Hostile frames: a hand-made corpus of nasty frames and a fast deterministic mutator.

The corpus is what the reliability issue lists: truncated headers, declared body lengths of
0, the maximum, the maximum + 1 and 4 GiB (the largest a 32-bit length field holds), bad
magic and wire versions, unknown kinds and routes, deeply nested msgpack, huge declared
array/map/str/bin lengths, invalid UTF-8 and ext types. :func:`mutations` derives any number
of further frames from seeds (hypothesis-made frames, the corpus) with a seeded
:class:`random.Random`, so that 100,000 frames cost a second rather than minutes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings

from nanomsg_kernel.frame import HEADER_SIZE, MAGIC, WIRE_VERSION, Kind, pack_header
from nanomsg_kernel.testing import frames, mutated_frames

if TYPE_CHECKING:
    from nanomsg_kernel.routing import RoutingEnum

__all__ = ["hypothesis_frames", "mutations", "nasty_frames"]

U32_MAX = 0xFFFF_FFFF


def _frame(body: bytes, *, route: int = 2, kind: int = Kind.REQUEST, cid: int = 1, length: int | None = None) -> bytes:
    return pack_header(kind, route, 1, cid, 0, len(body) if length is None else length) + body


def _in_field(value: bytes) -> bytes:
    """A msgpack map ``{1: value}`` (``value`` already msgpack-encoded)."""
    return b"\x81\x01" + value


def nasty_frames(route: int, max_body: int, *, with_max_body: bool = True) -> list[tuple[str, bytes]]:
    """Named hand-made hostile frames aimed at ``route`` of a service taking ``max_body`` bytes.

    ``with_max_body=False`` leaves out the one frame whose body really is ``max_body`` bytes
    long (declared lengths of that size are always there).
    """
    good_body = b"\x81\x01\xa2hi"  # {1: "hi"}
    out: list[tuple[str, bytes]] = [("empty", b"")]
    ok = _frame(good_body, route=route)
    out += [(f"truncated header ({n} bytes)", ok[:n]) for n in range(1, HEADER_SIZE)]
    out += [
        ("header only, length 0", _frame(b"", route=route)),
        ("length 0 with a body after it", _frame(good_body, route=route, length=0)),
        ("declared maximum, body missing", _frame(b"", route=route, length=max_body)),
        ("declared maximum + 1", _frame(b"", route=route, length=max_body + 1)),
        ("declared 4 GiB", _frame(b"", route=route, length=U32_MAX)),
        ("declared 4 GiB with a body", _frame(good_body, route=route, length=U32_MAX)),
        ("body longer than declared", _frame(good_body, route=route, length=2)),
        ("body shorter than declared", _frame(good_body, route=route, length=64)),
        ("bad magic", b"XX" + ok[2:]),
        ("magic only", MAGIC),
        ("wire version 0", ok[:2] + b"\x00" + ok[3:]),
        ("wire version 2", ok[:2] + bytes([WIRE_VERSION + 1]) + ok[3:]),
        ("wire version 255", ok[:2] + b"\xff" + ok[3:]),
        ("unknown route 0", _frame(good_body, route=0)),
        ("unknown route 999", _frame(good_body, route=999)),
        ("unknown route 65535", _frame(good_body, route=0xFFFF)),
        ("response kind to a service", _frame(good_body, route=route, kind=Kind.RESPONSE)),
        ("error kind to a service", _frame(b"\x81\x01\x01", route=route, kind=Kind.ERROR)),
        ("event with a bad body", _frame(b"\xc1", route=route, kind=Kind.EVENT)),
        ("correlation id 2**64-1", _frame(good_body, route=route, cid=2**64 - 1)),
        ("all 0xff header", b"\xff" * HEADER_SIZE),
        ("all zero header", b"\x00" * HEADER_SIZE),
        ("nested arrays, depth 100,000", _frame(_in_field(b"\x91" * 100_000 + b"\xc0"), route=route)),
        ("nested maps, depth 100,000", _frame(b"\x81\x01" * 100_000 + b"\xc0", route=route)),
        ("array32 of 2**32-1 items declared", _frame(_in_field(b"\xdd\xff\xff\xff\xff"), route=route)),
        ("map32 of 2**32-1 pairs declared", _frame(b"\xdf\xff\xff\xff\xff", route=route)),
        ("str32 of 4 GiB declared", _frame(_in_field(b"\xdb\xff\xff\xff\xff"), route=route)),
        ("bin32 of 4 GiB declared", _frame(_in_field(b"\xc6\xff\xff\xff\xff"), route=route)),
        ("ext32 of 4 GiB declared", _frame(_in_field(b"\xc9\xff\xff\xff\xff\x05"), route=route)),
        ("array16 of 65535 nils (wrong type)", _frame(_in_field(b"\xdc\xff\xff" + b"\xc0" * 0xFFFF), route=route)),
        ("invalid UTF-8", _frame(_in_field(b"\xa2\xff\xfe"), route=route)),
        ("lone surrogate in UTF-8", _frame(_in_field(b"\xa3\xed\xa0\x80"), route=route)),
        ("overlong UTF-8", _frame(_in_field(b"\xa2\xc0\xaf"), route=route)),
        ("fixext1 type 5", _frame(_in_field(b"\xd4\x05\x00"), route=route)),
        ("ext8 type -1 bad timestamp", _frame(_in_field(b"\xc7\x03\xff\x00\x00\x00"), route=route)),
        ("ext type -128", _frame(_in_field(b"\xd5\x80\x00\x00"), route=route)),
        ("timestamp96 far future", _frame(_in_field(b"\xc7\x0c\xff" + b"\x00" * 4 + b"\x7f" + b"\xff" * 7), route=route)),
        ("reserved byte 0xc1", _frame(b"\xc1", route=route)),
        ("body is an array", _frame(b"\x91\x01", route=route)),
        ("body is nil", _frame(b"\xc0", route=route)),
        ("map with a str key", _frame(b"\x81\xa1a\x01", route=route)),
        ("map with a huge int key", _frame(b"\x81\xcf" + b"\xff" * 8 + b"\x01", route=route)),
        ("map with a float key", _frame(b"\x81\xcb" + b"\x00" * 8 + b"\x01", route=route)),
        ("map with a nil key", _frame(b"\x81\xc0\x01", route=route)),
        ("duplicate keys", _frame(b"\x82\x01\xa1a\x01\xa1b", route=route)),
        ("int where str expected", _frame(_in_field(b"\xcf" + b"\xff" * 8), route=route)),
        ("trailing bytes after the map", _frame(good_body + b"\x00\x00", route=route)),
        ("truncated msgpack", _frame(b"\x81\x01\xa5hi", route=route)),
        ("64 KiB of 0xff", _frame(b"\xff" * 65536, route=route)),
    ]
    if with_max_body:
        out.append(("body of exactly the maximum", _frame(b"\x81\x01\xdb" + (max_body - 7).to_bytes(4, "big")
                                                          + b"x" * (max_body - 7), route=route)))
    return out


def mutations(seeds: list[bytes], count: int, seed: int = 0) -> Iterator[bytes]:
    """``count`` frames, each a seed damaged by a few random edits (deterministic per ``seed``).

    Edits: overwrite bytes, truncate, append, splice in random bytes, set the body length,
    the kind, or the route to random values.
    """
    rng = random.Random(seed)
    randbytes, randrange = rng.randbytes, rng.randrange
    for _ in range(count):
        data = bytearray(seeds[randrange(len(seeds))])
        for _ in range(1 + randrange(3)):
            how = randrange(7)
            n = len(data)
            if how == 0 and n:
                for _ in range(1 + randrange(8)):
                    data[randrange(n)] = randrange(256)
            elif how == 1:
                del data[randrange(n + 1):]
            elif how == 2:
                data += randbytes(1 + randrange(64))
            elif how == 3:
                i = randrange(n + 1)
                data[i:i] = randbytes(randrange(33))
            elif how == 4 and n >= HEADER_SIZE:
                data[22:26] = rng.choice((0, 1, n - HEADER_SIZE, randrange(U32_MAX + 1))).to_bytes(4, "big")
            elif how == 5 and n >= HEADER_SIZE:
                data[3] = rng.choice((0, 1, 2, 3, 4, 5, randrange(256)))
            elif how == 6 and n >= HEADER_SIZE:
                data[4:6] = rng.choice((0, 1, 2, 3, randrange(65536))).to_bytes(2, "big")
        yield bytes(data)


def hypothesis_frames(routes: type[RoutingEnum], count: int) -> tuple[list[bytes], list[bytes]]:
    """``count`` valid frames (:func:`~nanomsg_kernel.testing.frames`) and ``count`` damaged
    ones (:func:`~nanomsg_kernel.testing.mutated_frames`) of ``routes``, drawn by hypothesis."""
    valid: list[bytes] = []
    damaged: list[bytes] = []

    @settings(max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(good=frames(routes), bad=mutated_frames(routes))
    def draw(good: bytes, bad: bytes) -> None:
        valid.append(good)
        damaged.append(bad)

    draw()
    return valid, damaged
