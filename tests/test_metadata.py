"""Request metadata: the frame's metadata block, its limits, and ``ctx.metadata`` on every path."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import msgpack
import pytest
from conftest import TRANSPORT_URLS
from hypothesis import given
from hypothesis import strategies as st

from nanomsg_kernel import Client, Context, Node, Service, Status, evolve
from nanomsg_kernel.client import first_correlation_id
from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.errors import DecodeError, EncodeError, MetadataTooLarge, RemoteError
from nanomsg_kernel.frame import HEADER_SIZE, HEADER_STRUCT, METADATA_FLAG, Kind, pack_header, refusal
from nanomsg_kernel.metadata import (
    DEFAULT_MAX_METADATA_KEYS,
    DEFAULT_MAX_METADATA_SIZE,
    decode_metadata,
    encode_metadata,
)
from nanomsg_kernel.transports.base import get_transport

CODEC = CalcRoute.codec()
WORK = CalcWork(a=1, b=2, op=WorkType.SUM)


def _frame_with_block(block: bytes, msg: Any = WORK, kind: int = Kind.REQUEST, cid: int = 9) -> bytes:
    """A request frame whose metadata block is ``block`` (length prefix added), made by hand."""
    body = CODEC.encode_body(msg)
    payload = struct.pack(">I", len(block)) + block + body
    return pack_header(kind, 1, 2, cid, 0, len(payload), flags=METADATA_FLAG) + payload


# -- the codec ---------------------------------------------------------------------------


def test_a_frame_without_metadata_is_unchanged() -> None:
    plain = CODEC.encode(WORK, correlation_id=7, timeout_ms=1500)
    assert CODEC.encode(WORK, correlation_id=7, timeout_ms=1500, metadata={}) == plain
    assert CODEC.encode(WORK, correlation_id=7, timeout_ms=1500, metadata=None) == plain
    assert HEADER_STRUCT.unpack_from(plain)[5] == 0


def test_metadata_round_trip_through_the_codec() -> None:
    md = {"tenant": "acme", "trace": b"\x00\x01\xff", "ünï": "çødé"}
    frame = CODEC.encode(WORK, correlation_id=7, metadata=md)
    header = CODEC.read_header(frame)
    assert header.flags == METADATA_FLAG
    assert header.body_length == len(frame) - HEADER_SIZE
    assert CODEC.decode(frame) == WORK
    assert CODEC.decode_frame(frame).message == WORK
    got = CODEC.frame_metadata(frame)
    assert dict(got) == md and isinstance(got, MappingProxyType)
    assert CODEC.decode_request(frame) is None  # served by the path that reads metadata
    assert dict(CODEC.frame_metadata(CODEC.encode(WORK))) == {}


@given(st.dictionaries(st.text(max_size=20), st.one_of(st.text(max_size=40), st.binary(max_size=40)), max_size=20))
def test_any_metadata_within_the_limits_round_trips(md: dict[str, str | bytes]) -> None:
    frame = CODEC.encode(Echo(text="x"), kind=Kind.EVENT, metadata=md)
    assert dict(CODEC.frame_metadata(frame)) == md
    assert CODEC.decode(frame) == Echo(text="x")


@pytest.mark.parametrize("bad", [
    {1: "x"}, {"k": 1}, {"k": None}, {"k": ["a"]}, {"k": "\ud800"}, "not a map",
])
def test_the_encoder_refuses_what_is_not_text_to_text_or_bytes(bad: Any) -> None:
    with pytest.raises(EncodeError):
        CODEC.encode(WORK, metadata=bad)


def test_the_encoder_refuses_metadata_over_the_limits() -> None:
    with pytest.raises(EncodeError, match="keys"):
        CODEC.encode(WORK, metadata={str(i): "" for i in range(DEFAULT_MAX_METADATA_KEYS + 1)})
    with pytest.raises(EncodeError, match="exceeds the maximum"):
        CODEC.encode(WORK, metadata={"k": "x" * DEFAULT_MAX_METADATA_SIZE})
    CODEC.encode(WORK, metadata={str(i): "" for i in range(DEFAULT_MAX_METADATA_KEYS)})


def test_the_decoder_checks_the_limits_before_decoding() -> None:
    # A map header declaring 2**32-1 entries, in a block of five bytes: refused from its header.
    with pytest.raises(MetadataTooLarge, match="keys") as info:
        decode_metadata(struct.pack(">I", 5) + b"\xdf\xff\xff\xff\xff")
    assert info.value.status is Status.RESOURCE_EXHAUSTED
    # A length over the limit: refused before the bytes are looked at (they are not even there).
    with pytest.raises(MetadataTooLarge, match="bytes"):
        decode_metadata(struct.pack(">I", 2**32 - 1))
    small = CalcRoute.codec(max_metadata_size=16, max_metadata_keys=2)
    frame = CODEC.encode(WORK, metadata={"a": "1", "b": "2", "c": "3"})
    with pytest.raises(MetadataTooLarge):
        small.frame_metadata(frame)
    with pytest.raises(MetadataTooLarge):
        small.decode(frame)


@pytest.mark.parametrize("block", [
    b"",                                      # no map at all
    b"\x93\x01\x02\x03",                      # an array
    msgpack.packb({1: "x"}),                  # a key that is not text
    msgpack.packb({"k": 1}),                  # a value that is neither text nor bytes
    msgpack.packb({"k": {"n": "x"}}),         # a nested map
    b"\x82\xa1k\xa1a\xa1k\xa1b",              # a repeated key
    b"\x81\xa1k\xa2\xff\xfe",                 # text that is not UTF-8
    msgpack.packb({"k": "v"}) + b"\xc0",      # bytes after the map, inside the block
    b"\x81\xa1k",                             # a truncated map
])
def test_the_decoder_refuses_bad_blocks_with_decode_error(block: bytes) -> None:
    frame = _frame_with_block(block)
    with pytest.raises(DecodeError):
        CODEC.frame_metadata(frame)
    with pytest.raises(DecodeError):
        CODEC.decode(frame)


def test_a_block_longer_than_the_frame_is_refused() -> None:
    body = CODEC.encode_body(WORK)
    payload = struct.pack(">I", 100) + b"\x80" + body
    frame = pack_header(Kind.REQUEST, 1, 2, 1, 0, len(payload), flags=METADATA_FLAG) + payload
    with pytest.raises(DecodeError, match="declares 100 bytes"):
        CODEC.decode(frame)
    with pytest.raises(DecodeError, match="truncated metadata"):
        decode_metadata(b"\x00\x00")


@pytest.mark.parametrize("flags", [0x0002, 0x8000, 0xFFFF])
def test_unknown_flags_are_refused_cleanly(flags: int) -> None:
    body = CODEC.encode_body(WORK)
    frame = pack_header(Kind.REQUEST, 1, 2, 5, 0, len(body), flags=flags) + body
    with pytest.raises(DecodeError, match="unknown header flags"):
        CODEC.decode(frame)
    why = refusal(frame)
    assert why is not None and why.status is Status.BAD_REQUEST and not why.closes
    assert "unknown header flags" in why.message


def test_encode_metadata_layout() -> None:
    block = encode_metadata({"k": "v"})
    assert block == b"\x00\x00\x00\x05\x81\xa1k\xa1v"
    assert decode_metadata(block + b"rest") == ({"k": "v"}, len(block))


# -- over every transport ------------------------------------------------------------------

seen: list[tuple[str, Mapping[str, str | bytes]]] = []
meta = Service("meta", CalcRoute)


@meta.handler(CalcWork)
async def _work(work: CalcWork, ctx: Context) -> CalcWork:
    seen.append(("work", ctx.metadata))
    return evolve(work, result=len(ctx.metadata))


@meta.handler(Echo, inline=True)
def _echo(msg: Echo, ctx: Context) -> Echo:
    seen.append(("echo", ctx.metadata))
    return evolve(msg, reply=str(ctx.metadata.get("who", "")))


arrived = asyncio.Event()


@meta.subscribe(CalcDone)
async def _done(event: CalcDone, ctx: Context) -> None:
    seen.append(("event", ctx.metadata))
    arrived.set()


@pytest.fixture(params=sorted(TRANSPORT_URLS))
def url(request: pytest.FixtureRequest) -> str:
    return TRANSPORT_URLS[request.param]()


async def test_metadata_reaches_the_handler_on_every_transport(url: str) -> None:
    seen.clear()
    async with meta.serve(url) as listener, Client(CalcRoute, listener.url, timeout=5.0) as client:
        done = await client.call(WORK, metadata={"who": "gw", "bin": b"\x00"})
        assert done.result == 2
        assert (await client.call(Echo(text="x"), metadata={"who": "gw"})).reply == "gw"
        assert (await client.call(Echo(text="x"))).reply == ""
        assert (await client.call(WORK, timeout=2.0)).result == 0
    assert [(k, dict(m)) for k, m in seen] == [
        ("work", {"who": "gw", "bin": b"\x00"}), ("echo", {"who": "gw"}), ("echo", {}), ("work", {}),
    ]
    with pytest.raises(TypeError):
        seen[0][1]["who"] = "x"  # type: ignore[index]


async def test_events_carry_metadata(url: str) -> None:
    global arrived
    seen.clear()
    arrived = asyncio.Event()
    async with meta.serve(url) as listener, Client(CalcRoute, listener.url, timeout=5.0) as client:
        await client.call(WORK)
        await client.publish(CalcDone(work=1, result=3), metadata={"origin": "test"})
        async with asyncio.timeout(5.0):
            await arrived.wait()
    assert [(k, dict(m)) for k, m in seen] == [("work", {}), ("event", {"origin": "test"})]


async def test_a_server_answers_metadata_over_its_limits_with_resource_exhausted(url: str) -> None:
    seen.clear()
    big = {str(i): "" for i in range(DEFAULT_MAX_METADATA_KEYS + 1)}
    block = msgpack.packb(big)
    async with meta.serve(url) as listener, get_transport(listener.url).connect(listener.url) as conn:
        reply = await conn.request(_frame_with_block(block), 5.0)
        with pytest.raises(RemoteError) as info:
            CODEC.decode(reply)
        assert info.value.status is Status.RESOURCE_EXHAUSTED
        reply = await conn.request(_frame_with_block(b"\x81\xa1k\x01", cid=10), 5.0)
        with pytest.raises(RemoteError) as info:
            CODEC.decode(reply)
        assert info.value.status is Status.DECODE_ERROR
        body = CODEC.encode_body(WORK)
        unknown = pack_header(Kind.REQUEST, 1, 2, 11, 0, len(body), flags=0x0004) + body
        with pytest.raises(RemoteError, match="unknown header flags") as info:
            CODEC.decode(await conn.request(unknown, 5.0))
        assert info.value.status is Status.BAD_REQUEST
        # the connection goes on
        assert CODEC.decode(await conn.request(CODEC.encode(WORK, correlation_id=12), 5.0)).result == 0
    assert [k for k, _ in seen] == ["work"]


# -- bindings ------------------------------------------------------------------------------

front = Service("front", CalcRoute)


@front.handler(CalcWork)
async def _front(work: CalcWork, ctx: Context) -> CalcWork:
    reply: CalcWork = await ctx.bindings.back.call(work, metadata={**ctx.metadata, "hop": "front"})
    return reply


async def test_a_local_binding_carries_metadata_as_the_wire_does() -> None:
    seen.clear()
    node = Node("n")
    node.add(front, bindings={"back": meta})
    node.add(meta)
    async with node:
        binding = front.bindings["back"]
        assert (await binding.call(WORK, metadata={"a": "1"})).result == 1
        reply = await front.dispatch(WORK, metadata=MappingProxyType({"t": "x"}))
        assert reply.result == 2
        with pytest.raises(EncodeError):
            await binding.call(WORK, metadata={"k": 1})  # what a client would refuse to send
        with pytest.raises(EncodeError):
            await binding.call(WORK, metadata={str(i): "" for i in range(DEFAULT_MAX_METADATA_KEYS + 1)})
        await binding.publish(CalcDone(work=1, result=1), metadata={"e": b"1"})
    assert [(k, dict(m)) for k, m in seen] == [
        ("work", {"a": "1"}), ("work", {"t": "x", "hop": "front"}), ("event", {"e": b"1"}),
    ]
    assert isinstance(seen[0][1], MappingProxyType)


async def test_a_remote_binding_carries_metadata() -> None:
    seen.clear()
    async with meta.serve("tcp://127.0.0.1:0") as listener:
        node = Node("r")
        node.add(front, bindings={"back": listener.url})
        async with node:
            assert (await front.dispatch(WORK, metadata=MappingProxyType({"t": "x"}))).result == 2
    assert [(k, dict(m)) for k, m in seen] == [("work", {"t": "x", "hop": "front"})]


# -- correlation ids -------------------------------------------------------------------------


def test_correlation_ids_start_at_random_and_fit_the_header() -> None:
    firsts = {first_correlation_id() for _ in range(1000)}
    assert len(firsts) == 1000
    assert all(1 <= f <= 2**63 for f in firsts)
    assert max(firsts) > 2**32  # not a small counter


async def test_two_clients_use_different_ids(inproc_url: str) -> None:
    ids: list[int] = []
    svc = Service("ids", CalcRoute)

    @svc.handler(CalcWork)
    async def work(w: CalcWork, ctx: Context) -> CalcWork:
        ids.append(ctx.correlation_id)
        return w

    async with svc.serve(inproc_url), Client(CalcRoute, inproc_url) as a, Client(CalcRoute, inproc_url) as b:
        for _ in range(3):
            await a.call(WORK)
            await b.call(WORK)
    assert len(set(ids)) == 6
    assert ids[2] == ids[0] + 1 and ids[3] == ids[1] + 1  # each client counts up from its start
    assert 1 not in ids


def test_inspect_shows_metadata_escaped() -> None:
    from nanomsg_kernel.app.inspect_frame import inspect_frames, render_text

    frame = CODEC.encode(WORK, correlation_id=7, metadata={"t\x1b[31m": "acme\x07", "b": b"\x01"})
    [report] = inspect_frames(frame, CalcRoute)
    assert report["metadata"] == {"t\x1b[31m": "acme\x07", "b": "AQ=="}
    assert report["body"]["contract"] == "CalcWork"
    text = render_text([report])
    assert "\x1b" not in text and "\x07" not in text
    assert 'metadata          {"t\\u001b[31m": "acme\\u0007", "b": "AQ=="}' in text
    [bad] = inspect_frames(_frame_with_block(b"\x93\x01\x02\x03"))
    assert bad["error"].startswith("bad body: metadata must be a map")
