"""Structured logs (``--log-level``, ``--log-json``) and the command line's top level."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from nanomsg_kernel import Context, RemoteError, Service, Status
from nanomsg_kernel.app.logs import configure_logging
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, Echo, WorkType


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level = root.level
    out = io.StringIO()
    yield out
    for handler in [h for h in root.handlers if h.get_name() == "nanomsg_kernel.app.cli"]:
        root.removeHandler(handler)
    root.setLevel(level)


def make_service() -> Service:
    svc = Service("logged", CalcRoute)

    @svc.handler(CalcWork)
    async def work(w: CalcWork) -> CalcWork:
        raise RuntimeError("boom")

    @svc.handler(Echo)
    async def echo(msg: Echo, ctx: Context) -> Echo:
        ctx.logger.info("echoing %s", msg.text, extra={"length": len(msg.text)})
        return msg.evolve(reply=msg.text)

    return svc


async def test_json_lines_carry_service_contract_and_correlation_id(stream: io.StringIO) -> None:
    configure_logging("info", json_lines=True, stream=stream)
    svc = make_service()
    await svc.dispatch(Echo(text="hey"), correlation_id=41)
    with pytest.raises(RemoteError) as info:
        await svc.dispatch(CalcWork(a=1, b=2, op=WorkType.SUM), correlation_id=42)
    assert info.value.status is Status.INTERNAL
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "echoing hey" and first["level"] == "INFO"
    assert (first["service"], first["contract"], first["correlation_id"]) == ("logged", "Echo", 41)
    assert first["time"].endswith("+00:00")
    assert first["length"] == 3  # the handler's own extra is kept
    assert second["message"] == "handler failed" and second["level"] == "ERROR"
    assert (second["service"], second["contract"], second["correlation_id"]) == ("logged", "CalcWork", 42)
    assert "RuntimeError: boom" in second["exception"]


async def test_text_lines_show_the_call_in_brackets_and_levels_filter(stream: io.StringIO) -> None:
    configure_logging("warning", stream=stream)
    configure_logging("info", stream=stream)  # replaces the first handler: no line twice
    svc = make_service()
    await svc.dispatch(Echo(text="hey"), correlation_id=7)
    logging.getLogger("plain").info("no call here")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" INFO nanomsg_kernel.service.logged [logged Echo #7] echoing hey")
    assert lines[1].endswith(" INFO plain no call here")
    configure_logging("error", stream=stream)
    logging.getLogger("plain").warning("filtered out")
    assert len(stream.getvalue().splitlines()) == 2


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nanomsg_kernel.app.cli", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_top_level_help_lists_every_command_and_log_options() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for word in ("serve", "call", "inspect", "demo", "--log-level", "--log-json", "--version"):
        assert word in proc.stdout
    proc = run("--log-level", "loud", "demo", "--help")
    assert proc.returncode == 2 and "Invalid value for '--log-level'" in proc.stderr


@pytest.mark.parametrize("command", ["serve", "call", "inspect", "demo"])
def test_every_command_has_help(command: str) -> None:
    proc = run(command, "-h")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Usage: nanomsg-kernel {command} [OPTIONS]")


async def test_handler_extra_is_kept_beside_the_call_fields(caplog: pytest.LogCaptureFixture) -> None:
    svc = make_service()
    with caplog.at_level(logging.INFO):
        await svc.dispatch(Echo(text="hey"), correlation_id=9)
    (record,) = [r for r in caplog.records if r.getMessage() == "echoing hey"]
    assert (record.service, record.contract, record.correlation_id) == ("logged", "Echo", 9)  # type: ignore[attr-defined]
    assert record.length == 3  # type: ignore[attr-defined]
