"""Who is calling: ``ctx.peer`` on every path, and a listener's ``allow`` list over TLS (client
certificates) and over CurveZMQ (client keys), on real sockets."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
import trustme
import zmq

from nanomsg_kernel import Allow, Client, Context, Identity, Node, Peer, Service, Status, evolve
from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.errors import ConfigError, RemoteError
from nanomsg_kernel.peer import UNKNOWN_PEER, peer_from_certificate

WORK = CalcWork(a=1, b=2, op=WorkType.SUM)


class Recorder:
    """A service that records the peer of every call its handlers run for."""

    def __init__(self, name: str = "guarded") -> None:
        self.peers: list[Peer] = []
        self.events: list[Peer] = []
        self.service = Service(name, CalcRoute)

        @self.service.handler(CalcWork)
        async def work(w: CalcWork, ctx: Context) -> CalcWork:
            self.peers.append(ctx.peer)
            return evolve(w, result=w.a + w.b)

        @self.service.handler(Echo, inline=True)
        def echo(msg: Echo, ctx: Context) -> Echo:
            self.peers.append(ctx.peer)
            return evolve(msg, reply=ctx.peer.transport)

        @self.service.subscribe(CalcDone)
        def done(event: CalcDone, ctx: Context) -> None:
            self.events.append(ctx.peer)


# -- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    server.verify_mode = ssl.CERT_REQUIRED  # ask every client for a certificate of the authority
    ca.configure_trust(server)
    return server


def _client_context(ca: trustme.CA, *names: str, common_name: str | None = None) -> ssl.SSLContext:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    if names:
        ca.issue_cert(*names, common_name=common_name).configure_cert(client)
    return client


GATEWAY = Allow([Identity("gateway", cert_name="gateway.internal")])


async def test_tls_allow_serves_the_named_certificate_and_denies_others(authority: trustme.CA) -> None:
    rec = Recorder()
    server = _server_context(authority)
    async with rec.service.serve("tcp://127.0.0.1:0", ssl=server, allow=GATEWAY) as listener:
        async with Client(CalcRoute, listener.url, ssl=_client_context(authority, "gateway.internal"),
                          timeout=5.0) as gateway:
            assert (await gateway.call(WORK)).result == 3
            assert (await gateway.call(Echo(text="x"))).reply == "tls"
        async with Client(CalcRoute, listener.url, ssl=_client_context(authority, "intruder.internal"),
                          timeout=5.0) as intruder:
            for msg in (WORK, Echo(text="x")):
                with pytest.raises(RemoteError) as info:
                    await intruder.call(msg)
                assert info.value.status is Status.PERMISSION_DENIED
            await intruder.publish(CalcDone(work=1, result=1))  # dropped, never delivered
            # the connection goes on being answered (and denied)
            with pytest.raises(RemoteError):
                await intruder.call(WORK)
        assert listener.core is not None and listener.core.denied == 4
    assert len(rec.peers) == 2 and not rec.events  # no handler ran for the intruder
    peer = rec.peers[0]
    assert peer.transport == "tls" and peer.cert_names == ("gateway.internal",)
    assert peer.address is not None and peer.address.startswith("127.0.0.1:")
    assert peer.cert_subject is not None and GATEWAY.names(peer) == ["gateway"]


async def test_tls_allow_matches_a_common_name(authority: trustme.CA) -> None:
    rec = Recorder()
    allow = Allow([Identity("billing", cert_name="billing")])
    async with rec.service.serve("tcp://127.0.0.1:0", ssl=_server_context(authority), allow=allow) as listener:
        ctx = _client_context(authority, "billing.example", common_name="billing")
        async with Client(CalcRoute, listener.url, ssl=ctx, timeout=5.0) as client:
            assert (await client.call(WORK)).result == 3
    assert rec.peers[0].cert_common_name == "billing"
    assert "CN=billing" in (rec.peers[0].cert_subject or "")


async def test_tls_peer_without_allow_and_plain_tcp(authority: trustme.CA) -> None:
    rec = Recorder()
    client_ctx = _client_context(authority, "svc-a.internal")
    async with (rec.service.serve("tcp://127.0.0.1:0", ssl=_server_context(authority)) as listener,
                Client(CalcRoute, listener.url, ssl=client_ctx, timeout=5.0) as client):
        await client.call(WORK)
    async with (rec.service.serve("tcp://127.0.0.1:0") as listener,
                Client(CalcRoute, listener.url, timeout=5.0) as client):
        await client.call(WORK)
    tls, plain = rec.peers
    assert tls.cert_names == ("svc-a.internal",)
    assert plain.transport == "tcp" and plain.cert_subject is None and plain.cert_names == ()
    assert plain.address is not None and plain.address.startswith("127.0.0.1:")


def test_allow_on_tcp_needs_client_certificates(authority: trustme.CA) -> None:
    svc = Recorder().service
    with pytest.raises(ConfigError, match="client certificates"):
        svc.serve("tcp://127.0.0.1:0", allow=GATEWAY)
    no_client_certs = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(no_client_certs)
    with pytest.raises(ConfigError, match="client certificates"):
        svc.serve("tcp://127.0.0.1:0", ssl=no_client_certs, allow=GATEWAY)
    with pytest.raises(ConfigError, match="allow must be an Allow"):
        svc.serve("tcp://127.0.0.1:0", ssl=_server_context(authority), allow=["gateway"])
    with pytest.raises(ConfigError, match="cannot tell its callers apart"):
        svc.serve("inproc://guarded", allow=GATEWAY)


# -- CurveZMQ ------------------------------------------------------------------------------


async def test_curve_allow_serves_the_named_key_and_denies_others() -> None:
    rec = Recorder()
    server_pub, server_sec = zmq.curve_keypair()
    good_pub, good_sec = zmq.curve_keypair()
    _other_pub, other_sec = zmq.curve_keypair()
    allow = Allow([Identity("gateway", curve_key=good_pub.decode())])
    async with rec.service.serve("zmq+tcp://127.0.0.1:0", curve_secret_key=server_sec, allow=allow) as listener:
        async with Client(CalcRoute, listener.url, curve_server_key=server_pub, curve_secret_key=good_sec,
                          timeout=5.0) as good:
            assert (await good.call(WORK)).result == 3
            assert (await good.call(Echo(text="x"))).reply == "zmq"
        async with Client(CalcRoute, listener.url, curve_server_key=server_pub, curve_secret_key=other_sec,
                          timeout=5.0) as other:
            for msg in (WORK, Echo(text="x")):
                with pytest.raises(RemoteError) as info:
                    await other.call(msg)
                assert info.value.status is Status.PERMISSION_DENIED
        async with Client(CalcRoute, listener.url, curve_server_key=server_pub, timeout=5.0) as anonymous:
            with pytest.raises(RemoteError) as info:  # a fresh key pair: encrypted, but nobody
                await anonymous.call(WORK)
            assert info.value.status is Status.PERMISSION_DENIED
    assert len(rec.peers) == 2
    peer = rec.peers[0]
    assert peer.transport == "zmq" and peer.curve_key == good_pub.decode()
    assert peer.address == "127.0.0.1"


async def _until(condition: Any, what: str) -> None:
    """Wait (bounded) until ``condition()`` holds, looking once per loop turn."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 5.0
    while not condition():
        if loop.time() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_curve_allow_drops_events_of_others() -> None:
    rec = Recorder()
    server_pub, server_sec = zmq.curve_keypair()
    good_pub, good_sec = zmq.curve_keypair()
    _other_pub, other_sec = zmq.curve_keypair()
    allow = Allow([Identity("gateway", curve_key=good_pub.decode())])
    async with rec.service.serve("zmq+tcp://127.0.0.1:0", curve_secret_key=server_sec, allow=allow) as listener:
        server = listener.server  # type: ignore[attr-defined]
        async with Client(CalcRoute, listener.url, curve_server_key=server_pub, curve_secret_key=other_sec,
                          timeout=5.0) as other:
            await other.publish(CalcDone(work=1, result=1))
            await _until(lambda: server.core.denied == 1, "the other key's event to be refused")
        async with Client(CalcRoute, listener.url, curve_server_key=server_pub, curve_secret_key=good_sec,
                          timeout=5.0) as good:
            await good.publish(CalcDone(work=2, result=2))
            await _until(lambda: rec.events, "the allowed key's event")
    assert len(rec.events) == 1 and server.core.denied == 1


