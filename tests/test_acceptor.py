"""The acceptor: connections admitted one at a time, a refused one closed before the next
``accept()``, on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanomsg_kernel.fdbudget import DescriptorBudget
from nanomsg_kernel.transports.acceptor import ACCEPT_BURST, Acceptor, listening_sockets
from nanomsg_kernel.transports.admission import ConnectionGate
from nanomsg_kernel.transports.loop import loop_name, run, uvloop_available

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(not uvloop_available(),
                                                                    reason="uvloop is an optional extra"))]
QUEUED = 96
"""Connections waiting in the listening socket's queue before the acceptor starts."""
ADMITTED = 4
TIMEOUT = 10.0


def open_descriptors() -> int:
    """How many descriptors this process holds."""
    return len(os.listdir("/proc/self/fd")) - 1  # the directory being listed


@contextlib.contextmanager
def queued_clients(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connected client sockets, their connections waiting to be accepted."""
    clients: list[socket.socket] = []
    try:
        for _ in range(count):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
        yield clients
    finally:
        for client in clients:
            client.close()


async def flood_of_queued_connections() -> dict[str, object]:
    """Start an acceptor on :data:`QUEUED` waiting connections with room for :data:`ADMITTED`;
    report the descriptors held at each refusal and what each client saw."""
    sockets = await listening_sockets("127.0.0.1", 0, backlog=QUEUED + 32)
    port = int(sockets[0].getsockname()[1])
    gate = ConnectionGate(ADMITTED, DescriptorBudget(1000))
    at_refusal: list[int] = []
    all_refused = asyncio.Event()
    release = asyncio.Event()
    nodelay: list[int] = []

    def refuse(conn: socket.socket) -> None:
        at_refusal.append(open_descriptors())
        conn.sendall(b"no")
        if len(at_refusal) == QUEUED - ADMITTED:
            all_refused.set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nodelay.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.write(b"in")
        await release.wait()
        writer.close()

    acceptor = Acceptor(sockets, gate, serve, refuse=refuse, name="flooded")
    with queued_clients(port, QUEUED) as clients:
        base = open_descriptors()
        acceptor.start()
        try:
            async with asyncio.timeout(TIMEOUT):
                await all_refused.wait()
            held = (gate.open, gate.budget.held)
            release.set()
            answers = await asyncio.gather(*(asyncio.to_thread(client.recv, 2) for client in clients))
            async with asyncio.timeout(TIMEOUT):
                while gate.open:
                    await asyncio.sleep(0.01)
        finally:
            await acceptor.close()
    return {"base": base, "at_refusal": at_refusal, "held": held, "answers": answers, "loop": loop_name(),
            "refused": gate.refused, "nodelay": nodelay, "after": (gate.open, gate.budget.held), "connections": acceptor.connections}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts descriptors in /proc/self/fd")
@pytest.mark.parametrize("loop", LOOPS)
def test_a_refused_connection_is_closed_before_the_next_is_accepted(loop: str) -> None:
    report = run(flood_of_queued_connections(), prefer_uvloop=loop == "uvloop")
    assert report["loop"] == loop
    base = report["base"]
    assert isinstance(base, int)
    at_refusal = report["at_refusal"]
    assert isinstance(at_refusal, list) and len(at_refusal) == QUEUED - ADMITTED
    # The admitted connections and the one being refused: never a burst of accepted sockets
    # (uvloop opens one descriptor of its own, once, as it sets up its first transport).
    own = 1 if loop == "uvloop" else 0
    assert max(at_refusal) <= base + ADMITTED + 1 + own, (base, at_refusal)
    assert report["held"] == (ADMITTED, ADMITTED)
    assert report["refused"] == QUEUED - ADMITTED
    answers = report["answers"]
    assert isinstance(answers, list)
    assert answers[:ADMITTED] == [b"in"] * ADMITTED  # accepted in the order they queued
    assert answers[ADMITTED:] == [b"no"] * (QUEUED - ADMITTED)
    assert report["after"] == (0, 0) and report["connections"] == set()
    nodelay = report["nodelay"]
    assert isinstance(nodelay, list) and len(nodelay) == ADMITTED and all(nodelay)  # small frames leave at once


async def accept_while_another_task_counts() -> tuple[int, int]:
    """Accept a queue of connections (all refused) while a task counts its turns."""
    count = 3 * ACCEPT_BURST
    sockets = await listening_sockets("127.0.0.1", 0, backlog=count + 32)
    gate = ConnectionGate(1, DescriptorBudget(0))  # every connection refused
    turns = 0
    done = asyncio.Event()

    def refuse(_conn: socket.socket) -> None:
        if gate.refused == count:
            done.set()

    async def never(_reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        raise AssertionError("nothing is admitted")

    async def counter() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    acceptor = Acceptor(sockets, gate, never, refuse=refuse)
    with queued_clients(int(sockets[0].getsockname()[1]), count):
        counting = asyncio.create_task(counter())
        await asyncio.sleep(0)
        turns = 0
        acceptor.start()
        try:
            async with asyncio.timeout(TIMEOUT):
                await done.wait()
        finally:
            counting.cancel()
            await acceptor.close()
    return gate.refused, turns


def test_a_queue_of_connections_does_not_keep_the_loop_to_itself() -> None:
    refused, turns = run(accept_while_another_task_counts(), prefer_uvloop=False)
    assert refused == 3 * ACCEPT_BURST
    assert turns >= 3  # the other task ran between the bursts (at most 2 turns without them)


async def bound(host: str | None) -> list[tuple[int, str, int]]:
    sockets = await listening_sockets(host, 0, backlog=8)
    try:
        return [(s.family, s.getsockname()[0], s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_listening_sockets_bind_each_address_on_one_port() -> None:
    [(family, host, port)] = asyncio.run(bound("127.0.0.1"))
    assert (family, host) == (socket.AF_INET, "127.0.0.1") and port > 0
    if _ipv6_loopback():
        [(family, host, port)] = asyncio.run(bound("::1"))
        assert (family, host) == (socket.AF_INET6, "::1") and port > 0
        everywhere = asyncio.run(bound(None))
        assert {f for f, _h, _p in everywhere} == {socket.AF_INET, socket.AF_INET6}
        assert len({p for _f, _h, p in everywhere}) == 1  # port 0: the first's port for all


def test_listening_sockets_report_an_address_in_use() -> None:
    async def twice() -> None:
        first = await listening_sockets("127.0.0.1", 0, backlog=8)
        try:
            await listening_sockets("127.0.0.1", int(first[0].getsockname()[1]), backlog=8)
        finally:
            first[0].close()

    with pytest.raises(OSError):
        asyncio.run(twice())


def _fill_descriptors() -> list[int]:
    """Open ``/dev/null`` until the soft limit is reached; the descriptors opened."""
    filler: list[int] = []
    try:
        while True:
            filler.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        assert exc.errno == errno.EMFILE
    return filler


async def accept_after_running_out_of_descriptors() -> tuple[int, bytes]:
    """Leave no descriptor for ``accept()``, then give them back: the acceptor retries."""
    sockets = await listening_sockets("127.0.0.1", 0, backlog=8)
    gate = ConnectionGate(4, DescriptorBudget(1000))

    async def serve(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"in")
        await writer.drain()
        writer.close()

    acceptor = Acceptor(sockets, gate, serve, name="starved")
    client = socket.create_connection(sockets[0].getsockname(), timeout=TIMEOUT)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(name) for name in os.listdir("/proc/self/fd"))
    filler: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 8, hard))
        filler = _fill_descriptors()
        acceptor.start()
        async with asyncio.timeout(TIMEOUT):
            while not acceptor.failed_accepts:
                await asyncio.sleep(0.01)
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        answer = await asyncio.to_thread(client.recv, 2)
    finally:
        client.close()
        await acceptor.close()
    return acceptor.failed_accepts, answer


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_accept_goes_on_after_the_process_ran_out_of_descriptors() -> None:
    # In a process of its own: while this one holds no free descriptor, nothing else may need one.
    code = ("import test_acceptor as t; from nanomsg_kernel.transports.loop import run; "
            "print(*run(t.accept_after_running_out_of_descriptors(), prefer_uvloop=False))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    failed, answer = done.stdout.split()
    assert int(failed) >= 1
    assert answer == "b'in'"


async def serve_after_a_handler_failed() -> tuple[int, bytes, bytes]:
    """A first connection whose handler raises, then a second one."""
    sockets = await listening_sockets("127.0.0.1", 0, backlog=8)
    gate = ConnectionGate(4, DescriptorBudget(1000))
    served = 0

    async def serve(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        served += 1
        if served == 1:
            writer.close()
            raise RuntimeError("a handler bug")
        writer.write(b"in")
        await writer.drain()
        writer.close()

    acceptor = Acceptor(sockets, gate, serve, name="buggy")
    acceptor.start()
    answers = []
    try:
        for _ in range(2):
            with socket.create_connection(sockets[0].getsockname(), timeout=TIMEOUT) as client:
                answers.append(await asyncio.to_thread(client.recv, 2))
        async with asyncio.timeout(TIMEOUT):
            while gate.open:
                await asyncio.sleep(0.01)
    finally:
        await acceptor.close()
    return gate.budget.held, answers[0], answers[1]


def test_a_failing_handler_is_logged_and_the_next_connection_served(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("ERROR", logger="nanomsg_kernel.transports.accept"):
        held, first, second = run(serve_after_a_handler_failed(), prefer_uvloop=False)
    assert (held, first, second) == (0, b"", b"in")
    [record] = [r for r in caplog.records if r.name == "nanomsg_kernel.transports.accept"]
    assert "serving a connection failed" in record.getMessage() and record.exc_info is not None
