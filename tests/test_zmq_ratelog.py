"""Warnings a peer can trigger are written at most once per interval, with a count."""

from __future__ import annotations

import logging

import pytest

from nanomsg_kernel.transports.zmq_ratelog import RateLimitedLog


def test_one_line_per_interval_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    warn = RateLimitedLog(logging.getLogger("test.ratelog"), "dropped a reply", 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.ratelog"):
        for _ in range(1000):
            warn("detail")
        now[0] += 10.0
        warn("later")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["dropped a reply: detail", "dropped a reply (1000 times since the last report): later"]
    assert warn.total == 1001
