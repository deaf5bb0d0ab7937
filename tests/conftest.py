"""Shared fixtures: a fresh inproc name per test, and the transport URLs the suite runs over.

``TRANSPORT_URLS`` maps each transport to a function giving a fresh URL to listen on:
``inproc://`` names, ``tcp://`` and ``zmq+tcp://`` on port 0 of 127.0.0.1, and
``zmq+ipc://`` socket files in one short temporary directory (ipc paths are limited to
about 100 bytes), made on first use and removed when the session ends, and ``nats://``
subjects on one nats-server process (``natsserver.py``) started on first use and killed
when the session ends.
"""

from __future__ import annotations

import itertools
import os
import shutil
import ssl
import tempfile
from collections.abc import Callable, Iterator

import pytest
import trustme
from natsserver import nats_server, session_server, stop_session_server

from nanomsg_kernel.ratelimit import limiters

_names = itertools.count()
_ipc_dir: str | None = None


def _ipc_url() -> str:
    """A fresh ``zmq+ipc://`` socket path in the session's temporary directory."""
    global _ipc_dir
    if _ipc_dir is None:
        base = tempfile.gettempdir()
        if len(base) > 40:  # a long TMPDIR would leave no room under the ipc path limit
            base = "/tmp"
        _ipc_dir = tempfile.mkdtemp(prefix="nk", dir=base)
    path = os.path.join(_ipc_dir, f"{next(_names)}.sock")
    assert len(path) + len(".events") < 100, path
    return f"zmq+ipc://{path}"


TRANSPORT_URLS: dict[str, Callable[[], str]] = {
    "inproc": lambda: f"inproc://test-{next(_names)}",
    "tcp": lambda: "tcp://127.0.0.1:0",
    "zmq+tcp": lambda: "zmq+tcp://127.0.0.1:0",
    "zmq+ipc": _ipc_url,
    "nats": lambda: f"nats://{session_server().address}/test.{next(_names)}",
}

__all__ = ["TRANSPORT_URLS", "nats_server"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the ipc directory (with any socket file a failed test left behind) and stop
    the session's nats-server."""
    global _ipc_dir
    stop_session_server()
    if _ipc_dir is not None:
        shutil.rmtree(_ipc_dir, ignore_errors=True)
        _ipc_dir = None


@pytest.fixture(autouse=True)
def _fresh_log_limits() -> None:
    """Each test starts with no rate-limited log line pending or in its interval."""
    for limiter in limiters():
        limiter.reset()


@pytest.fixture
def inproc_url() -> str:
    """A fresh ``inproc://`` name."""
    return TRANSPORT_URLS["inproc"]()


@pytest.fixture
def ipc_dir() -> Iterator[str]:
    """A short temporary directory for ipc socket files (paths are limited to ~100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="nk-") as d:
        yield d


@pytest.fixture(scope="session")
def tls_authority() -> trustme.CA:
    """A certificate authority made for this test session."""
    return trustme.CA()


@pytest.fixture
def tls_contexts(tls_authority: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 and localhost issued by
    ``tls_authority``, and a client context that trusts that authority only."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_authority.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the host name
    tls_authority.configure_trust(client)
    return server, client


@pytest.fixture(params=sorted(TRANSPORT_URLS))
def any_url(request: pytest.FixtureRequest) -> str:
    """A URL to serve on, for each transport (``listener.url`` gives the real address)."""
    return TRANSPORT_URLS[request.param]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--long``: run the tests marked ``slow`` and the reliability suite's larger counts."""
    parser.addoption(
        "--long", action="store_true", default=False,
        help="run the long reliability checks (tests marked slow, larger counts)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``slow`` unless ``--long`` was given."""
    if config.getoption("--long"):
        return
    skip = pytest.mark.skip(reason="long reliability check: run with --long")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
