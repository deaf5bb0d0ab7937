"""What decoding one frame costs in memory: peak growth (``tracemalloc``) over the frame's size.

Hostile bodies of one-byte empty maps, in a known ``list[Record]`` field and under an
unknown tag, past the default object budget (refused) and just inside it (decoded, the
worst case the budget allows); and, for comparison, a well-formed frame of the same size.

Run: ``python -m benchmarks.decode_memory``.
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import attrs
import msgpack

from nanomsg_kernel import Kind, RoutingEnum, contract, record
from nanomsg_kernel.frame import pack_header


class MemRoute(RoutingEnum):
    """The measured kernel."""

    LISTING = 1


@record
class Entry:
    """A record of one int field."""

    x: int = 0


@contract(MemRoute.LISTING)
class Listing:
    """A list of records and a list of ints."""

    items: list[Entry] = attrs.Factory(list)
    numbers: list[int] = attrs.Factory(list)


def _frame(body: bytes) -> bytes:
    return pack_header(Kind.REQUEST, 1, 1, 1, 0, len(body)) + body


def _maps(tag: int, n: int) -> bytes:
    """``{tag: [{}, {}, ...]}``: ``n`` one-byte empty maps."""
    return b"\x81" + msgpack.packb(tag) + b"\xdd" + struct.pack(">I", n) + b"\x80" * n


def _peak(fn: Callable[[], Any]) -> tuple[int, str]:
    tracemalloc.start()
    try:
        try:
            fn()
            outcome = "decoded"
        except Exception as exc:
            outcome = type(exc).__name__
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


def run() -> list[tuple[str, int, int, str]]:
    """``(case, frame bytes, peak growth bytes, outcome)`` for each case."""
    codec = MemRoute.codec()
    budget = codec.max_objects
    legit = Listing(numbers=list(range(1000, 1000 + budget // 2)))
    cases = {
        "2.9 MiB of empty maps, known list[Entry] field": _frame(_maps(1, 3_000_000)),
        "2.9 MiB of empty maps, unknown tag": _frame(_maps(9, 3_000_000)),
        f"{budget - 8:,} empty maps (inside the budget), known field": _frame(_maps(1, budget - 8)),
        f"{budget - 8:,} empty maps (inside the budget), unknown tag": _frame(_maps(9, budget - 8)),
        f"well-formed: {budget // 2:,} ints": codec.encode(legit),
    }
    out = []
    for name, frame in cases.items():
        peak, outcome = _peak(lambda frame=frame: codec.decode(frame))  # type: ignore[misc]
        out.append((name, len(frame), peak, outcome))
    return out


def main() -> None:
    """Print the table."""
    codec = MemRoute.codec()
    print(f"max_body_size {codec.max_body_size:,} bytes, max_objects {codec.max_objects:,}")
    print(f"{'case':58s}{'frame':>12s}{'peak growth':>14s}{'x frame':>9s}  outcome")
    for name, size, peak, outcome in run():
        print(f"{name:58s}{size:12,d}{peak:14,d}{peak / size:9.2f}  {outcome}")


if __name__ == "__main__":
    main()
