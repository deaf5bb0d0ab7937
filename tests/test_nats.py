"""nats:// against real nats-server processes on loopback: queue groups, an instance
killed, a cluster losing the client's server, no responders, plain nats-py peers, limits,
events, a dropped connection, credentials and TLS. (The conformance suite runs over
nats:// too: ``conftest.TRANSPORT_URLS``.)"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
import trustme
from natsserver import NatsServer, nats_cluster

from nanomsg_kernel import Client, Context, Service, evolve
from nanomsg_kernel.contracts.calc import CalcDone, CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.errors import ConfigError, DeadlineExceeded, ServiceError, Status, Unavailable
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.nats import NatsListener, PayloadTooLarge
from nanomsg_kernel.transports.nats_url import parse_nats_url, redact

WAIT = 15.0
"""Bound of every wait in these tests."""
INSTANCE = Path(__file__).with_name("nats_instance.py")
CODEC = CalcRoute.codec()

calc = Service("nats-calc", CalcRoute)


@calc.handler(CalcWork)
async def work(w: CalcWork) -> CalcWork:
    return evolve(w, result=w.a + w.b)


@calc.handler(Echo)
async def echo(msg: Echo) -> Echo:
    return evolve(msg, reply=msg.text * 2)


@contextlib.contextmanager
def instance(url: str) -> Iterator[subprocess.Popen[str]]:
    """A service instance in a child process, ready (subscribed); killed at the end."""
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, str(INSTANCE), url], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=root)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"  # ends at once if the child fails
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


async def eventually_answers(client: Client, timeout: float = WAIT) -> None:
    """Wait until a call gets through (subscription interest crosses a cluster's routes)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                await client.call(Echo(text="up"), timeout=1.0)
                return
            except (Unavailable, DeadlineExceeded):
                await asyncio.sleep(0.01)


# -- URLs -------------------------------------------------------------------------------


def test_url_parsing_and_redaction() -> None:
    a = parse_nats_url("nats://alice:s3cret@127.0.0.1:4222,[::1]:4223/calc.v2?tls=1&queue=q")
    assert a.servers == ["nats://127.0.0.1:4222", "nats://[::1]:4223"]
    assert a.subject == "calc.v2"
    assert a.options == {"user": "alice", "password": "s3cret", "tls": "1", "queue": "q"}
    assert parse_nats_url("nats://tok@h:1/s").options == {"token": "tok"}
    assert redact("nats://alice:s3cret@h:1/s?token=t0k&user=alice") == "nats://alice:***@h:1/s?token=***&user=alice"
    assert redact("nats://t0k@h:1/s") == "nats://***@h:1/s"
    for bad in ("nats://h:1", "nats://h:1/", "nats://h/s", "nats://h:0/s", "nats://h:1/a b", "nats://h:1/a.*",
                "nats://h:1/a..b", "nats://h:1/s?bogus=1"):
        with pytest.raises(ConfigError):
            parse_nats_url(bad)
    with pytest.raises(ConfigError, match="not both"):
        Client(CalcRoute, "nats://u:p@h:1/s?token=x")
    with pytest.raises(ConfigError, match="unknown nats:// option.* max_in_fligth"):
        calc.serve("nats://h:1/s", max_in_fligth=5)
    with pytest.raises(ConfigError, match="listener's option"):
        Client(CalcRoute, "nats://h:1/s?queue=q")


# -- queue groups and instances -----------------------------------------------------------


async def test_two_instances_on_one_subject_both_answer(nats_server: NatsServer) -> None:
    url = f"nats://{nats_server.address}/calc.shared"
    async with calc.serve(url) as one, calc.serve(url) as two, Client(CalcRoute, url) as client:
        replies = await asyncio.gather(*(client.call(CalcWork(a=i, b=1, op=WorkType.SUM), timeout=WAIT)
                                         for i in range(400)))
        assert [r.result for r in replies] == [i + 1 for i in range(400)]
        assert isinstance(one, NatsListener) and isinstance(two, NatsListener)
        served = [lst.core.in_flight for lst in (one, two) if lst.core is not None]
        assert served == [0, 0]
    # each instance took a share: both cores started calls
    assert one.core is not None and two.core is not None
    assert one.core.peak_in_flight > 0 and two.core.peak_in_flight > 0


async def test_an_instance_killed_fails_at_most_the_calls_it_had(nats_server: NatsServer) -> None:
    url = f"nats://{nats_server.address}/calc.kill"
    with instance(url) as first, instance(url) as second:
        async with Client(CalcRoute, url) as client:
            pids = collections.Counter([(await client.call(Echo(text="x"), timeout=WAIT)).reply for _ in range(60)])
            assert set(pids) == {str(first.pid), str(second.pid)}
            outcomes: list[str] = []

            async def caller(n: int) -> None:
                for _ in range(n):
                    try:
                        outcomes.append((await client.call(Echo(text="x"), timeout=1.0)).reply or "")
                    except DeadlineExceeded:
                        outcomes.append("failed")

            calls = asyncio.gather(*(caller(40) for _ in range(8)))
            async with asyncio.timeout(WAIT):
                while len(outcomes) < 40:
                    await asyncio.sleep(0.001)
            first.kill()  # SIGKILL: no goodbye
            await asyncio.wait_for(calls, WAIT * 2)
            failed = outcomes.count("failed")
            assert failed <= 8  # at most one call in flight per caller was lost with it
            after = outcomes[outcomes.index("failed") + 1:] if failed else outcomes[40:]
            assert str(second.pid) in after
            assert (await client.call(Echo(text="after"), timeout=WAIT)).reply == str(second.pid)


async def test_cluster_the_clients_server_killed_calls_go_on() -> None:
    with nats_cluster(3) as (s1, s2, s3):
        service_url = f"nats://{s1.address}/calc.cluster"
        client_url = f"nats://{s2.address},{s3.address}/calc.cluster"
        async with calc.serve(service_url), Client(CalcRoute, client_url, connect_timeout=WAIT) as client:
            await eventually_answers(client)
            conn = client.connection
            connected_to = conn.link.nc.connected_url.port  # type: ignore[attr-defined]
            victim, other = (s2, s3) if connected_to == s2.port else (s3, s2)
            victim.kill()
            failures = 0
            async with asyncio.timeout(WAIT):
                while True:
                    try:
                        reply = await client.call(CalcWork(a=40, b=2, op=WorkType.SUM), timeout=1.0)
                        break
                    except (Unavailable, DeadlineExceeded):
                        failures += 1
                        await asyncio.sleep(0.01)
            assert reply.result == 42
            assert conn.link.nc.connected_url.port == other.port  # type: ignore[attr-defined]
            assert conn.link.returns == 1
            results = await asyncio.gather(*(client.call(CalcWork(a=i, b=0, op=WorkType.SUM), timeout=WAIT)
                                             for i in range(100)))
            assert [r.result for r in results] == list(range(100))


# -- failing fast and clearly ---------------------------------------------------------------


async def test_no_responders_fails_at_once(nats_server: NatsServer) -> None:
    url = f"nats://{nats_server.address}/calc.nobody"
    client = Client(CalcRoute, url)
    loop = asyncio.get_running_loop()
    try:
        began = loop.time()
        with pytest.raises(Unavailable, match="no responders"):
            await client.call(Echo(text="anyone?"), timeout=30.0)
        async with calc.serve(url):
            assert (await client.call(Echo(text="a"), timeout=WAIT)).reply == "aa"
        began = loop.time()
        with pytest.raises(Unavailable, match="no responders"):  # connected, and nobody left
            await client.call(Echo(text="anyone?"), timeout=30.0)
        assert loop.time() - began < 5.0  # at once, not at the 30 s deadline
        assert client.connection.no_responders >= 1  # type: ignore[attr-defined]
    finally:
        await client.close()


async def test_a_codec_frame_sent_with_plain_nats_py_is_answered(nats_server: NatsServer) -> None:
    url = f"nats://{nats_server.address}/calc.plain"
    async with calc.serve(url):
        nc = await nats.connect(nats_server.url)
        try:
            frame = CODEC.encode(CalcWork(a=20, b=22, op=WorkType.SUM), correlation_id=7, timeout_ms=5000)
            msg = await nc.request("calc.plain", frame, timeout=WAIT)
            header, reply = CODEC.decode_frame(msg.data)
            assert (header.kind, header.correlation_id, reply.result) == (Kind.RESPONSE, 7, 42)
        finally:
            await nc.close()


async def test_frames_over_max_payload_are_refused_before_sending(tmp_path: Path) -> None:
    conf = tmp_path / "small.conf"
    conf.write_text("max_payload: 4096\n")
    server = NatsServer(["-c", str(conf)]).start()
    try:
        url = f"nats://{server.address}/calc.big"
        async with calc.serve(url) as listener, Client(CalcRoute, url) as client:
            with pytest.raises(PayloadTooLarge) as e:
                await client.call(Echo(text="x" * 5000), timeout=WAIT)
            assert e.value.status is Status.RESOURCE_EXHAUSTED
            assert "max_payload of 4096 bytes" in str(e.value) and "max_body_size: 16777216" in str(e.value)
            # a reply that would be over max_payload is replaced by an error frame naming both limits
            with pytest.raises(ServiceError) as r:
                await client.call(Echo(text="y" * 3000), timeout=WAIT)
            assert r.value.status is Status.RESOURCE_EXHAUSTED
            assert "max_payload of 4096 bytes" in r.value.message
            assert isinstance(listener, NatsListener) and listener.oversized_replies == 1
            assert (await client.call(Echo(text="ok"), timeout=WAIT)).reply == "okok"
    finally:
        server.close()


async def test_a_dropped_connection_fails_calls_at_once_and_they_go_on_after(nats_server: NatsServer) -> None:
    url = f"nats://{nats_server.address}/calc.drop"
    hold = asyncio.Event()
    seen: list[str] = []
    slow = Service("nats-slow", CalcRoute)

    @slow.handler(Echo)
    async def wait(msg: Echo) -> Echo:
        seen.append(msg.text)
        await hold.wait()
        return evolve(msg, reply=msg.text)

    async with slow.serve(url), Client(CalcRoute, url) as client:
        call = asyncio.ensure_future(client.call(Echo(text="lost"), timeout=30.0))
        conn = client.connection
        async with asyncio.timeout(WAIT):
            while not len(conn.pending):  # type: ignore[attr-defined]
                await asyncio.sleep(0.001)
        loop = asyncio.get_running_loop()
        began = loop.time()
        port = nats_server.port
        nats_server.kill()
        with pytest.raises(Unavailable, match="connection to the NATS server lost"):
            await asyncio.wait_for(call, WAIT)
        assert loop.time() - began < 5.0
        with pytest.raises(Unavailable, match="reconnecting"):
            await client.call(Echo(text="meanwhile"), timeout=5.0)
        nats_server.start_on(port)
        hold.set()
        async with asyncio.timeout(WAIT):
            while True:
                try:
                    assert (await client.call(Echo(text="back"), timeout=1.0)).reply == "back"
                    break
                except (Unavailable, DeadlineExceeded):
                    await asyncio.sleep(0.01)
    # nothing was sent later behind the callers' backs: the call refused while reconnecting
    # never reached the service, and the lost one ran at most once
    assert "meanwhile" not in seen and seen.count("lost") <= 1
    assert conn.link.drops == 1  # type: ignore[attr-defined]


# -- events ---------------------------------------------------------------------------------


async def test_an_event_reaches_each_subscribing_service_once(nats_server: NatsServer) -> None:
    seen: collections.Counter[str] = collections.Counter()
    done = asyncio.Event()

    def subscriber(name: str) -> Service:
        svc = Service(f"nats-{name}", CalcRoute)

        @svc.subscribe(CalcDone)
        async def on_done(event: CalcDone) -> None:
            seen[name] += 1
            if sum(seen.values()) == 20 * 2:
                done.set()

        return svc

    audit, billing = subscriber("audit"), subscriber("billing")
    base = f"nats://{nats_server.address}"
    async with audit.serve(f"{base}/audit?events=calc.ev"), audit.serve(f"{base}/audit?events=calc.ev"), \
            billing.serve(f"{base}/billing?events=calc.ev"), billing.serve(f"{base}/billing?events=calc.ev"), \
            calc.serve(f"{base}/calc.ev"), Client(CalcRoute, f"{base}/calc.ev") as client:
        for i in range(20):
            await client.publish(CalcDone(work=i, result=i))
        await asyncio.wait_for(done.wait(), WAIT)
        await client.call(Echo(text="sync"), timeout=WAIT)  # later copies would have come by now
    assert seen == {"audit": 20, "billing": 20}  # once per service, not once per instance


# -- security ---------------------------------------------------------------------------------


async def test_user_password_and_token_and_no_credential_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "pa55-w0rd-XYZZY"
    server = NatsServer(["--user", "alice", "--pass", secret]).start()
    token_server = NatsServer(["--auth", "t0ken-PLUGH"]).start()
    try:
        url = f"nats://alice:{secret}@{server.address}/calc.auth"
        async with calc.serve(url) as listener, Client(CalcRoute, url) as client:
            assert (await client.call(Echo(text="a"), timeout=WAIT)).reply == "aa"
            assert secret not in listener.url and secret not in repr(listener) and secret not in repr(client.connection)
        query = f"nats://{server.address}/calc.auth?user=alice&password={secret}"
        async with calc.serve(query), Client(CalcRoute, f"nats://{server.address}/calc.auth", user="alice",
                                             password=secret) as client:
            assert (await client.call(Echo(text="b"), timeout=WAIT)).reply == "bb"
        with pytest.raises(Unavailable) as wrong:
            await Client(CalcRoute, f"nats://alice:wrong-{secret}@{server.address}/calc.auth",
                         connect_timeout=3).connect()
        assert secret not in str(wrong.value)
        tok = f"nats://{token_server.address}/calc.tok?token=t0ken-PLUGH"
        async with calc.serve(tok), Client(CalcRoute, tok) as client:
            assert (await client.call(Echo(text="c"), timeout=WAIT)).reply == "cc"
    finally:
        server.close()
        token_server.close()
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert secret not in text and "t0ken-PLUGH" not in text


async def test_tls_to_the_nats_server(tmp_path: Path, tls_authority: trustme.CA) -> None:
    cert = tls_authority.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    tls_authority.cert_pem.write_to_path(str(ca_file))
    server = NatsServer(["--tls", "--tlscert", str(cert_file), "--tlskey", str(key_file)]).start()
    try:
        url = f"nats://{server.address}/calc.tls?tls_ca={ca_file}"
        async with calc.serve(url), Client(CalcRoute, url) as client:
            assert (await client.call(Echo(text="t"), timeout=WAIT)).reply == "tt"
        with pytest.raises(Unavailable):  # the system's authorities do not know this one
            await Client(CalcRoute, f"nats://{server.address}/calc.tls?tls=1", connect_timeout=3).connect()
    finally:
        server.close()


async def test_an_nkey_seed_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import nkeys

    caplog.set_level(logging.DEBUG)
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "calc.nk"
    seed_file.write_bytes(seed + b"\n")
    conf = tmp_path / "nkeys.conf"
    conf.write_text(f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}\n')
    server = NatsServer(["-c", str(conf)]).start()
    try:
        url = f"nats://{server.address}/calc.nkey?nkey={seed_file}"
        async with calc.serve(url), Client(CalcRoute, url) as client:
            assert (await client.call(Echo(text="n"), timeout=WAIT)).reply == "nn"
        # no key: refused (the server's "Authorization Violation", or its closing the connection)
        with pytest.raises(Unavailable, match="cannot connect to NATS"):
            await Client(CalcRoute, f"nats://{server.address}/calc.nkey", connect_timeout=3).connect()
    finally:
        server.close()
    assert seed.decode() not in caplog.text


async def test_a_node_binding_by_nats_url_calls_and_publishes(nats_server: NatsServer) -> None:
    """The gateway of one node bound to calc of another by a nats:// URL: its call crosses
    NATS, and so does the CalcDone event it publishes, which calc's subscriber receives."""
    from nanomsg_kernel.contracts import services
    from nanomsg_kernel.node import Node

    url = f"nats://{nats_server.address}/calc.node"
    calc_node, gateway_node = Node("calc-node"), Node("gateway-node")
    calc_node.add(services.calc, listen=[url])
    gateway_node.add(services.gateway, bindings={"calc": url})
    before = len(services.done_events)
    async with calc_node, gateway_node:
        done = await services.gateway.dispatch(CalcWork(a=6, b=7, op=WorkType.MULT), deadline=None)
        assert done.result == 42
        async with asyncio.timeout(WAIT):
            while not services.done_events or services.done_events[-1] != CalcDone(work=6, result=42):
                await asyncio.sleep(0.001)
    assert len(services.done_events) == min(before + 1, 100)


async def test_ctx_peer_names_nats_and_the_reply_subject(nats_server: NatsServer) -> None:
    seen: list[tuple[str, str | None]] = []
    peers = Service("peers", CalcRoute)

    @peers.handler(Echo)
    async def who(msg: Echo, ctx: Context) -> Echo:
        seen.append((ctx.peer.transport, ctx.peer.address))
        return msg

    url = f"nats://{nats_server.address}/calc.peer"
    async with peers.serve(url), Client(CalcRoute, url) as client:
        assert (await client.call(Echo(text="hi"), timeout=WAIT)).text == "hi"
    (transport, address), = seen
    assert transport == "nats"
    assert address is not None and address.startswith("_INBOX.")