def test_curve_allow_needs_curve_and_no_workers() -> None:
    svc = Recorder().service
    _pub, sec = zmq.curve_keypair()
    allow = Allow([Identity("gw", curve_key=_pub.decode())])
    with pytest.raises(ConfigError, match="allow needs curve_secret_key"):
        svc.serve("zmq+tcp://127.0.0.1:0", allow=allow)
    with pytest.raises(ConfigError, match="workers=0"):
        svc.serve("zmq+tcp://127.0.0.1:0", curve_secret_key=sec, allow=allow, workers=2)


# -- in-process and the Peer itself ----------------------------------------------------------


async def test_a_local_binding_names_the_calling_service() -> None:
    rec = Recorder("back")
    front = Service("front", CalcRoute)

    @front.handler(CalcWork)
    async def work(w: CalcWork, ctx: Context) -> CalcWork:
        reply: CalcWork = await ctx.bindings.back.call(w)
        await ctx.bindings.back.publish(CalcDone(work=1, result=1))
        return reply

    node = Node("n")
    node.add(rec.service)
    node.add(front, bindings={"back": rec.service})
    async with node:
        await front.dispatch(WORK)
    assert rec.peers == [Peer("local", service="front")]
    assert rec.events == [Peer("local", service="front")]


async def test_inproc_and_direct_dispatch_peers(inproc_url: str) -> None:
    rec = Recorder()
    async with rec.service.serve(inproc_url), Client(CalcRoute, inproc_url, timeout=5.0) as client:
        assert (await client.call(Echo(text="x"))).reply == "inproc"
    await rec.service.dispatch(WORK)
    assert rec.peers == [Peer("inproc", inproc_url), UNKNOWN_PEER]


def test_peer_from_certificate_dictionary() -> None:
    cert: dict[str, Any] = {
        "subject": ((("organizationName", "Example, Inc."),), (("commonName", "api, v2"),)),
        "subjectAltName": (("DNS", "api.internal"), ("URI", "spiffe://example/api"), ("IP Address", "10.0.0.1"),
                           ("email", "x@example")),
    }
    peer = peer_from_certificate(cert, "10.0.0.2:4000")
    assert peer.cert_subject == "O=Example\\, Inc.,CN=api\\, v2"
    assert peer.cert_names == ("api.internal", "spiffe://example/api", "10.0.0.1")
    assert peer.cert_common_name == "api, v2"
    assert peer_from_certificate({}, "a") == Peer("tls", "a")
    allow = Allow([Identity("api", cert_name="spiffe://example/api"), Identity("k", curve_key="x" * 40)])
    assert allow.permits(peer) and allow.names(peer) == ["api"]
    assert not allow.permits(Peer("tls", cert_names=("other",)))
    assert allow.permits(Peer("zmq", curve_key="x" * 40))
    with pytest.raises(ConfigError):
        Identity("both", cert_name="a", curve_key="b")
    with pytest.raises(ConfigError):
        Allow([])
