"""Hostile input: random, mutated and hand-made nasty frames, fed to the decoder in-process
(100,000 and more) and to a live server on each transport (thousands each), which must keep
answering a well-formed client throughout, within a bounded amount of memory."""

from __future__ import annotations

import collections
import time
import tracemalloc

import pytest
from reliability.corpus import hypothesis_frames, mutations, nasty_frames
from reliability.figures import record
from reliability.kernel import ReliRoute

from nanomsg_kernel.contracts.calc import CalcRoute
from nanomsg_kernel.errors import DecodeError, NanomsgError
from nanomsg_kernel.frame import Kind, pack_header

MIB = 1024 * 1024
DECODER_FRAMES = 100_000
"""The floor the issue sets for the default run."""


def decode_all(codec: object, frames: collections.abc.Iterable[bytes]) -> collections.Counter[str]:
    """Decode every frame; count outcomes by exception class (``"decoded"`` when accepted).

    Anything but the library's own errors propagates and fails the test; so does a frame
    that takes over a second (a hang in the making).
    """
    outcomes: collections.Counter[str] = collections.Counter()
    decode = codec.decode_frame  # type: ignore[attr-defined]
    clock = time.perf_counter
    for frame in frames:
        started = clock()
        try:
            decoded = decode(frame)
        except NanomsgError as exc:
            assert isinstance(exc, DecodeError), f"{type(exc).__name__} from {frame[:64]!r}"
            assert str(exc), f"an empty error message for {frame[:64]!r}"
            outcomes[type(exc).__name__] += 1
        else:
            assert decoded.header.kind in tuple(Kind)
            outcomes["decoded"] += 1
        assert clock() - started < 1.0, f"decoding {frame[:64]!r} took {clock() - started:.2f}s"
    return outcomes


def test_decoder_takes_the_hand_made_corpus() -> None:
    """Every nasty frame the issue lists is refused with a DecodeError naming the problem."""
    for routes in (CalcRoute, ReliRoute):
        codec = routes.codec()
        corpus = nasty_frames(2, codec.max_body_size)
        outcomes = decode_all(codec, (frame for _name, frame in corpus))
        assert sum(outcomes.values()) == len(corpus)
        for name, frame in corpus:
            if "declared 4 GiB" in name or "maximum + 1" in name:
                with pytest.raises(DecodeError, match="exceeds the maximum"):
                    codec.decode_frame(frame)
            elif "truncated header" in name:
                with pytest.raises(DecodeError, match="truncated header"):
                    codec.decode_frame(frame)


def test_decoder_takes_100k_random_and_mutated_frames(request: pytest.FixtureRequest) -> None:
    """Hypothesis-drawn valid and damaged frames, the corpus, and seeded mutations of all of
    them: only DecodeError ever leaves the decoder, and memory stays bounded."""
    long = request.config.getoption("--long")
    codecs = (CalcRoute.codec(), ReliRoute.codec())
    tracemalloc.start()
    try:
        started = time.perf_counter()
        total: collections.Counter[str] = collections.Counter()
        drawn = 0
        for codec in codecs:
            valid, damaged = hypothesis_frames(codec.routes, 2000 if long else 300)
            drawn += len(valid) + len(damaged)
            corpus = [f for _n, f in nasty_frames(2, codec.max_body_size, with_max_body=False)]
            total += decode_all(codec, [*valid, *damaged, *corpus])
            count = (10 if long else 1) * DECODER_FRAMES // len(codecs)
            total += decode_all(codec, mutations([*valid, *damaged, *corpus], count, seed=len(valid)))
        seconds = time.perf_counter() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    tried = sum(total.values())
    assert tried >= DECODER_FRAMES
    assert total["decoded"] > 0 and total["DecodeError"] > 0 and total["FrameTooLarge"] > 0
    assert peak < 32 * MIB, f"decoding hostile frames peaked at {peak / MIB:.1f} MiB"
    record("decoder", frames_tried=tried, hypothesis_drawn=drawn, outcomes=dict(total),
           peak_traced_mib=round(peak / MIB, 2), seconds=round(seconds, 1))


def test_decoder_takes_a_body_of_exactly_the_maximum() -> None:
    """The one corpus frame that is big for real (16 MiB): accepted, at bounded extra memory."""
    codec = CalcRoute.codec()
    (name, frame), = [(n, f) for n, f in nasty_frames(2, codec.max_body_size) if n == "body of exactly the maximum"]
    tracemalloc.start()
    try:
        msg = codec.decode(frame)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(msg.text) == codec.max_body_size - 7, name
    assert peak < 3 * codec.max_body_size, f"{peak / MIB:.1f} MiB to decode a 16 MiB body"


@pytest.mark.parametrize("body", [b"\x81\x01" + b"\x91" * 100_000 + b"\xc0", b"\xc1"], ids=["deep", "reserved"])
def test_decode_error_names_the_msgpack_failure(body: bytes) -> None:
    """A too deeply nested body, or the reserved byte 0xc1, must say what is wrong."""
    codec = CalcRoute.codec()
    frame = pack_header(Kind.REQUEST, int(CalcRoute.ECHO), 1, 1, 0, len(body)) + body
    with pytest.raises(DecodeError) as e:
        codec.decode(frame)
    reason = str(e.value).rpartition("malformed msgpack body:")[2].strip()
    assert reason in ("nested too deeply", "invalid msgpack (reserved or unknown type byte)"), e.value
