"""nats-server processes for the tests: started on free loopback ports, ready when they
answer, killed at teardown.

``nats-server`` (Debian's package of that name; ``.ci/run`` installs it) must be on PATH:
a test that needs it fails, it is never skipped. A port is picked by binding 127.0.0.1:0
and closing the socket; if the server then fails to bind it (another process took it
meanwhile), it is started again on a new port. Readiness is a TCP connection answered
with the server's ``INFO`` line (and, for a cluster, every route up), never a sleep.

* :class:`NatsServer` — one server (optionally a member of a cluster, with auth or TLS);
* :func:`nats_cluster` — three servers routed to each other;
* the ``nats_server`` fixture — a fresh server for one test;
* :func:`session_server` — one server for the whole session (the conformance suite's),
  stopped by :func:`stop_session_server` from ``pytest_sessionfinish``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import pytest

__all__ = ["NatsServer", "nats_cluster", "session_server", "stop_session_server"]

START_TIMEOUT = 10.0
"""Seconds a server may take to answer once started."""


def nats_server_path() -> str:
    """The nats-server executable (``pytest.fail`` when it is missing: never skipped)."""
    path = shutil.which("nats-server") or ("/usr/sbin/nats-server" if os.access("/usr/sbin/nats-server", os.X_OK)
                                           else None)
    if path is None:
        pytest.fail("nats-server is not installed: apt-get install -y nats-server (.ci/run installs it)")
    return path


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """One nats-server process on 127.0.0.1.

    Args:
        args: extra command-line arguments (auth, TLS).
        cluster_name: join a cluster of that name (a cluster port is picked too).
        routes: cluster ports of the other members to route to.
    """

    def __init__(self, args: list[str] | None = None, *, cluster_name: str | None = None,
                 routes: list[int] | None = None) -> None:
        self.args = list(args or [])
        self.cluster_name = cluster_name
        self.routes = list(routes or [])
        self.port = 0
        self.cluster_port = 0
        self.monitor_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="nats-server-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT``."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as it goes in a nats:// URL of the transport."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        """Start the server and wait until it answers (three tries on fresh ports)."""
        return self._start(None)

    def start_on(self, port: int) -> NatsServer:
        """Start the server again on ``port`` (where it was before it was killed)."""
        return self._start(port)

    def _start(self, port: int | None) -> NatsServer:
        last = ""
        for _attempt in range(3 if port is None else 1):
            self.port, self.monitor_port = port or free_port(), free_port()
            cmd = [nats_server_path(), "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor_port),
                   *self.args]
            if self.cluster_name is not None:
                self.cluster_port = free_port()
                cmd += ["--cluster_name", self.cluster_name, "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                        "--no_advertise=true"]  # clients know only the servers in their URL
                if self.routes:
                    cmd += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
            self._log.seek(0)
            self._log.truncate()
            self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
            if self._wait_ready():
                return self
            last = self.log_text()
            self.kill()
        raise RuntimeError(f"nats-server did not start: {last[-2000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False  # it exited: the port was taken, most likely
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(4096).startswith(b"INFO "):
                    return True
            time.sleep(0.01)  # polling a process that is starting: there is no event to wait on
        return False

    def routes_up(self) -> int:
        """Routes this server has to the others (from its monitoring endpoint)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/routez", timeout=2) as r:
            n: int = json.load(r).get("num_routes", 0)
            return n

    def wait_routes(self, count: int, timeout: float = START_TIMEOUT) -> None:
        """Wait until this server has ``count`` routes."""
        deadline = time.monotonic() + timeout
        while self.routes_up() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server {self.port}: {self.routes_up()} routes of {count}")
            time.sleep(0.01)

    def log_text(self) -> str:
        """What the server wrote so far."""
        with open(self._log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def kill(self) -> None:
        """Kill the process (SIGKILL: no goodbye to clients) and reap it."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait(timeout=10)

    def close(self) -> None:
        """Kill the process and remove its log."""
        self.kill()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)


@contextlib.contextmanager
def nats_cluster(size: int = 3) -> Iterator[list[NatsServer]]:
    """``size`` servers routed to each other on loopback, every route up; all killed after."""
    servers: list[NatsServer] = []
    try:
        first = NatsServer(cluster_name="nk").start()
        servers.append(first)
        for _ in range(size - 1):
            servers.append(NatsServer(cluster_name="nk", routes=[first.cluster_port]).start())
        for server in servers:
            server.wait_routes(size - 1)
        yield servers
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A nats-server of this test's own, killed at its end."""
    server = NatsServer().start()
    try:
        yield server
    finally:
        server.close()


_session: NatsServer | None = None


def session_server() -> NatsServer:
    """The session's shared nats-server, started on first use."""
    global _session
    if _session is None or _session.proc is None or _session.proc.poll() is not None:
        _session = NatsServer().start()
    return _session


def stop_session_server() -> None:
    """Kill the session's shared server, if one was started."""
    global _session
    if _session is not None:
        _session.close()
        _session = None
