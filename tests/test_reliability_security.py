"""Security: the capability rule over the network, CurveZMQ refusing unauthenticated peers,
TLS on TCP, and no code path that unpickles or evaluates received data."""

from __future__ import annotations

import ast
import asyncio
import ssl
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
from reliability.kernel import ReliRoute, Text, probe, reli

from nanomsg_kernel import Client, Context, Node, Service
from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.errors import CapabilityError, DeadlineExceeded, RemoteError, Status, Unavailable

ROOT = Path(__file__).resolve().parent.parent


def echo_service(name: str) -> Service:
    svc = Service(name, CalcRoute)

    @svc.handler(Echo, inline=True)
    def echo(msg: Echo) -> Echo:
        return msg.evolve(reply=f"{name}:{msg.text}")

    return svc


async def test_capability_rule_holds_over_the_network() -> None:
    """A service reaches exactly the services it was bound to, whatever a caller sends it:
    the gateway (bound to calc) reaches calc, not ``secret``; ``lonely`` (no bindings)
    reaches nothing; and a handler's context holds no other way to a service."""
    calc, secret = echo_service("calc"), echo_service("secret")
    gateway, lonely = Service("gateway", CalcRoute), Service("lonely", CalcRoute)
    contexts: list[Context] = []

    async def hop(msg: Echo, ctx: Context) -> Echo:
        contexts.append(ctx)
        reply: Echo = await ctx.bindings[msg.text].call(Echo(text="hop"))
        return reply

    gateway.add_handler(Echo, hop)
    lonely.add_handler(Echo, hop)
    node = Node()
    node.add(calc)
    node.add(secret, listen=["tcp://127.0.0.1:0"])
    # expose_errors: the callers see which exception the handlers met (development only)
    node.add(gateway, bindings={"calc": calc}, listen=["tcp://127.0.0.1:0"], expose_errors=True)
    node.add(lonely, listen=["tcp://127.0.0.1:0"], expose_errors=True)
    async with node:
        _secret_url, gw_url, lonely_url = (ls.url for ls in node.listeners)
        async with Client(CalcRoute, gw_url) as gw, Client(CalcRoute, lonely_url) as alone:
            assert (await gw.call(Echo(text="calc"), timeout=5)).reply == "calc:hop"
            for client, target in ((gw, "secret"), (gw, "gateway"), (alone, "calc"), (alone, "secret"),
                                   (alone, "__class__"), (alone, "_bindings")):
                with pytest.raises(RemoteError) as e:
                    await client.call(Echo(text=target), timeout=5)
                assert e.value.status is Status.INTERNAL and "CapabilityError" in e.value.message, target
    assert "Echo" not in secret.metrics.contracts, "an unbound service reached secret"
    assert calc.metrics.contracts["Echo"].calls == 1
    public = {name for name in dir(contexts[0]) if not name.startswith("_")}
    # metadata (what the caller sent) and peer (who it is) are values: no way to reach a service
    assert public == {"bindings", "contract", "correlation_id", "deadline", "logger", "metadata", "peer", "service",
                      "time_left"}
    with pytest.raises(CapabilityError, match=r"given: none"):
        _ = lonely.bindings.calc


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CurveZMQ")
async def test_curve_refuses_unauthenticated_peers() -> None:
    """With CurveZMQ and an allow-list, frames from a plain (NULL) peer, an anonymous Curve
    peer and a peer with a key not listed never reach the handler; each client is told."""
    probe.reset()
    server_pub, server_sec = zmq.curve_keypair()
    good_pub, good_sec = zmq.curve_keypair()
    _bad_pub, bad_sec = zmq.curve_keypair()
    codec = ReliRoute.codec()
    async with reli.serve("zmq+tcp://127.0.0.1:0", curve_secret_key=server_sec, curve_allow=[good_pub]) as listener:
        ctx = zmq.asyncio.Context()
        raw = ctx.socket(zmq.DEALER)
        raw.linger = 0
        monitor = raw.get_monitor_socket()
        try:
            raw.connect(listener.url.split("?")[0].replace("zmq+", ""))
            for i in range(20):
                await raw.send(codec.encode(Text(text="intruder"), correlation_id=i + 1))
            async with asyncio.timeout(10):  # the server turns the plain peer away
                while True:
                    event = int.from_bytes((await monitor.recv_multipart())[0][:2], "little")
                    if event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                                 zmq.EVENT_DISCONNECTED):
                        break
                    assert event != zmq.EVENT_HANDSHAKE_SUCCEEDED
            for options in ({"curve_server_key": server_pub, "curve_secret_key": bad_sec},
                            {"curve_server_key": server_pub}):
                intruder = Client(ReliRoute, listener.url, **options)
                with pytest.raises(Unavailable, match="refused the Curve key|handshake failed"):
                    await intruder.connect()
                with pytest.raises(Unavailable, match="refused the Curve key|handshake failed"):
                    await intruder.call(Text(text="intruder"), timeout=5)
                await intruder.close()
            async with Client(ReliRoute, listener.url, curve_server_key=server_pub, curve_secret_key=good_sec) as ok:
                assert (await ok.call(Text(text="friend"), timeout=5)).reply == "friend"
        finally:
            raw.disable_monitor()
            monitor.close(0)
            raw.close(0)
            ctx.term()
    assert probe.calls["intruder"] == 0
    assert probe.calls["friend"] == 1


