"""TLS and CurveZMQ declared in a node config and given to ``call``, over real sockets.

Certificates come from an authority made for the test (trustme); CurveZMQ keys from
``nanomsg-kernel curve-keys``. Nodes run as ``nanomsg-kernel serve`` subprocesses (or
in-process, for a binding), and ``call`` runs as the user runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cli_serving import serving as serve_process
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)

from nanomsg_kernel.app.config import NodeConfigError, parse_config
from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType

KERNEL = "nanomsg_kernel.contracts.calc:CalcRoute"
WORK = '{"a": 6, "b": 3, "op": "MULT"}'


def cli(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "nanomsg_kernel.app.cli", *args], cwd=cwd, capture_output=True,
                          timeout=60, check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@contextlib.contextmanager
def serving(config: Path) -> Iterator[dict[str, str]]:
    """``nanomsg-kernel serve CONFIG`` until the block ends; the URL of each service's first listener."""
    with serve_process([sys.executable, "-m", "nanomsg_kernel.app.cli", "serve", str(config)]) as urls:
        yield urls


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with ca.pem, server.pem/server.key (127.0.0.1, localhost), client.pem/client.key,
    and other-ca.pem (an authority that issued nothing here)."""
    path = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(path / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(path / "other-ca.pem"))
    for name, leaf in (("server", ca.issue_cert("127.0.0.1", "localhost")), ("client", ca.issue_cert("client.test"))):
        leaf.cert_chain_pems[0].write_to_path(str(path / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(path / f"{name}.key"))
        os.chmod(path / f"{name}.key", 0o600)
    return path


def node_config(directory: Path, name: str, listen: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(f'[services.calc]\nobject = "nanomsg_kernel.contracts.services:calc"\nlisten = [{listen}]\n',
                    encoding="utf-8")
    return path


# -- TLS ----------------------------------------------------------------------------------------


def test_a_tls_node_from_its_config_answers_call_with_tls_ca(pki: Path) -> None:
    config = node_config(pki, "tls", '{ url = "tcp://127.0.0.1:0", tls = { cert = "server.pem", key = "server.key" } }')
    with serving(config) as urls:
        url = urls["calc"]
        code, out, err = cli("call", url, "CalcWork", "-k", KERNEL, "--json", WORK, "--tls-ca", str(pki / "ca.pem"))
        assert code == 0, err
        assert json.loads(out)["result"] == 18
        code, out, err = cli("call", url.replace("127.0.0.1", "localhost"), "CalcWork", "-k", KERNEL, "--json", WORK,
                             "--tls-ca", str(pki / "ca.pem"), "--compact")
        assert code == 0, err
        code, out, err = cli("call", url, "CalcWork", "-k", KERNEL, "--json", WORK, "--tls-ca", str(pki / "ca.pem"),
                             "--tls-server-name", "other.test")
        assert (code, out) == (3, "") and "certificate" in err
        code, out, err = cli("call", url, "CalcWork", "-k", KERNEL, "--json", WORK, "--tls-ca", str(pki / "other-ca.pem"))
        assert (code, out) == (3, "") and "certificate verify failed" in err
        code, out, err = cli("call", url, "CalcWork", "-k", KERNEL, "--json", WORK, "--timeout", "3")
        assert code in (3, 4) and out == ""  # plain TCP to a TLS listener: no answer


def test_mutual_tls_refuses_a_client_without_a_certificate(pki: Path) -> None:
    listen = '{ url = "tcp://127.0.0.1:0", tls = { cert = "server.pem", key = "server.key", ca = "ca.pem" } }'
    with serving(node_config(pki, "mtls", listen)) as urls:
        url = urls["calc"]
        code, out, err = cli("call", url, "CalcWork", "-k", KERNEL, "--json", WORK, "--tls-ca", str(pki / "ca.pem"),
                             "--timeout", "3")
        # Refused at once (3: the server closes the connection), never by waiting out the timeout.
        assert (code, out) == (3, ""), err
        code, out, err = cli("call", url, "CalcWork", "-k", KERNEL, "--json", WORK, "--tls-ca", str(pki / "ca.pem"),
                             "--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "client.key"))
        assert code == 0, err
        assert json.loads(out)["result"] == 18


async def test_a_binding_reaches_a_mutual_tls_listener_with_its_config_tls_table(pki: Path) -> None:
    calc_node = parse_config(
        '[services.calc]\nobject = "nanomsg_kernel.contracts.services:calc"\n'
        'listen = [{ url = "tcp://127.0.0.1:0", tls = { cert = "server.pem", key = "server.key", ca = "ca.pem" } }]\n',
        str(pki / "calc.toml"),
    ).build()
    await calc_node.start()
    try:
        url = calc_node.listeners[0].url
        gateway_config = parse_config(
            '[services.gateway]\nobject = "nanomsg_kernel.contracts.services:gateway"\n'
            'listen = ["tcp://127.0.0.1:0"]\n'
            f'bindings = {{ calc = {{ url = "{url}", tls = {{ ca = "ca.pem", cert = "client.pem", key = "client.key" }} }} }}\n',
            str(pki / "gateway.toml"),
        )
        gateway_node = gateway_config.build()
        await gateway_node.start()
        try:
            async with Client(CalcRoute, gateway_node.listeners[0].url, timeout=10) as client:
                done = await client.call(CalcWork(a=7, b=6, op=WorkType.MULT))
            assert done.result == 42
            assert calc_node["calc"].metrics.snapshot()  # the work crossed the TLS connection
        finally:
            await gateway_node.close(1.0)
    finally:
        await calc_node.close(1.0)


# -- CurveZMQ -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def curve_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """server, client and stranger key pairs made by ``nanomsg-kernel curve-keys``."""
    path = tmp_path_factory.mktemp("curve")
    for name in ("server", "client", "stranger"):
        code, out, err = cli("curve-keys", str(path / name))
        assert code == 0, err
        assert out.startswith("public key ") and out.endswith(f"secret key in {path / name}.key_secret\n")
    return path


def test_curve_keys_are_written_once_and_the_secret_one_privately(curve_keys: Path) -> None:
    assert stat.S_IMODE((curve_keys / "server.key_secret").stat().st_mode) == 0o600
    assert 'secret-key = "' not in (curve_keys / "server.key").read_text(encoding="ascii")
    code, out, err = cli("curve-keys", str(curve_keys / "server"))
    assert (code, out) == (2, "")
    assert err == f"error: {curve_keys / 'server'}.key already exists (keys are never overwritten)\n"


def test_a_curve_node_from_its_config_answers_an_allowed_client_and_refuses_others(curve_keys: Path) -> None:
    listen = ('{ url = "zmq+tcp://127.0.0.1:0", curve = { secret_key_file = "server.key_secret", '
              'allow_files = ["client.key"] } }')
    with serving(node_config(curve_keys, "curve", listen)) as urls:
        url = urls["calc"]
        server_key = f"@{curve_keys / 'server.key'}"
        code, out, err = cli("call", url, "CalcWork", "-k", KERNEL, "--json", WORK, "--curve-server-key", server_key,
                             "--curve-key-file", str(curve_keys / "client.key_secret"))
        assert code == 0, err
        assert json.loads(out)["result"] == 18
        refused = [
            ("--curve-server-key", server_key, "--curve-key-file", str(curve_keys / "stranger.key_secret")),
            ("--curve-server-key", server_key),  # a fresh, anonymous key pair
            ("--curve-server-key", f"@{curve_keys / 'stranger.key'}", "--curve-key-file",
             str(curve_keys / "client.key_secret")),  # the wrong server key
            (),  # no Curve at all
        ]
        for args in refused:
            code, out, err = cli("call", url, "CalcWork", "-k", KERNEL, "--json", WORK, "--timeout", "2", *args)
            assert code in (3, 4) and out == "", (args, code, err)


def test_a_curve_listener_without_an_allow_list_takes_any_client_that_knows_its_key(curve_keys: Path) -> None:
    listen = '{ url = "zmq+tcp://127.0.0.1:0", curve = { secret_key_file = "server.key_secret" } }'
    with serving(node_config(curve_keys, "open-curve", listen)) as urls:
        public = (curve_keys / "server.key").read_text(encoding="ascii").split('public-key = "')[1][:40]
        code, out, err = cli("call", urls["calc"], "Echo", "-k", KERNEL, "--json", '{"text": "hi"}',
                             "--curve-server-key", public, "--compact")
        assert (code, out) == (0, '{"text": "hi", "reply": "HI"}\n'), err


# -- what is refused, and how it is said ---------------------------------------------------------


def problems(text: str, path: Path) -> list[str]:
    with pytest.raises(NodeConfigError) as caught:
        parse_config(text, str(path))
    return caught.value.problems


def listener(table: str) -> str:
    return f'[services.calc]\nobject = "nanomsg_kernel.contracts.services:calc"\nlisten = [{table}]\n'


def test_config_errors_name_the_key_and_the_file(pki: Path, curve_keys: Path) -> None:
    path = pki / "node.toml"
    cases = {
        '{ url = "tcp://127.0.0.1:0", tls = { cert = "nope.pem" } }':
            f"services.calc.listen[0].tls: cannot read the certificate file {pki / 'nope.pem'}: No such file or directory",
        '{ url = "tcp://127.0.0.1:0", tls = { cert = "server.pem", key = "client.key" } }':
            f"services.calc.listen[0].tls: cannot load the certificate and key {pki / 'server.pem'} and "
            f"{pki / 'client.key'}: key values mismatch",
        '{ url = "tcp://127.0.0.1:0", tls = { cert = "ca.pem", key = "server.pem" } }':
            "services.calc.listen[0].tls: cannot load the certificate and key",
        '{ url = "tcp://127.0.0.1:0", tls = { key = "server.key" } }':
            "services.calc.listen[0].tls.cert: missing: the server's certificate chain (PEM)",
        '{ url = "tcp://127.0.0.1:0", tls = { cert = "server.pem", verify = true } }':
            "services.calc.listen[0].tls.verify: unknown key (expected one of: cert, key, ca)",
        '{ url = "tcp://127.0.0.1:0", tls = { cert = "server.pem", key = "server.key", ca = "server.key" } }':
            f"services.calc.listen[0].tls: cannot load the certificate authority {pki / 'server.key'}: "
            "no certificate or crl found",
        '{ url = "zmq+tcp://127.0.0.1:0", tls = { cert = "server.pem" } }':
            "services.calc.listen[0].tls: tls is for tcp:// URLs, not zmq+tcp:// (ZeroMQ is secured with curve = { … })",
        '{ url = "tcp://127.0.0.1:0", curve = { secret_key_file = "x" } }':
            "services.calc.listen[0].curve: curve is for zmq+tcp:// and zmq+ipc:// URLs, not tcp:// "
            "(tcp:// is secured with tls = { … })",
        '{ url = "tcp://127.0.0.1:0", ssl = "server.pem" }':
            'services.calc.listen[0].ssl: use tls = { cert = "…", key = "…", ca = "…" } (ssl takes a Python object)',
        f'{{ url = "zmq+tcp://127.0.0.1:0", curve = {{ secret_key_file = "{curve_keys / "server.key"}" }} }}':
            f"services.calc.listen[0].curve.secret_key_file: the CurveZMQ secret key file {curve_keys / 'server.key'} "
            "holds no secret key (this looks like a public key file)",
        f'{{ url = "zmq+tcp://127.0.0.1:0", curve = {{ secret_key_file = "{curve_keys / "server.key_secret"}", '
        'allow = ["not a key"] } }':
            "services.calc.listen[0].curve.allow[0]: expected a client's public key (40 Z85 characters), got 'not a key' "
            "(key files go in allow_files)",
        '{ url = "zmq+tcp://127.0.0.1:0", curve = { secret_key_file = "ca.pem" } }':
            f"services.calc.listen[0].curve.secret_key_file: the CurveZMQ secret key file {pki / 'ca.pem'} holds no "
            "secret key",
    }
    for table, expected in cases.items():
        found = problems(listener(table), path)
        assert len(found) == 1 and found[0].startswith(f"{path}: {expected}"), (table, found)


def test_binding_tables_are_checked_too(pki: Path) -> None:
    path = pki / "node.toml"
    head = '[services.gateway]\nobject = "nanomsg_kernel.contracts.services:gateway"\nlisten = ["inproc://gw-check"]\n'
    cases = {
        'calc = { url = "tcp://127.0.0.1:7", tls = { ca = "absent.pem" } }':
            f"services.gateway.bindings.calc.tls: cannot read the certificate authority file {pki / 'absent.pem'}",
        'calc = { url = "tcp://127.0.0.1:7", tls = { key = "client.key" } }':
            "services.gateway.bindings.calc.tls: a TLS key needs its certificate",
        'calc = { url = "zmq+tcp://127.0.0.1:7", curve = { secret_key_file = "x" } }':
            "services.gateway.bindings.calc.curve: give the service's public key as server_key or server_key_file",
        'calc = { url = "zmq+tcp://127.0.0.1:7", curve = { server_key = "short" } }':
            "services.gateway.bindings.calc.curve.server_key: expected the service's public key (40 Z85 characters)",
        'calc = { tls = { ca = "ca.pem" } }':
            "services.gateway.bindings.calc.url: expected the URL of the service, got None",
        'calc = { url = "tcp://127.0.0.1:7", retries = 3 }':
            "services.gateway.bindings.calc.retries: unknown key (expected one of: url, tls, curve, nats)",
    }
    for binding, expected in cases.items():
        found = problems(f"{head}[services.gateway.bindings]\n{binding}\n", path)
        assert len(found) == 1 and found[0].startswith(f"{path}: {expected}"), (binding, found)


def test_an_encrypted_key_is_refused_and_a_readable_one_is_warned_about(pki: Path, tmp_path: Path) -> None:
    key = load_pem_private_key((pki / "server.key").read_bytes(), None)
    (tmp_path / "locked.key").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"secret")))
    for name in ("server.pem", "server.key"):
        (tmp_path / name).write_bytes((pki / name).read_bytes())
    path = tmp_path / "node.toml"
    found = problems(listener('{ url = "tcp://127.0.0.1:0", tls = { cert = "server.pem", key = "locked.key" } }'), path)
    assert found == [f"{path}: services.calc.listen[0].tls: cannot load {tmp_path / 'server.pem'} and "
                     f"{tmp_path / 'locked.key'}: the private key is encrypted (give a key file without a password)"]
    os.chmod(tmp_path / "server.key", 0o644)
    config = parse_config(listener('{ url = "tcp://127.0.0.1:0", tls = { cert = "server.pem", key = "server.key" } }'),
                          str(path))
    assert config.warnings == (f"{path}: services.calc.listen[0].tls.key: {tmp_path / 'server.key'} can be read by "
                               "other users (chmod 600 it)",)


def test_call_security_options_that_do_not_fit_are_usage_errors(pki: Path) -> None:
    cases = [
        (("zmq+tcp://127.0.0.1:7", "--tls-ca", str(pki / "ca.pem")),
         "error: the --tls options are for tcp:// URLs, not zmq+tcp://; ZeroMQ is secured with --curve-server-key\n"),
        (("tcp://127.0.0.1:7", "--curve-server-key", "x" * 40),
         "error: the --curve options are for zmq+tcp:// and zmq+ipc:// URLs, not tcp://; tcp:// is secured with "
         "--tls-ca\n"),
        (("zmq+tcp://127.0.0.1:7", "--curve-key-file", str(pki / "ca.pem")),
         "error: --curve-key-file needs --curve-server-key (the service's public key)\n"),
        (("tcp://127.0.0.1:7", "--tls-ca", str(pki / "absent.pem")),
         f"error: cannot read the certificate authority file {pki / 'absent.pem'}: No such file or directory\n"),
        (("zmq+tcp://127.0.0.1:7", "--curve-server-key", "not-a-key"),
         "error: --curve-server-key: expected 40 Z85 characters or @FILE, got 'not-a-key'\n"),
    ]
    for args, expected in cases:
        code, out, err = cli("call", args[0], "Echo", "-k", KERNEL, *args[1:])
        assert (code, out, err) == (2, "", expected), args


def test_the_tls_example_serves_as_its_comments_say(tmp_path: Path) -> None:
    example = (Path(__file__).resolve().parent.parent / "examples" / "tls_node.toml").read_text(encoding="utf-8")
    assert ":7443" in example
    (tmp_path / "tls_node.toml").write_text(example.replace(":7443", ":0"), encoding="utf-8")  # no fixed port here
    (tmp_path / "tls_certs").mkdir()
    subprocess.run([sys.executable, "-m", "trustme", "-q", "-d", str(tmp_path / "tls_certs"), "-i", "127.0.0.1",
                    "localhost"], check=True, timeout=60)
    with serving(tmp_path / "tls_node.toml") as urls:
        code, out, err = cli("call", urls["calc"], "CalcWork", "--kernel", KERNEL, "--json", '{"a": 6, "b": 7, "op": "MULT"}',
                             "--tls-ca", str(tmp_path / "tls_certs" / "client.pem"))
        assert code == 0, err
        assert json.loads(out)["result"] == 42


def test_the_config_examples_in_the_docs_are_valid_toml_with_known_keys(tmp_path: Path) -> None:
    import re
    import tomllib

    root = Path(__file__).resolve().parent.parent
    blocks = [block for page in ("docs/cli/serve.md", "docs/security.md")
              for block in re.findall(r"```toml\n(.*?)```", (root / page).read_text(encoding="utf-8"), re.S)]
    assert len(blocks) >= 4
    for block in blocks:
        tomllib.loads(block)
        if "[services." not in block:
            continue
        try:
            parse_config(block, str(tmp_path / "node.toml"))
        except NodeConfigError as exc:  # their modules and files may be the reader's own
            for problem in exc.problems:
                assert "unknown key" not in problem and "expected" not in problem, problem
