"""A send that fails must not lose the wake-up of a request that arrived meanwhile.

ZeroMQ's descriptor is edge-triggered, and every send runs libzmq's command processing,
which takes the news of a message that has just arrived and resets the descriptor. A send
that *fails* does the same; if the server then does not look at the socket, the request that
arrived in that window is never read (and nor is anything else from that client, whose pipe
stays active, so libzmq sends no further news). The test below builds the window on
purpose, with real sockets: a late reply to a client that has gone (``EHOSTUNREACH``) is sent
while another client's request sits, unread, in the server socket's command queue.
"""

from __future__ import annotations

import asyncio
import re
import select
from collections.abc import Callable

import zmq

from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.zmq import ZmqTransport

CODEC = CalcRoute.codec()


def echo(text: str, cid: int) -> bytes:
    return CODEC.encode(Echo(text=text), correlation_id=cid)


async def recv_one(sock: zmq.Socket[bytes], timeout: float) -> bytes:
    """Receive one part on a blocking pyzmq socket without blocking the loop."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                await asyncio.sleep(0.001)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


async def test_a_request_arriving_while_a_reply_to_a_gone_client_fails_is_read() -> None:
    ctx = zmq.Context()
    gone = ctx.socket(zmq.DEALER)
    other = ctx.socket(zmq.DEALER)
    gone.linger = other.linger = 0
    release = asyncio.Event()
    fd: list[int] = []

    async def handler(frame: bytes) -> bytes:
        header, msg = CODEC.decode_frame(frame)
        assert isinstance(msg, Echo)
        if msg.text == "late":
            await release.wait()
            # In the server's own step, without returning to the loop: the other client's
            # request reaches the server socket (its descriptor fires), then this reply to the
            # client that has gone fails with EHOSTUNREACH, and that failure takes the news.
            other.send(echo("in the window", 3))
            readable, _, _ = select.select(fd, [], [], 5.0)
            assert readable, "the request never reached the server"
        reply = msg.evolve(reply=msg.text.upper())
        return CODEC.encode(reply, kind=Kind.RESPONSE, correlation_id=header.correlation_id)

    try:
        async with ZmqTransport().listen("zmq+tcp://127.0.0.1:0", handler) as listener:
            server = listener.server
            assert server is not None
            router = server.pumps[0].sock
            fd.append(router.FD)
            match = re.match(r"zmq\+(tcp://[^?]+)", listener.url)
            assert match is not None
            other.connect(match.group(1))
            gone.connect(match.group(1))
            other.send(echo("first", 1))
            assert CODEC.decode(await recv_one(other, 5)).reply == "FIRST"
            gone.send(echo("late", 2))
            async with asyncio.timeout(5):
                while server.in_flight == 0:  # the handler holds the request
                    await asyncio.sleep(0.001)
            await eventually(lambda: listener.connected_peers == 2)
            gone.close(0)
            await eventually(lambda: listener.connected_peers == 1)  # the server saw it go
            # A round trip: the server's socket has processed the departure since.
            other.send(echo("second", 4))
            assert CODEC.decode(await recv_one(other, 5)).reply == "SECOND"
            release.set()
            reply = CODEC.decode(await recv_one(other, 5))
            assert reply.reply == "IN THE WINDOW"
            assert server.dropped_replies == 1  # the late reply, to the client that went
    finally:
        other.close(0)
        gone.close(0)
        ctx.term()
