"""``nanomsg-kernel call``: one request as JSON, the reply as JSON, and an exit status per outcome."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nanomsg_kernel import Service
from nanomsg_kernel.contracts.catalog import CatalogRoute, PutItem
from nanomsg_kernel.contracts.services import calc

KERNEL = "nanomsg_kernel.contracts.calc:CalcRoute"

catalog = Service("catalog-echo", CatalogRoute)


@catalog.handler(PutItem)
async def put_item(msg: PutItem) -> PutItem:
    return msg.evolve(revision=msg.revision + 1)


async def cli(*args: str, stdin: bytes = b"", timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nanomsg_kernel.app.cli", "call", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(stdin)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def urls() -> AsyncIterator[dict[str, str]]:
    """calc served over TCP and ZeroMQ, the catalogue echo over TCP, in this process."""
    async with (
        calc.serve("tcp://127.0.0.1:0") as tcp,
        calc.serve("zmq+tcp://127.0.0.1:0") as zmq,
        catalog.serve("tcp://127.0.0.1:0") as cat,
    ):
        yield {"tcp": tcp.url, "zmq+tcp": zmq.url, "catalog": cat.url}


@pytest.mark.parametrize("transport", ["tcp", "zmq+tcp"])
async def test_call_prints_the_reply_as_json(urls: dict[str, str], transport: str) -> None:
    code, out, err = await cli(urls[transport], "CalcWork", "--kernel", KERNEL, "--json", '{"a": 6, "b": 3, "op": "DIV"}')
    assert code == 0, err
    assert json.loads(out) == {"a": 6, "b": 3, "op": "DIV", "result": 2, "precision": 0}
    assert out.startswith("{\n  ")


async def test_contract_by_member_name_or_route_number_and_compact_output(urls: dict[str, str]) -> None:
    code, out, err = await cli(urls["tcp"], "ECHO", "-k", KERNEL, "--json", '{"text": "héllo"}', "--compact")
    assert code == 0, err
    assert out == '{"text": "héllo", "reply": "HÉLLO"}\n'
    code, out, err = await cli(urls["tcp"], "1", "-k", KERNEL, "--json", '{"a": 2, "b": 5, "op": 3}', "--compact")
    assert code == 0, err
    assert json.loads(out)["result"] == 10


async def test_payload_from_a_file_and_from_stdin(urls: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "work.json"
    path.write_text('{"a": 9, "b": 4, "op": "DIFF"}', encoding="utf-8")
    code, out, err = await cli(urls["tcp"], "CalcWork", "-k", KERNEL, "--json", f"@{path}")
    assert code == 0, err
    assert json.loads(out)["result"] == 5
    code, out, err = await cli(urls["tcp"], "CalcWork", "-k", KERNEL, "--json", "-",
                               stdin=b'{"a": 9, "b": 4, "op": "SUM"}')
    assert code == 0, err
    assert json.loads(out)["result"] == 13


async def test_every_field_type_through_the_command_line(urls: dict[str, str]) -> None:
    item = {
        "item": {
            "id": "12345678-1234-5678-1234-567812345678", "name": "lamp", "price": {"amount": 1999},
            "tags": ["a"], "dimensions": [1.5, 2, "Infinity"], "colours": ["RED", "blue"],
            "stock": {"paris": 3}, "ratings": {"5": 4.5}, "image": "00ff", "created": "2024-05-01T12:30:00Z",
        },
        "revision": 41,
    }
    code, out, err = await cli(urls["catalog"], "PutItem", "-k", "nanomsg_kernel.contracts.catalog:CatalogRoute",
                               "--json", json.dumps(item), "--bytes", "hex")
    assert code == 0, err
    reply = json.loads(out)
    assert reply["revision"] == 42
    got = reply["item"]
    assert got["image"] == "00ff"
    assert got["colours"] == ["RED", "BLUE"]
    assert got["dimensions"] == [1.5, 2.0, "Infinity"]
    assert got["created"] == "2024-05-01T12:30:00+00:00"
    assert got["price"] == {"amount": 1999, "currency": "EUR"}


async def test_error_reply_exits_1_with_status_on_stderr(urls: dict[str, str]) -> None:
    code, out, err = await cli(urls["zmq+tcp"], "CalcWork", "-k", KERNEL, "--json", '{"a": 6, "b": 0, "op": "DIV"}')
    assert (code, out) == (1, "")
    assert err == "error: BAD_REQUEST: division by zero\n"
    code, out, err = await cli(urls["tcp"], "CalcDone", "-k", KERNEL, "--json", '{"work": 1, "result": 2}')
    assert code == 1
    assert err.startswith("error: CONTRACT_NOT_SUPPORTED: calc has no handler for CalcDone")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["CalcWork", "--json", '{"a": 6, "b": 3, "op": "POW"}'], "error: CalcWork.op: expected one of SUM, DIFF"),
        (["CalcWork", "--json", "{a: 6}"], "error: CalcWork: not valid JSON"),
        (["Nope"], "error: CalcRoute has no contract 'Nope'; it has: CalcWork (CALC_WORK=1), Echo (ECHO=2)"),
        (["CalcWork", "--json", "@/nonexistent/file.json"], "error: cannot read /nonexistent/file.json"),
    ],
)
async def test_bad_input_exits_2_before_sending(args: list[str], message: str) -> None:
    # Nothing listens at this URL: the input is refused before any connection is tried.
    code, out, err = await cli("tcp://127.0.0.1:9", *args, "-k", KERNEL)
    assert (code, out) == (2, ""), err
    assert err.startswith(message), err


async def test_bad_kernel_url_and_options_are_usage_errors() -> None:
    code, _out, err = await cli("tcp://127.0.0.1:9", "CalcWork", "-k", "nanomsg_kernel.contracts.calc:Nope")
    assert code == 2 and "module 'nanomsg_kernel.contracts.calc' has no attribute 'Nope'" in err
    code, _out, err = await cli("carrier-pigeon://coop", "Echo", "-k", KERNEL, "--json", '{"text": "x"}')
    assert code == 2 and "no transport for scheme 'carrier-pigeon'" in err
    code, _out, err = await cli("tcp://127.0.0.1:9", "Echo", "-k", KERNEL, "--timeout", "0")
    assert code == 2 and "--timeout" in err
    code, _out, err = await cli("tcp://127.0.0.1:9", "Echo")  # no kernel: the service is asked, and is not there
    assert code == 3 and "127.0.0.1:9" in err
    code, _out, err = await cli("tcp://127.0.0.1:9")
    assert code == 2 and "name the CONTRACT to call (or --list the contracts)" in err


async def test_unreachable_service_exits_3() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = await cli(f"tcp://127.0.0.1:{port}", "Echo", "-k", KERNEL, "--json", '{"text": "x"}')
    assert (code, out) == (3, ""), err
    assert err.startswith("error: ") and f"127.0.0.1:{port}" in err


async def test_no_reply_in_time_exits_4() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        code, out, err = await cli(f"tcp://127.0.0.1:{port}", "Echo", "-k", KERNEL, "--json", '{"text": "x"}',
                                   "--timeout", "0.5")
    assert (code, out) == (4, ""), err
    assert err.startswith("error: ") and "0.5" in err


async def test_call_help() -> None:
    code, out, _err = await cli("--help")
    assert code == 0
    assert "Usage: nanomsg-kernel call [OPTIONS] URL [CONTRACT]" in out
    for option in ("--kernel", "--json", "--timeout", "--bytes", "--compact", "--list", "--publish"):
        assert option in out
