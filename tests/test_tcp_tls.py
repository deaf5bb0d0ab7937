"""TLS over the TCP transport, with a certificate issued for the test by a certificate
authority made for the session (``tls_contexts`` in conftest.py)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import pytest

from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.errors import Unavailable
from nanomsg_kernel.fdbudget import process_budget
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.base import get_transport
from nanomsg_kernel.transports.loop import loop_name, run, uvloop_available
from nanomsg_kernel.transports.tcp import TcpTransport
from nanomsg_kernel.transports.tcp_stream import parse_address
from nanomsg_kernel.transports.tcp_tls import MAX_EARLY_BYTES

CODEC = CalcRoute.codec()

@pytest.fixture
def contexts(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return tls_contexts


async def echo(frame: bytes) -> bytes:
    header, msg = CODEC.decode_frame(frame)
    return CODEC.encode(msg.evolve(reply=msg.text.upper()), kind=Kind.RESPONSE, correlation_id=header.correlation_id)


def request(text: str, cid: int) -> bytes:
    return CODEC.encode(Echo(text=text), correlation_id=cid)


async def test_tls_roundtrip(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = contexts
    url = "tcp://127.0.0.1:0"
    async with get_transport(url).listen(url, echo, ssl=server_ctx) as listener:
        assert listener.url.startswith("tcp://127.0.0.1:")
        async with get_transport(listener.url).connect(listener.url, ssl=client_ctx) as conn:
            replies = await asyncio.gather(*(conn.request(request(f"secret {i}", i), 5.0) for i in range(50)))
            assert [CODEC.decode(r).reply for r in replies] == [f"SECRET {i}" for i in range(50)]
            assert conn._writer is not None
            assert conn._writer.get_extra_info("ssl_object") is not None


async def test_tls_checks_the_server_name(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = contexts
    async with TcpTransport().listen("tcp://127.0.0.1:0", echo, ssl=server_ctx) as listener:
        async with TcpTransport().connect(listener.url, ssl=client_ctx, server_hostname="localhost") as conn:
            assert CODEC.decode(await conn.request(request("by name", 1), 5.0)).reply == "BY NAME"
        conn = TcpTransport().connect(listener.url, ssl=client_ctx, server_hostname="other.example")
        with pytest.raises(Unavailable, match="cannot connect.*certificate"):
            await conn.connect()
        await conn.close()


async def test_an_untrusted_certificate_is_refused(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, _client_ctx = contexts
    async with TcpTransport().listen("tcp://127.0.0.1:0", echo, ssl=server_ctx) as listener:
        conn = TcpTransport().connect(listener.url, ssl=ssl.create_default_context())
        with pytest.raises(Unavailable, match="certificate verify failed"):
            await conn.request(request("x", 1), 5.0)
        assert len(conn.pending) == 0
        await conn.close()


async def test_a_plain_client_gets_nothing_from_a_tls_server(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = contexts
    async with TcpTransport().listen("tcp://127.0.0.1:0", echo, ssl=server_ctx, read_timeout=1.0) as listener:
        plain = TcpTransport().connect(listener.url)
        with pytest.raises(Unavailable):
            await plain.request(request("clear text", 1), 5.0)
        await plain.close()
        async with TcpTransport().connect(listener.url, ssl=client_ctx) as conn:  # others unaffected
            assert CODEC.decode(await conn.request(request("ok", 2), 5.0)).reply == "OK"


async def test_a_stalled_tls_handshake_is_dropped(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, _client_ctx = contexts
    async with TcpTransport().listen("tcp://127.0.0.1:0", echo, ssl=server_ctx, read_timeout=0.2) as listener:
        _scheme, host, port = parse_address(listener.url)
        reader, writer = await asyncio.open_connection(host, port)  # never starts the handshake
        try:
            async with asyncio.timeout(10):
                assert await reader.read() == b""
        except ConnectionResetError:
            pass
        finally:
            writer.close()
            await writer.wait_closed()


# -- handshakes in progress hold a connection's place --------------------------------------------

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(not uvloop_available(),
                                                                    reason="uvloop is an optional extra"))]


async def _stalled(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection that never starts its TLS handshake."""
    _scheme, host, port = parse_address(url)
    return await asyncio.open_connection(host, port)


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """Whether the server closes the connection (without sending anything) within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            return await reader.read() == b""
    except ConnectionResetError:
        return True


async def _eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


async def _handshakes_count(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    budget = process_budget()
    held_before = budget.held
    async with TcpTransport().listen("tcp://127.0.0.1:0", echo, ssl=server_ctx, max_connections=4,
                                     read_timeout=30.0) as listener:
        stalled = [await _stalled(listener.url) for _ in range(4)]
        await _eventually(lambda: listener.open_connections == 4)
        assert budget.held == held_before + 4 and not listener.peers  # all four still in their handshake
        extra = [await _stalled(listener.url) for _ in range(12)]
        assert all([await _closed_by_server(reader) for reader, _writer in extra])
        assert listener.refused_connections == 12 and listener.open_connections == 4
        blocked = TcpTransport().connect(listener.url, ssl=client_ctx)
        with pytest.raises(Unavailable):  # a real client waits its turn like any other
            await blocked.request(request("too many", 1), 5.0)
        await blocked.close()
        for _reader, writer in stalled + extra:
            writer.transport.abort()
        await _eventually(lambda: listener.open_connections == 0)
        assert budget.held == held_before
        async with TcpTransport().connect(listener.url, ssl=client_ctx) as conn:
            assert CODEC.decode(await conn.request(request("my turn", 2), 5.0)).reply == "MY TURN"
            assert listener.open_connections == 1


@pytest.mark.parametrize("loop", LOOPS)
def test_handshakes_in_progress_count_against_max_connections(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], loop: str
) -> None:
    """Clients that connect and never finish their handshake hold at most ``max_connections``
    places (and descriptors); the rest are closed at once."""
    run(_handshakes_count(*contexts), prefer_uvloop=loop == "uvloop")


async def _roundtrip(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> str:
    async with TcpTransport().listen("tcp://127.0.0.1:0", echo, ssl=server_ctx) as listener, \
            TcpTransport().connect(listener.url, ssl=client_ctx) as conn:
        replies = await asyncio.gather(*(conn.request(request(f"x{i}", i), 5.0) for i in range(20)))
        assert [CODEC.decode(r).reply for r in replies] == [f"X{i}" for i in range(20)]
    return loop_name()


@pytest.mark.parametrize("loop", LOOPS)
def test_tls_roundtrip_on_each_loop(contexts: tuple[ssl.SSLContext, ssl.SSLContext], loop: str) -> None:
    assert run(_roundtrip(*contexts), prefer_uvloop=loop == "uvloop") == loop


async def _too_early(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    async with TcpTransport().listen("tcp://127.0.0.1:0", echo, ssl=server_ctx, read_timeout=30.0) as listener:
        reader, writer = await _stalled(listener.url)
        writer.write(b"\x16\x03\x01" + b"\x00" * (MAX_EARLY_BYTES + 1024))  # not a handshake
        assert await _closed_by_server(reader)
        writer.close()
        await _eventually(lambda: listener.open_connections == 0)
        async with TcpTransport().connect(listener.url, ssl=client_ctx) as conn:
            assert CODEC.decode(await conn.request(request("fine", 1), 5.0)).reply == "FINE"


@pytest.mark.parametrize("loop", LOOPS)
def test_bytes_that_are_not_a_handshake_drop_the_connection(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], loop: str
) -> None:
    run(_too_early(*contexts), prefer_uvloop=loop == "uvloop")


async def test_closing_the_listener_drops_handshakes_in_progress(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, _client_ctx = contexts
    held_before = process_budget().held
    listener = TcpTransport().listen("tcp://127.0.0.1:0", echo, ssl=server_ctx, read_timeout=60.0)
    await listener.start()
    stalled = [await _stalled(listener.url) for _ in range(3)]
    await _eventually(lambda: listener.open_connections == 3)
    async with asyncio.timeout(5):
        await listener.close()
    assert all([await _closed_by_server(reader) for reader, _writer in stalled])
    assert listener.open_connections == 0 and process_budget().held == held_before
    for _reader, writer in stalled:
        writer.close()
