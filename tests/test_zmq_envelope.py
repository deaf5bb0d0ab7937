"""Requests from foreign ZeroMQ clients: a request sent in several message parts gets a
``BAD_REQUEST`` error frame, never a piece of itself reflected back; envelopes that ZeroMQ
itself makes (a ``REQ`` client's delimiter) keep working. Raw pyzmq sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
import zmq

from nanomsg_kernel.codec import decode_error_body
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType
from nanomsg_kernel.errors import Status
from nanomsg_kernel.frame import HEADER_SIZE, Kind, parse_header
from nanomsg_kernel.service import Service
from nanomsg_kernel.transports.zmq import ZmqListener, ZmqTransport
from nanomsg_kernel.transports.zmq_envelope import request_start

CODEC = CalcRoute.codec()
calc = Service("calc-envelope", CalcRoute)


@calc.handler(CalcWork)
def work(msg: CalcWork) -> CalcWork:
    return msg.evolve(result=msg.a + msg.b)


def request(cid: int) -> bytes:
    return CODEC.encode(CalcWork(a=2, b=3, op=WorkType.SUM), correlation_id=cid)


@pytest.fixture
async def listener() -> AsyncIterator[ZmqListener]:
    async with ZmqTransport().listen("zmq+tcp://127.0.0.1:0", calc.handle_frame) as lst:
        yield lst


def endpoint(listener: ZmqListener) -> str:
    match = re.match(r"zmq\+(tcp://[^?]+)", listener.url)
    assert match is not None
    return match.group(1)


async def receive(sock: zmq.Socket[bytes], timeout: float = 5.0) -> list[bytes]:
    """One whole message from a blocking pyzmq socket, without blocking the loop."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                await asyncio.sleep(0.001)


@pytest.mark.parametrize("split", ["header and body", "two frames", "three parts"])
async def test_a_multipart_request_gets_an_error_reply(listener: ZmqListener, split: str) -> None:
    frame = request(7)
    if split == "header and body":
        parts = [frame[:HEADER_SIZE], frame[HEADER_SIZE:]]
    elif split == "two frames":
        parts = [frame, request(8)]
    else:
        parts = [frame[:HEADER_SIZE], frame[HEADER_SIZE:], b"trailing"]
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    try:
        dealer.connect(endpoint(listener))
        dealer.send_multipart(parts)
        reply = await receive(dealer)
        assert len(reply) == 1, "a part of the request came back in front of the reply"
        header = parse_header(reply[0])
        assert header.kind == Kind.ERROR
        assert header.correlation_id == 7
        error = decode_error_body(reply[0][HEADER_SIZE:])
        assert error.status == Status.BAD_REQUEST
        assert f"got {len(parts)} parts" in error.message
        # The connection still serves a well-formed request.
        dealer.send(request(9))
        good = CODEC.decode(b"".join(await receive(dealer)))
        assert isinstance(good, CalcWork) and good.result == 5
        server = listener.server
        assert server is not None and server.refused_multipart == 1
    finally:
        dealer.close(0)
        ctx.term()


async def test_a_multipart_request_without_a_readable_header_is_dropped(listener: ZmqListener) -> None:
    """Parts that start like a frame but hold no correlation id get nothing back (and are
    counted), never a reflection; the next request is served."""
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    try:
        dealer.connect(endpoint(listener))
        dealer.send_multipart([b"NK", b"\x01"])
        dealer.send(request(10))
        reply = await receive(dealer)
        assert len(reply) == 1 and CODEC.decode(reply[0]).result == 5
        server = listener.server
        assert server is not None
        assert server.dropped_messages == 1
    finally:
        dealer.close(0)
        ctx.term()


async def test_a_req_client_with_its_delimiter_is_served(listener: ZmqListener) -> None:
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.linger = 0
    try:
        req.connect(endpoint(listener))
        req.send(request(11))
        reply = await receive(req)
        assert len(reply) == 1 and CODEC.decode(reply[0]).result == 5
    finally:
        req.close(0)
        ctx.term()


def test_request_start() -> None:
    frame = request(1)
    assert request_start([b"\x00id01", frame]) == 1
    assert request_start([b"\x00id01", b"", frame]) == 2  # a REQ client's delimiter
    assert request_start([b"\x00pxy1", b"\x00id01", frame]) == 2  # behind a proxy
    assert request_start([b"\x00id01", frame[:HEADER_SIZE], frame[HEADER_SIZE:]]) == 1
    assert request_start([b"\x00id01", b"junk", b"more junk"]) == 2