async def test_tls_on_tcp(tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """TLS carries calls; a plain client, a client not trusting the certificate and a raw
    frame sent in clear all fail with the library's errors, and the server keeps serving."""
    server_ctx, client_ctx = tls_contexts
    probe.reset()
    async with (
        reli.serve("tcp://127.0.0.1:0", ssl=server_ctx, read_timeout=2.0) as listener,
        Client(ReliRoute, listener.url, ssl=client_ctx) as secure,
    ):
        assert (await secure.call(Text(text="sécurité ✓"), timeout=5)).reply == "sécurité ✓"
        untrusting = Client(ReliRoute, listener.url, ssl=ssl.create_default_context())
        try:
            with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.call(Text(text="x"), timeout=5)
        finally:
            await untrusting.close()
        plain = Client(ReliRoute, listener.url)
        try:
            with pytest.raises((Unavailable, DeadlineExceeded)):
                await plain.call(Text(text="in clear"), timeout=3)
        finally:
            await plain.close()
        assert (await secure.call(Text(text="still"), timeout=5)).reply == "still"
    assert probe.calls["in clear"] == 0


# -- no code path unpickles or evaluates received data ------------------------------------

PACKAGES = ("nanomsg_kernel", "transports", "codegen", "contracts")
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle", "yaml"}
DYNAMIC = {"eval", "exec", "compile", "__import__", "execfile", "input"}
ALLOWED = {
    # The decoder's own functions: ``build_layout`` renders to_map/from_map source from a
    # contract's class definition (field names are inserted with repr()) and compiles it once,
    # when the class is defined. No byte received ever reaches this source.
    ("nanomsg_kernel/layout.py", "build_layout", "exec"),
    ("nanomsg_kernel/layout.py", "build_layout", "compile"),
    # ``_build_evolve`` renders each contract's ``evolve(self, *, <field>=...)`` from the
    # class's own field names and aliases (checked identifiers), once, when the class is
    # defined. Received data never reaches this source.
    ("nanomsg_kernel/contract.py", "_build_evolve", "exec"),
    ("nanomsg_kernel/contract.py", "_build_evolve", "compile"),
    # ``schema diff`` / evolution checks build classes from a schema file given on the command
    # line (rendered by codegen, then executed). Schemas are read from the local disk only.
    ("codegen/load_kernel.py", "load_module", "exec"),
    ("codegen/load_kernel.py", "load_module", "compile"),
}


def _calls(path: Path) -> list[tuple[str, str, str]]:
    """``(file, enclosing function, name)`` of each dangerous call or import in ``path``."""
    return _scan(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())


def _scan(source: str, rel: str) -> list[tuple[str, str, str]]:
    tree = ast.parse(source, rel)
    found: list[tuple[str, str, str]] = []

    def visit(node: ast.AST, func: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = func
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = child.name
            if isinstance(child, ast.Import):
                found.extend((rel, func, a.name) for a in child.names if a.name.split(".")[0] in FORBIDDEN_MODULES)
            elif isinstance(child, ast.ImportFrom) and (child.module or "").split(".")[0] in FORBIDDEN_MODULES:
                found.append((rel, func, child.module or ""))
            elif isinstance(child, ast.Call):
                f = child.func
                if isinstance(f, ast.Name) and f.id in DYNAMIC:
                    found.append((rel, func, f.id))
                elif isinstance(f, ast.Attribute):  # pickle.loads, marshal.load, builtins.eval...
                    base = f.value.id if isinstance(f.value, ast.Name) else ""
                    if base in FORBIDDEN_MODULES or (base == "builtins" and f.attr in DYNAMIC):
                        found.append((rel, func, f"{base}.{f.attr}"))
            visit(child, name)

    visit(tree, "<module>")
    return found


def test_no_code_path_unpickles_or_evaluates_received_data() -> None:
    """The packages import no pickle-like module and call eval/exec/compile only where
    :data:`ALLOWED` says why (code generated from class definitions or local schema files).

    Received bytes are decoded by msgpack alone (no ``ext_hook``/``object_hook``: ext types
    other than timestamps come back as inert ``ExtType`` values and fail type checks)."""
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    assert len(files) > 40
    found = {hit for path in files for hit in _calls(path)}
    assert found - ALLOWED == set(), f"unexpected dynamic evaluation or unpickling: {sorted(found - ALLOWED)}"
    assert found >= ALLOWED, f"allow-list entries that no longer exist: {sorted(ALLOWED - found)}"
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "ext_hook" not in text and "object_hook" not in text and "object_pairs_hook" not in text, path


def test_the_scan_sees_what_it_looks_for() -> None:
    source = (
        "import pickle, re\nfrom marshal import loads\nimport builtins\n"
        "def handle(data):\n    re.compile(data)\n    pickle.loads(data)\n    eval(data)\n"
        "    builtins.exec(data)\n    return __import__(data)\n"
    )
    assert sorted(_scan(source, "x.py")) == [
        ("x.py", "<module>", "marshal"), ("x.py", "<module>", "pickle"), ("x.py", "handle", "__import__"),
        ("x.py", "handle", "builtins.exec"), ("x.py", "handle", "eval"), ("x.py", "handle", "pickle.loads"),
    ]
