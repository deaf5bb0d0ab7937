"""TLS over the TCP transport, with a certificate issued for the test by a certificate
authority made for the session (``tls_contexts`` in conftest.py)."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.errors import Unavailable
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.base import get_transport
from nanomsg_kernel.transports.tcp import TcpTransport
from nanomsg_kernel.transports.tcp_stream import parse_address

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
