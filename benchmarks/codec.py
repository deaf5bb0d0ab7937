"""Codec cost: encode, decode and round trip of a whole CalcWork frame (header + body, every
type check), by the compiled codec (when built) and the pure-Python one side by side, next to
raw msgpack of the equivalent dict and msgspec's msgpack Struct.

Run: ``python -m benchmarks.codec`` (add ``--quick`` for a shorter run).
"""

from __future__ import annotations

import argparse
import enum
import math
import time
import timeit
from collections.abc import Callable
from typing import Any

import msgpack

from nanomsg_kernel.codec import Codec
from nanomsg_kernel.compiled import available
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType


class Op(enum.IntEnum):
    """msgspec's copy of WorkType."""

    SUM = 1


try:
    import msgspec

    class Work(msgspec.Struct):
        """The msgspec equivalent of CalcWork."""

        a: int
        b: int
        op: Op
        result: int | None = None
        precision: int = 0

except ImportError:  # pragma: no cover - msgspec is in the test and bench extras
    msgspec = None  # type: ignore[assignment]


def _best_of(fns: dict[str, Callable[[], Any]], number: int, repeat: int) -> dict[str, float]:
    """Best of ``repeat`` runs of each function, in microseconds per call.

    The runs are interleaved (one run of every function, then the next round), so a burst of
    load from elsewhere on the machine hits all of them alike, and timed with the thread's CPU
    clock, so time the thread spends descheduled is not counted.
    """
    timers = {k: timeit.Timer(fn, timer=time.thread_time) for k, fn in fns.items()}
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeat):
        for k, t in timers.items():
            best[k] = min(best[k], t.timeit(number))
    return {k: v / number * 1e6 for k, v in best.items()}


def run(quick: bool = False) -> dict[str, float]:
    """Measure and return µs/op figures and ratios."""
    number, repeat = (10_000, 10) if quick else (10_000, 60)
    codec = CalcRoute.codec()
    work = CalcWork(a=1, b=2, op=WorkType.SUM)
    frame = codec.encode(work)
    as_dict = {"a": 1, "b": 2, "op": 1, "result": None, "precision": 0}
    packed = msgpack.packb(as_dict)
    pure = Codec(CalcRoute, compiled=False)
    fns: dict[str, Callable[[], Any]] = {
        "ours_encode_us": lambda: codec.encode(work),
        "ours_decode_us": lambda: codec.decode(frame),
        "ours_roundtrip_us": lambda: codec.decode(codec.encode(work)),
        "pure_encode_us": lambda: pure.encode(work),
        "pure_decode_us": lambda: pure.decode(frame),
        "pure_roundtrip_us": lambda: pure.decode(pure.encode(work)),
        "msgpack_encode_us": lambda: msgpack.packb(as_dict),
        "msgpack_decode_us": lambda: msgpack.unpackb(packed),
        "msgpack_roundtrip_us": lambda: msgpack.unpackb(msgpack.packb(as_dict)),
    }
    if msgspec is not None:
        enc, dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(Work)
        w = Work(1, 2, Op.SUM)
        data = enc.encode(w)
        fns["msgspec_encode_us"] = lambda: enc.encode(w)
        fns["msgspec_decode_us"] = lambda: dec.decode(data)
        fns["msgspec_roundtrip_us"] = lambda: dec.decode(enc.encode(w))
    out = _best_of(fns, number, repeat)
    out["compiled"] = float(codec.compiled)
    out["ratio_roundtrip_vs_msgpack"] = out["ours_roundtrip_us"] / out["msgpack_roundtrip_us"]
    out["ratio_pure_roundtrip_vs_msgpack"] = out["pure_roundtrip_us"] / out["msgpack_roundtrip_us"]
    if "msgspec_roundtrip_us" in out:
        out["ratio_roundtrip_vs_msgspec"] = out["ours_roundtrip_us"] / out["msgspec_roundtrip_us"]
    return out


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    r = run(parser.parse_args().quick)
    print(f"{'':28s}{'encode':>10s}{'decode':>10s}{'round trip':>12s}   (µs/op, best of interleaved runs, thread CPU time)")
    active = "compiled" if r["compiled"] else "pure: compiled codec not built" if not available() else "pure"
    for name, label in [("ours", f"frame ({active})"), ("pure", "frame (pure)"), ("msgpack", "raw msgpack dict"),
                        ("msgspec", "msgspec Struct")]:
        if f"{name}_encode_us" in r:
            print(f"{label:28s}{r[name + '_encode_us']:10.2f}{r[name + '_decode_us']:10.2f}"
                  f"{r[name + '_roundtrip_us']:12.2f}")
    print(f"round trip ratio vs raw msgpack: {r['ratio_roundtrip_vs_msgpack']:.2f}x ({active}; aim <= 1x), "
          f"pure {r['ratio_pure_roundtrip_vs_msgpack']:.2f}x")
    if "ratio_roundtrip_vs_msgspec" in r:
        print(f"round trip ratio vs msgspec:     {r['ratio_roundtrip_vs_msgspec']:.2f}x")


if __name__ == "__main__":
    main()
