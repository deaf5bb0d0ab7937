"""``health``, ``describe``, ``call --list``, ``call`` without the kernel's module, and
``call --publish``: over real tcp:// and zmq+tcp:// sockets, from a child process that cannot
import the kernel it calls."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_schema_safety import SLOTS, hostile, kernel_with_docs

from nanomsg_kernel import Message, RoutingEnum, Service, contract
from nanomsg_kernel.builtin import BuiltinRoute, Describe, HealthStatus
from nanomsg_kernel.codec import Codec
from nanomsg_kernel.codegen.toml_out import to_toml
from nanomsg_kernel.contracts.services import calc
from nanomsg_kernel.frame import Kind
from nanomsg_kernel.transports.base import get_transport

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
"""This source tree, not the tests' folder (where the kernel below lives), on the child's path."""


class ShopRoute(RoutingEnum):
    """A kernel only this test module has: the child process cannot import it."""

    RESERVE = 1
    RESTOCKED = 2


@contract(ShopRoute.RESERVE)
class Reserve(Message):
    sku: str
    count: int
    left: int | None = None


@contract(ShopRoute.RESTOCKED)
class Restocked(Message):
    sku: str
    count: int


shop = Service("shop", ShopRoute)
sinks: list[asyncio.Queue[Restocked]] = []
"""Where the subscriber puts the events it gets: the queue of the test running now."""


@shop.handler(Reserve)
async def reserve(msg: Reserve) -> Reserve:
    return msg.evolve(left=10 - msg.count)


@shop.subscribe(Restocked)
async def on_restocked(event: Restocked) -> None:
    sinks[-1].put_nowait(event)


async def run(command: str, *args: str, cwd: Path, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nanomsg_kernel.app.cli", command, *args, cwd=cwd, env=ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def urls() -> AsyncIterator[dict[str, str]]:
    async with shop.serve("tcp://127.0.0.1:0") as tcp, shop.serve("zmq+tcp://127.0.0.1:0") as zmq, \
            shop.serve("tcp://127.0.0.1:0", reflection=False) as closed:
        yield {"tcp": tcp.url, "zmq+tcp": zmq.url, "closed": closed.url}
    shop.set_health(HealthStatus.SERVING)


@pytest.mark.parametrize("transport", ["tcp", "zmq+tcp"])
async def test_health_prints_the_status_and_exits_with_it(urls: dict[str, str], transport: str,
                                                          tmp_path: Path) -> None:
    url = urls[transport]
    assert await run("health", url, cwd=tmp_path) == (0, "shop SERVING\n", "")
    shop.set_health(HealthStatus.NOT_SERVING)
    assert await run("health", url, cwd=tmp_path) == (6, "shop NOT_SERVING\n", "")
    shop.set_health(HealthStatus.DRAINING)
    assert await run("health", url, cwd=tmp_path) == (7, "shop DRAINING\n", "")
    code, out, err = await run("health", url, "--service", "orders", cwd=tmp_path)
    assert (code, out) == (1, "") and "NOT_FOUND: this is service 'shop', not 'orders'" in err


async def test_health_of_nothing_is_unavailable(tmp_path: Path) -> None:
    code, _out, err = await run("health", "tcp://127.0.0.1:9", "--timeout", "5", cwd=tmp_path)
    assert code == 3 and err.startswith("error: ")


@pytest.mark.parametrize("transport", ["tcp", "zmq+tcp"])
async def test_describe_prints_the_schema(urls: dict[str, str], transport: str, tmp_path: Path) -> None:
    code, out, err = await run("describe", urls[transport], cwd=tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:3] == ["# service shop, kernel ShopRoute", "# handles: Reserve", "# subscribes to: Restocked"]
    (tmp_path / "shop.toml").write_text(out, encoding="utf-8")  # a schema file like any other
    code, out, err = await run("call", urls[transport], "Reserve", "--kernel", "shop.toml",
                               "--json", '{"sku": "a", "count": 3}', "--compact", cwd=tmp_path)
    assert (code, out) == (0, '{"sku": "a", "count": 3, "left": 7}\n'), err
    code, out, err = await run("describe", urls[transport], "--json", cwd=tmp_path)
    assert code == 0, err
    data = json.loads(out)
    assert (data["service"], data["kernel"], data["handled"], data["subscribed"]) == (
        "shop", "ShopRoute", ["Reserve"], ["Restocked"])
    assert "[contracts.Reserve]" in data["schema"]


@pytest.mark.parametrize("transport", ["tcp", "zmq+tcp"])
async def test_call_without_the_kernel_module_builds_the_request_from_the_description(
        urls: dict[str, str], transport: str, tmp_path: Path) -> None:
    code, out, err = await run("call", urls[transport], "Reserve", "--json", '{"sku": "b", "count": 4}',
                               cwd=tmp_path)
    assert code == 0, err
    assert json.loads(out) == {"sku": "b", "count": 4, "left": 6}
    code, out, err = await run("call", urls[transport], "--list", cwd=tmp_path)
    assert code == 0, err
    assert out.splitlines() == [
        "# service shop, kernel ShopRoute",
        "Reserve (route 1 RESERVE, version 1) [handled]: sku: str, count: int, left: optional[int]",
        "Restocked (route 2 RESTOCKED, version 1) [subscribed]: sku: str, count: int",
    ]


async def test_call_with_a_schema_file_and_list_from_a_module(tmp_path: Path) -> None:
    async with calc.serve("tcp://127.0.0.1:0") as listener:
        code, out, err = await run("call", listener.url, "CalcWork", "--kernel", str(ROOT / "schemas" / "calc.toml"),
                                   "--json", '{"a": 6, "b": 7, "op": "MULT"}', cwd=tmp_path)
        assert code == 0, err
        assert json.loads(out)["result"] == 42
    code, out, err = await run("call", "tcp://127.0.0.1:9", "--list", "--kernel",
                               "nanomsg_kernel.contracts.calc:CalcRoute", cwd=tmp_path)
    assert code == 0, err
    assert out.splitlines()[0].startswith("CalcWork (route 1 CALC_WORK, version 2): a: int, b: int, op: WorkType")
    code, _out, err = await run("call", "tcp://127.0.0.1:9", "--list", "--kernel", "missing.toml", cwd=tmp_path)
    assert code == 2 and "missing.toml" in err


async def test_reflection_off_refuses_describe_and_a_call_without_kernel(urls: dict[str, str],
                                                                        tmp_path: Path) -> None:
    code, out, err = await run("describe", urls["closed"], cwd=tmp_path)
    assert (code, out) == (1, "") and "CONTRACT_NOT_SUPPORTED: reflection is off for shop" in err
    code, out, err = await run("call", urls["closed"], "Reserve", "--json", '{"sku": "c", "count": 1}', cwd=tmp_path)
    assert (code, out) == (1, "") and "reflection is off" in err
    assert (await run("health", urls["closed"], cwd=tmp_path))[:2] == (0, "shop SERVING\n")


@pytest.mark.parametrize("transport", ["tcp", "zmq+tcp"])
async def test_call_can_publish_an_event(urls: dict[str, str], transport: str, tmp_path: Path) -> None:
    restocked: asyncio.Queue[Restocked] = asyncio.Queue()
    sinks.append(restocked)
    code, out, err = await run("call", urls[transport], "Restocked", "--publish",
                               "--json", '{"sku": "d", "count": 5}', cwd=tmp_path)
    assert (code, out) == (0, ""), err
    assert f"published Restocked to {urls[transport]}" in err
    event = await asyncio.wait_for(restocked.get(), timeout=30)
    assert event == Restocked(sku="d", count=5)


async def hostile_describer(reply: Describe) -> AsyncIterator[str]:
    """A listener that answers every request with ``reply`` (a description the test wrote)."""
    codec: Codec = BuiltinRoute.codec()

    async def answer(frame: bytes) -> bytes:
        cid = int.from_bytes(frame[10:18], "big")
        return codec.encode(reply, kind=Kind.RESPONSE, correlation_id=cid)

    async with get_transport("tcp://127.0.0.1:0").listen("tcp://127.0.0.1:0", answer) as listener:
        yield listener.url


async def test_a_hostile_description_is_printed_escaped_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    nasty = f"\x1b]0;pwned\x07\r\x1b[2Kfine\u202e {hostile(marker)}"
    schema = to_toml(kernel_with_docs(dict.fromkeys(SLOTS, nasty), text=nasty, member=nasty))
    reply = Describe(service="evil\x1b]0;x\x07", kernel="R", schema=schema, handled=["One\r"], subscribed=[])
    async for url in hostile_describer(reply):
        code, out, err = await run("call", url, "--list", cwd=tmp_path)
        assert code == 0, err
        assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
        assert "evil\\u001b]0;x\\u0007" in out
        code, out, err = await run("call", url, "One", "--json", '{"r": {}}', cwd=tmp_path)
        assert (code, out) == (5, ""), err  # the listener answers a description to everything
        code, out, err = await run("describe", url, cwd=tmp_path)
        assert code == 0, err
        assert "\x1b" not in out and "\r" not in out
        assert not marker.exists()
    reserved = "format = 1\n[routes]\nname = \"R\"\n[routes.members]\nONE = 65280\n"
    for bad, exit_code, why in (
        (Describe(kernel="R", schema="a = " + "[" * 40 + "]" * 40), 5, "nests brackets deeper"),
        (Describe(kernel="R", schema=reserved), 5, "65279"),
        # Over the 1 MiB a caller reads: refused before the body is read (the TCP client
        # then drops the connection, so the call ends UNAVAILABLE).
        (Describe(kernel="R", schema="x" * (1024 * 1024)), 3, "exceeds the maximum of 1048576 bytes"),
    ):
        async for url in hostile_describer(bad):
            code, out, err = await run("call", url, "One", cwd=tmp_path)
            assert (code, out) == (exit_code, ""), err
            assert why in err


async def test_serve_drains_before_it_stops(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[node]\ndrain = 120\ngrace = 0\n[services.calc]\n'
                      'object = "nanomsg_kernel.contracts.services:calc"\nlisten = ["tcp://127.0.0.1:0"]\n',
                      encoding="utf-8")
    args = [sys.executable, "-m", "nanomsg_kernel.app.cli", "serve", str(config)]
    proc = subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if line.startswith("listening calc "):
                url = line.split()[2]
            if line.startswith("ready "):
                break
        assert (await run("health", url, cwd=tmp_path))[:2] == (0, "calc SERVING\n")
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline() == "stopping: SIGTERM received; draining for 120s, then in-flight calls get up to 0s\n"
        assert await run("health", url, cwd=tmp_path) == (7, "calc DRAINING\n", "")
        proc.send_signal(signal.SIGTERM)  # ends the drain
        out, _err = proc.communicate(timeout=60)
        assert out.startswith("SIGTERM received: draining ends now (in-flight calls get up to 0s)\nstopped\n")
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.communicate()
