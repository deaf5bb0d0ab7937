"""``[identities]`` and a listener's ``allow`` in a node config: checked before anything
starts, and enforced by the node it builds, over TLS and over CurveZMQ on real sockets."""

from __future__ import annotations

import os
import ssl
import textwrap
from pathlib import Path

import pytest
import trustme

from nanomsg_kernel import Client, Status
from nanomsg_kernel.app.config import NodeConfigError, parse_config
from nanomsg_kernel.app.security import client_tls, read_curve_key, write_curve_keypair
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType
from nanomsg_kernel.errors import RemoteError

WORK = CalcWork(a=2, b=3, op=WorkType.SUM)
CALC = '[services.calc]\nobject = "nanomsg_kernel.contracts.services:calc"\n'


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem, server.pem/key, gateway.pem/key (gateway.internal), intruder.pem/key, and
    Curve key pairs server, batch and stranger."""
    path = tmp_path_factory.mktemp("identities")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(path / "ca.pem"))
    for name, leaf in (("server", ca.issue_cert("127.0.0.1")), ("gateway", ca.issue_cert("gateway.internal")),
                       ("intruder", ca.issue_cert("intruder.internal"))):
        leaf.cert_chain_pems[0].write_to_path(str(path / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(path / f"{name}.key"))
        os.chmod(path / f"{name}.key", 0o600)
    for name in ("server", "batch", "stranger"):
        write_curve_keypair(path / f"curve-{name}")
    return path


def _client_tls(pki: Path, name: str) -> ssl.SSLContext:
    return client_tls(ca=pki / "ca.pem", cert=pki / f"{name}.pem", key=pki / f"{name}.key")


async def test_a_tls_listener_allows_the_identities_its_config_names(pki: Path) -> None:
    text = CALC + textwrap.dedent('''\
        listen = [{ url = "tcp://127.0.0.1:0", tls = { cert = "server.pem", key = "server.key", ca = "ca.pem" }, allow = ["gateway"] }]
        [identities]
        gateway = { cert_name = "gateway.internal" }
        ''')
    node = parse_config(text, str(pki / "node.toml")).build()
    async with node:
        [url] = [listener.url for listener in node.listeners]
        async with Client(CalcRoute, url, ssl=_client_tls(pki, "gateway"), timeout=5.0) as gateway:
            assert (await gateway.call(WORK)).result == 5
        async with Client(CalcRoute, url, ssl=_client_tls(pki, "intruder"), timeout=5.0) as intruder:
            with pytest.raises(RemoteError) as info:
                await intruder.call(WORK)
            assert info.value.status is Status.PERMISSION_DENIED


async def test_a_curve_listener_allows_the_identities_its_config_names(pki: Path) -> None:
    batch_key = read_curve_key(pki / "curve-batch.key", secret=False).decode()
    text = CALC + textwrap.dedent(f'''\
        listen = [{{ url = "zmq+tcp://127.0.0.1:0", curve = {{ secret_key_file = "curve-server.key_secret" }}, allow = ["batch", "ops"] }}]
        [identities]
        batch = {{ curve_key = "{batch_key}" }}
        ops = {{ curve_key_file = "curve-stranger.key" }}
        gateway = {{ cert_name = "gateway.internal" }}
        ''')
    spec = parse_config(text, str(pki / "node.toml"))
    node = spec.build()
    server_key = read_curve_key(pki / "curve-server.key", secret=False)
    async with node:
        [url] = [listener.url for listener in node.listeners]
        for name in ("batch", "stranger"):  # both named: ops is the stranger's key file
            secret = read_curve_key(pki / f"curve-{name}.key_secret", secret=True)
            async with Client(CalcRoute, url, curve_server_key=server_key, curve_secret_key=secret,
                              timeout=5.0) as client:
                assert (await client.call(WORK)).result == 5
        async with Client(CalcRoute, url, curve_server_key=server_key, timeout=5.0) as anonymous:
            with pytest.raises(RemoteError) as info:
                await anonymous.call(WORK)
            assert info.value.status is Status.PERMISSION_DENIED


@pytest.mark.parametrize(("listen", "identities", "message"), [
    ('{ url = "tcp://127.0.0.1:0", tls = { cert = "server.pem", key = "server.key", ca = "ca.pem" }, allow = ["nobody"] }',
     'gw = { cert_name = "gw" }', "allow[0]: no identity named 'nobody' in [identities] (identities: gw)"),
    ('{ url = "tcp://127.0.0.1:0", tls = { cert = "server.pem", key = "server.key" }, allow = ["gw"] }',
     'gw = { cert_name = "gw" }', "allow: needs tls with a ca"),
    ('{ url = "tcp://127.0.0.1:0", allow = ["gw"] }', 'gw = { cert_name = "gw" }', "allow: needs tls with a ca"),
    ('{ url = "zmq+tcp://127.0.0.1:0", allow = ["k"] }', 'k = { curve_key_file = "curve-batch.key" }',
     "allow: needs curve"),
    ('{ url = "inproc://x", allow = ["gw"] }', 'gw = { cert_name = "gw" }', "cannot tell its callers apart"),
    ('{ url = "zmq+tcp://127.0.0.1:0", curve = { secret_key_file = "curve-server.key_secret" }, allow = ["gw"] }',
     'gw = { cert_name = "gw" }', "is a certificate name; a ZeroMQ listener knows callers by Curve keys"),
    ('{ url = "tcp://127.0.0.1:0", allow = "gw" }', 'gw = { cert_name = "gw" }', "expected a list of identity names"),
    ('"inproc://y"', 'gw = { cert_name = "a", curve_key_file = "curve-batch.key" }',
     "identities.gw: give exactly one of cert_name, curve_key and curve_key_file"),
    ('"inproc://y"', 'gw = { curve_key = "short" }', "identities.gw.curve_key: expected a client's public key"),
    ('"inproc://y"', 'gw = { curve_key_file = "absent.key" }', "identities.gw.curve_key_file:"),
    ('"inproc://y"', 'gw = { name = "x" }', "identities.gw.name: unknown key"),
    ('"inproc://y"', 'gw = "gateway.internal"', "identities.gw: expected a table"),
])
def test_identity_and_allow_problems_are_reported(pki: Path, listen: str, identities: str, message: str) -> None:
    text = CALC + f"listen = [{listen}]\n[identities]\n{identities}\n"
    with pytest.raises(NodeConfigError) as info:
        parse_config(text, str(pki / "node.toml"))
    assert any(message in p for p in info.value.problems), info.value.problems
