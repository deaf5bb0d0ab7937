"""Shared fixtures: a fresh inproc name per test, and the transport URLs the suite runs over."""

from __future__ import annotations

import itertools

import pytest

_names = itertools.count()

TRANSPORT_URLS = {
    "inproc": lambda: f"inproc://test-{next(_names)}",
    "tcp": lambda: "tcp://127.0.0.1:0",
    "zmq+tcp": lambda: "zmq+tcp://127.0.0.1:0",
}


@pytest.fixture
def inproc_url() -> str:
    """A fresh ``inproc://`` name."""
    return TRANSPORT_URLS["inproc"]()


@pytest.fixture(params=sorted(TRANSPORT_URLS))
def any_url(request: pytest.FixtureRequest) -> str:
    """A URL to serve on, for each transport (``listener.url`` gives the real address)."""
    return TRANSPORT_URLS[request.param]()
