"""Coverage-guided fuzzing of the compiled decoder, with the pure decoder as its oracle.

Each input is one byte choosing a contract of the differential kernel (every field type,
nested records, dicts, validators, a 17-field contract) and then a body. The compiled and
the pure codec must give the same outcome: the same object (unknown fields' bytes included)
or the same error type and message, for ``decode`` and ``decode_request``, with the default
limits and with a small object budget; a decoded message must encode to the same frame.

    python tests/fuzz_compiled.py -max_total_time=60 [corpus_dir]

Needs atheris (``pip install '.[fuzz]'``). The seeds are valid frames of each contract.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    HERE = Path(__file__).resolve().parent
    sys.path[:0] = [str(HERE), str(HERE.parent)]  # the differential kernel; the source tree's package
    from differential import Route, codecs, outcome

    from nanomsg_kernel import Kind
    from nanomsg_kernel.frame import pack_header

ROUTES = list(Route)
PAIRS = [codecs(), codecs(max_objects=1024, max_body_size=4096)]
RUNS = [0]


def one_input(data: bytes) -> None:
    if not data:
        return
    RUNS[0] += 1
    route = ROUTES[data[0] % len(ROUTES)]
    kind = (Kind.REQUEST, Kind.RESPONSE, Kind.EVENT)[data[0] // len(ROUTES) % 3]
    body = data[1:]
    frame = pack_header(kind, route, 1, 7, 3, len(body)) + body
    for fast, pure in PAIRS:
        decoded = ""
        for name in ("decode", "decode_request"):
            got = outcome(functools.partial(getattr(fast, name), frame))
            want = outcome(functools.partial(getattr(pure, name), frame))
            if got != want:
                raise AssertionError(f"{name} of {frame.hex()}: compiled {got!r} != pure {want!r}")
            decoded = decoded or want[0]
        if decoded == "ok":
            msg = pure.decode(frame)
            a = outcome(functools.partial(fast.encode, msg, kind=kind, correlation_id=7, timeout_ms=3))
            b = outcome(functools.partial(pure.encode, msg, kind=kind, correlation_id=7, timeout_ms=3))
            if a != b:
                raise AssertionError(f"encode of {msg!r}: compiled {a!r} != pure {b!r}")


def seeds(directory: Path) -> None:
    """Write a valid frame body of each contract into ``directory`` (the starting corpus)."""
    from test_compiled_codec import _samples

    directory.mkdir(parents=True, exist_ok=True)
    pure = PAIRS[0][1]
    for msg in _samples():
        route = type(msg).__nk_info__.route
        body = pure.encode_body(msg)
        (directory / f"seed-{int(route)}").write_bytes(bytes([ROUTES.index(route)]) + body)


if __name__ == "__main__":
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    if corpus and not Path(corpus[0]).is_file():  # a corpus directory, not inputs to rerun
        seeds(Path(corpus[0]))
    atheris.Setup(sys.argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        print(f"fuzz_compiled: {RUNS[0]} inputs compared", file=sys.stderr)
