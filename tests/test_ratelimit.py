"""Warnings a peer can cause are rate-limited: one line per interval and kind, with a count."""

from __future__ import annotations

import asyncio
import logging

from nanomsg_kernel import Service, evolve
from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork
from nanomsg_kernel.frame import HEADER_SIZE, Kind
from nanomsg_kernel.ratelimit import DEFAULT_INTERVAL, RateLimitedLogger, rate_limited

FLOOD = 500
WAIT = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    """Records of one logger, and an event set at each."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()

    def matching(self, text: str) -> list[logging.LogRecord]:
        return [r for r in self.records if text in r.getMessage()]

    async def until(self, count: int, text: str) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.matching(text)) < count:
                self.arrived.clear()
                await self.arrived.wait()


def limited(name: str, interval: float = 10.0) -> tuple[RateLimitedLogger, Lines, Clock]:
    logger = logging.getLogger(f"test.ratelimit.{name}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    lines = Lines()
    logger.handlers[:] = [lines]
    clock = Clock()
    return RateLimitedLogger(logger, interval, clock=clock), lines, clock


def test_a_flood_writes_one_line_then_one_with_the_count() -> None:
    log, lines, clock = limited("flood")
    for i in range(FLOOD):
        log.warning("bad frame from %s: %d", "peer", i)
    assert [r.getMessage() for r in lines.records] == ["bad frame from peer: 0"]
    assert lines.records[0].suppressed == 0  # type: ignore[attr-defined]
    assert log.suppressed("bad frame from %s: %d") == FLOOD - 1
    clock.now += 10.0
    log.warning("bad frame from %s: %d", "peer", FLOOD)
    assert lines.records[1].getMessage() == f"bad frame from peer: {FLOOD} [+{FLOOD - 1} suppressed in 10.0s]"
    assert lines.records[1].suppressed == FLOOD - 1  # type: ignore[attr-defined]
    assert log.suppressed("bad frame from %s: %d") == 0


def test_kinds_are_limited_apart_and_keep_their_extra() -> None:
    log, lines, _clock = limited("kinds")
    for _ in range(3):
        log.warning("one %s", "a", extra={"service": "calc"})
        log.error("two %s", "b")
    assert [r.getMessage() for r in lines.records] == ["one a", "two b"]
    assert lines.records[0].service == "calc"  # type: ignore[attr-defined]
    assert lines.records[1].levelno == logging.ERROR


def test_flush_writes_what_is_pending_and_reset_forgets() -> None:
    log, lines, clock = limited("flush")
    for i in range(4):
        log.info("x %d", i)
    clock.now += 1.5
    log.flush()
    assert [r.getMessage() for r in lines.records] == ["x 0", "x 3 [+3 suppressed in 1.5s]"]
    log.flush()  # nothing pending: nothing written
    assert len(lines.records) == 2
    log.reset()
    log.info("x %d", 9)
    assert lines.records[-1].getMessage() == "x 9"


def test_interval_zero_lets_every_line_through_and_disabled_levels_cost_nothing() -> None:
    log, lines, _clock = limited("zero", interval=0.0)
    for i in range(5):
        log.warning("w %d", i)
    assert len(lines.records) == 5
    log.logger.setLevel(logging.ERROR)
    log.warning("w %d", 6)
    assert len(lines.records) == 5 and log.suppressed("w %d") == 0


async def test_on_a_loop_the_summary_comes_when_the_interval_ends() -> None:
    logger = logging.getLogger("test.ratelimit.loop")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    lines = Lines()
    logger.handlers[:] = [lines]
    log = RateLimitedLogger(logger, 0.05)
    for i in range(FLOOD):
        log.warning("dropped %d", i)
    await lines.until(2, "dropped")  # no further record needed: a timer writes it
    assert lines.records[1].getMessage().startswith(f"dropped {FLOOD - 1} [+{FLOOD - 1} suppressed in ")
    assert len(lines.records) == 2


def test_one_limiter_per_logger_with_the_default_interval() -> None:
    assert rate_limited("test.ratelimit.shared") is rate_limited(logging.getLogger("test.ratelimit.shared"))
    assert rate_limited("test.ratelimit.shared").interval == DEFAULT_INTERVAL


async def test_a_flood_of_undecodable_events_over_tcp_logs_one_line_and_the_count() -> None:
    svc = Service("flooded", CalcRoute)
    last = asyncio.Event()

    @svc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        return evolve(w, result=0)

    @svc.subscribe(CalcDone)
    async def done(e: CalcDone) -> None:
        last.set()

    lines = Lines()
    svc.logger.addHandler(lines)
    limiter = rate_limited(svc.logger)
    limiter.reset()
    codec = CalcRoute.codec()
    good = codec.encode(CalcDone(work=1, result=2), kind=Kind.EVENT)
    body = b"\x81\x01\xa3bad"  # {1: "bad"}: work must be an int
    bad = good[: HEADER_SIZE - 4] + len(body).to_bytes(4, "big") + body
    try:
        async with svc.serve("tcp://127.0.0.1:0") as listener:
            host, port = listener.url.removeprefix("tcp://").rsplit(":", 1)
            _reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(bad * FLOOD + good)  # the good one is handled after every bad one
            await writer.drain()
            await asyncio.wait_for(last.wait(), WAIT)
            writer.close()
    finally:
        svc.logger.removeHandler(lines)
    template = "dropped undecodable event: %s"
    assert len(lines.matching("dropped undecodable event")) == 1
    assert limiter.suppressed(template) == FLOOD - 1
    assert svc.metrics.snapshot()["<bad event>"]["calls"] == FLOOD
    svc.logger.addHandler(lines)
    try:
        limiter.flush()
    finally:
        svc.logger.removeHandler(lines)
    [_first, summary] = lines.matching("dropped undecodable event")
    assert f"[+{FLOOD - 1} suppressed in " in summary.getMessage()


async def test_a_flood_of_refused_frames_over_tcp_logs_one_line_and_the_count() -> None:
    svc = Service("refusing", CalcRoute)
    lines = Lines()
    limiter = rate_limited("nanomsg_kernel.transports.tcp")
    limiter.reset()
    limiter.logger.addHandler(lines)
    good = CalcRoute.codec().encode(CalcDone(work=1, result=2), kind=Kind.EVENT)
    bad = good[:2] + b"\x09" + good[3:]  # wire version 9
    peers = 50
    try:
        async with svc.serve("tcp://127.0.0.1:0") as listener:
            host, port = listener.url.removeprefix("tcp://").rsplit(":", 1)
            for _ in range(peers):
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(bad)
                await asyncio.wait_for(reader.read(), WAIT)  # the server answers and closes
                writer.close()
                await writer.wait_closed()
        assert len(lines.matching("refused a frame")) == 1
        assert limiter.suppressed("%s: refused a frame (%s); closing the connection") == peers - 1
        limiter.flush()
        assert f"[+{peers - 1} suppressed in " in lines.matching("refused a frame")[-1].getMessage()
    finally:
        limiter.logger.removeHandler(lines)
