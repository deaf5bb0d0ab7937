"""ZeroMQ peers are capped per listener (``max_peers``): a connection over the cap is shut
down cleanly as it comes, the peers within it are served, and the default leaves a reserve
below ``RLIMIT_NOFILE`` so that a flood of idle connections on one listener stops neither
another listener nor the process's own outgoing calls. Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest
from reliability.figures import record

from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.fdbudget import DescriptorBudget, listener_share
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.zmq import ZmqListener, ZmqTransport

CODEC = CalcRoute.codec()


async def echo_handler(frame: bytes) -> bytes:
    header, msg = CODEC.decode_frame(frame)
    assert isinstance(msg, Echo)
    return CODEC.encode(msg.evolve(reply=msg.text), kind=Kind.RESPONSE, correlation_id=header.correlation_id)


def address(listener: ZmqListener) -> tuple[str, int]:
    match = re.match(r"zmq\+tcp://([^:]+):(\d+)", listener.url)
    assert match is not None
    return match.group(1), int(match.group(2))


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


async def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True once the server closed ``sock`` (end of stream or reset)."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            while True:
                data = await loop.sock_recv(sock, 4096)
                if not data:
                    return True
    except (ConnectionResetError, BrokenPipeError):
        return True


@contextlib.contextmanager
def raw_connections(host: str, port: int, count: int) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection((host, port), timeout=5))
        yield socks
    finally:
        for s in socks:
            s.close()


async def test_peers_over_max_peers_are_disconnected_and_the_others_served() -> None:
    async with ZmqTransport().listen("zmq+tcp://127.0.0.1:0", echo_handler, max_peers=3, events=[]) as listener:
        host, port = address(listener)
        with raw_connections(host, port, 3) as idle:
            await eventually(lambda: listener.connected_peers == 3)
            with raw_connections(host, port, 4) as extra:
                closed = await asyncio.gather(*(closed_by_peer(s) for s in extra))
                assert closed == [True] * 4
                await eventually(lambda: listener.connected_peers == 3)
                assert listener.refused_peers == 4
            # A client of the transport gets in once one of the idle peers leaves.
            idle[0].close()
            await eventually(lambda: listener.connected_peers == 2)
            async with ZmqTransport().connect(listener.url) as client:
                frame = CODEC.encode(Echo(text="in"), correlation_id=1)
                assert CODEC.decode(await client.request(frame, 10.0)).reply == "in"
                assert listener.connected_peers == 3


async def test_peers_hold_descriptors_of_the_shared_budget() -> None:
    """Each peer takes a descriptor of the budget shared with the other listeners and gives
    it back when it leaves; with none left, a peer is refused whatever ``max_peers`` says."""
    budget = DescriptorBudget(capacity=2)
    async with ZmqTransport().listen("zmq+tcp://127.0.0.1:0", echo_handler, events=[],
                                     descriptor_budget=budget) as listener:
        assert listener.max_peers == listener_share()
        host, port = address(listener)
        with raw_connections(host, port, 2):
            await eventually(lambda: budget.held == 2)
            with raw_connections(host, port, 1) as extra:
                assert await closed_by_peer(extra[0])
            assert listener.refused_peers == 1 and listener.connected_peers == 2
        await eventually(lambda: budget.held == 0)
    assert budget.held == 0


FLOODED = textwrap.dedent("""
    import asyncio, resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    from nanomsg_kernel.contracts.calc import CalcRoute, Echo
    from nanomsg_kernel.frame import Kind
    from nanomsg_kernel.transports.zmq import ZmqTransport
    CODEC = CalcRoute.codec()

    async def echo(frame):
        header, msg = CODEC.decode_frame(frame)
        return CODEC.encode(msg.evolve(reply=msg.text), kind=Kind.RESPONSE, correlation_id=header.correlation_id)

    async def main():
        async with ZmqTransport().listen("zmq+tcp://127.0.0.1:0", echo, events=[]) as flooded, \\
                   ZmqTransport().listen("zmq+tcp://127.0.0.1:0", echo, events=[]) as other:
            print(flooded.url, other.url, flooded.max_peers, flooded.connected_peers, flush=True)
            while line := await asyncio.to_thread(sys.stdin.readline):
                # "peers": report; "call URL": an outgoing call from this process
                if line.startswith("call "):
                    try:
                        async with ZmqTransport().connect(line.split()[1]) as conn:
                            frame = CODEC.encode(Echo(text="out"), correlation_id=7)
                            reply = CODEC.decode(await conn.request(frame, 5.0)).reply
                    except Exception as exc:
                        reply = f"{type(exc).__name__}: {exc}"
                    print(reply, flush=True)
                else:
                    print(flooded.connected_peers, flooded.refused_peers, flush=True)

    asyncio.run(main())
""")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_NOFILE semantics")
async def test_a_flood_of_idle_connections_stops_neither_another_listener_nor_outgoing_calls() -> None:
    """A server process limited to 256 descriptors: 300 idle TCP connections to one of its
    listeners. The listener takes its default ``max_peers`` (its share of the process's
    descriptors: 96) and sheds the rest; the process's other listener serves, and it can
    still make an outgoing call."""
    env = dict(os.environ)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOODED, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def ask(line: str) -> str:
        stdin.write(line.encode() + b"\n")
        await stdin.drain()
        async with asyncio.timeout(30):
            return (await stdout.readline()).decode().strip()

    try:
        async with asyncio.timeout(30):
            flooded_url, other_url, max_peers, _ = (await stdout.readline()).decode().split()
        assert int(max_peers) == listener_share(256) == 96
        match = re.match(r"zmq\+tcp://([^:]+):(\d+)", flooded_url)
        assert match is not None
        with raw_connections(match.group(1), int(match.group(2)), 300):
            async with asyncio.timeout(30):
                while True:
                    connected, refused = map(int, (await ask("peers")).split())
                    if connected + refused >= 300:
                        break
            assert connected <= 96 and refused >= 300 - 96
            async with ZmqTransport().connect(other_url) as client:  # the other listener serves
                frame = CODEC.encode(Echo(text="other"), correlation_id=3)
                assert CODEC.decode(await client.request(frame, 10.0)).reply == "other"
            async with ZmqTransport().listen("zmq+tcp://127.0.0.1:0", echo_handler, events=[]) as mine:
                assert await ask(f"call {mine.url}") == "out"  # the flooded process calls out
        record("flood zmq+tcp", rlimit_nofile=256, idle_connections=300, max_peers=int(max_peers),
               connected=connected, refused=refused, other_listener="served", outgoing_call="answered")
    finally:
        stdin.close()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
