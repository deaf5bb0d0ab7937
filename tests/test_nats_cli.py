"""nats:// from the command line and node configs: ``serve`` a node whose listener is a
NATS subject (with credentials from its ``nats`` table), ``call`` it with the ``--nats-*``
options, bind to it by URL; no credential is ever printed or logged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from cli_serving import serving
from natsserver import NatsServer

from nanomsg_kernel.app.config import NodeConfigError, load_config

KERNEL = "nanomsg_kernel.contracts.calc:CalcRoute"
WORK = '{"a": 6, "b": 3, "op": "MULT"}'
SECRET = "n0t-in-any-L0G"


def cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "nanomsg_kernel.app.cli", *args], capture_output=True, timeout=60,
                          check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.fixture
def auth_server() -> NatsServer:
    server = NatsServer(["--user", "calc", "--pass", SECRET]).start()
    yield server  # type: ignore[misc]
    server.close()


def config(tmp_path: Path, server: NatsServer, subject: str) -> Path:
    (tmp_path / "calc.pass").write_text(SECRET + "\n")
    (tmp_path / "calc.pass").chmod(0o600)
    path = tmp_path / "node.toml"
    path.write_text(f"""
[node]
name = "nats-node"

[services.calc]
object = "nanomsg_kernel.contracts.services:calc"
listen = [{{ url = "nats://{server.address}/{subject}", nats = {{ user = "calc", password_file = "calc.pass" }} }}]
""")
    return path


def test_serve_and_call_over_nats_with_credentials(tmp_path: Path, auth_server: NatsServer) -> None:
    cfg = config(tmp_path, auth_server, "calc.cli")
    proc = subprocess.Popen([sys.executable, "-m", "nanomsg_kernel.app.cli", "--log-level", "DEBUG", "serve",
                             str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # ends when serve exits: never waits past a failed start
            lines.append(line)
            if line.startswith("ready"):
                break
        assert f"listening calc nats://{auth_server.address}/calc.cli\n" in lines, lines
        url = f"nats://{auth_server.address}/calc.cli"
        code, out, err = cli("call", url, "CalcWork", "-k", KERNEL, "--json", WORK, "--nats-user", "calc",
                             "--nats-password-file", str(tmp_path / "calc.pass"))
        assert code == 0, err
        assert json.loads(out)["result"] == 18
        # the password in the URL works too, and is never echoed back
        code, out, err = cli("call", f"nats://calc:{SECRET}@{auth_server.address}/calc.cli", "CalcWork", "-k", KERNEL,
                             "--json", WORK, "--compact")
        assert code == 0, err
        assert json.loads(out)["result"] == 18
        code, out, err = cli("call", f"nats://calc:wrong-{SECRET}@{auth_server.address}/calc.cli", "CalcWork", "-k",
                             KERNEL, "--json", WORK, "--timeout", "5")
        assert code == 3 and SECRET not in out + err, err
        code, out, err = cli("call", f"nats://{auth_server.address}/calc.nobody", "CalcWork", "-k", KERNEL,
                             "--json", WORK, "--nats-user", "calc", "--nats-password-file", str(tmp_path / "calc.pass"))
        assert code == 3 and "no responders" in err
    finally:
        proc.terminate()
        rest_out, rest_err = proc.communicate(timeout=30)
    assert SECRET not in "".join(lines) + rest_out + rest_err
    assert "nats" in rest_err  # the debug log did speak of the connection


def test_the_nats_table_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("""
[services.calc]
object = "nanomsg_kernel.contracts.services:calc"
listen = [{ url = "nats://127.0.0.1:4222/calc", nats = { user = "u", bogus = 1 } },
          { url = "tcp://127.0.0.1:0", nats = { token = "t" } },
          { url = "nats://127.0.0.1:4222/a b" }]
bindings = { store = { url = "nats://127.0.0.1:4222/store", nats = { token_file = "missing.token" } } }
""")
    with pytest.raises(NodeConfigError) as e:
        load_config(path)
    text = str(e.value)
    assert "services.calc.listen[0].nats.bogus: unknown key" in text
    assert "services.calc.listen[1].nats: nats is for nats:// URLs, not tcp://" in text
    assert "services.calc.listen[2]: bad NATS subject 'a b'" in text
    assert "services.calc.bindings.store.nats.token_file: cannot read" in text


def test_call_speaks_tls_to_the_nats_server(tmp_path: Path, tls_authority: trustme.CA) -> None:
    cert = tls_authority.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    tls_authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = NatsServer(["--tls", "--tlscert", str(tmp_path / "server.pem"), "--tlskey",
                         str(tmp_path / "server.key")]).start()
    cfg = tmp_path / "node.toml"
    cfg.write_text(f"""
[services.calc]
object = "nanomsg_kernel.contracts.services:calc"
listen = [{{ url = "nats://{server.address}/calc.tls", nats = {{ ca = "ca.pem" }} }}]
""")
    try:
        with serving([sys.executable, "-m", "nanomsg_kernel.app.cli", "serve", str(cfg)]) as urls:
            assert urls["calc"] == f"nats://{server.address}/calc.tls"
            code, out, err = cli("call", urls["calc"], "CalcWork", "-k", KERNEL, "--json", WORK, "--tls-ca",
                                 str(tmp_path / "ca.pem"))
            assert code == 0, err
            assert json.loads(out)["result"] == 18
            code, out, err = cli("call", urls["calc"], "CalcWork", "-k", KERNEL, "--json", WORK, "--timeout", "5")
            assert code == 3, err  # without TLS the NATS server does not let it in
            code, out, err = cli("call", urls["calc"], "CalcWork", "-k", KERNEL, "--json", WORK,
                                 "--curve-server-key", "x" * 40)
            assert code == 2 and "not nats://" in err
    finally:
        server.close()
