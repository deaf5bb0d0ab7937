"""``nanomsg-kernel inspect``: frames from a file or stdin, hex or raw, with or without a kernel."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nanomsg_kernel.app.inspect_frame import decode_input, inspect_frames, render_text
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.errors import DecodeError, Status
from nanomsg_kernel.frame import Kind, cancel_frame

CODEC = CalcRoute.codec()
WORK = CODEC.encode(CalcWork(a=6, b=3, op=WorkType.DIV), correlation_id=7, timeout_ms=1500)
ERROR = CODEC.encode_error(Status.BAD_REQUEST, "division by zero", correlation_id=7, route=1)


def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "nanomsg_kernel.app.cli", "inspect", *args],
        input=stdin, capture_output=True, timeout=60, check=False,
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition("  ")
        out[key] = value.strip()
    return out


def test_raw_file_without_kernel_shows_header_and_tagged_msgpack(tmp_path: Path) -> None:
    path = tmp_path / "frame.bin"
    path.write_bytes(WORK)
    proc = cli(str(path))
    assert proc.returncode == 0, proc.stderr
    shown = fields(proc.stdout)
    assert shown["kind"] == "REQUEST"
    assert shown["route"] == "1"
    assert shown["contract_version"] == "2"
    assert shown["correlation_id"] == "7"
    assert shown["timeout_ms"] == "1500"
    assert shown["body_length"] == str(len(WORK) - 26)
    assert json.loads(shown["body (msgpack)"]) == {"1": 6, "2": 3, "3": 4, "4": None, "5": 0}


def test_hex_on_stdin_with_kernel_decodes_the_contract() -> None:
    text = " ".join(WORK.hex()[i:i + 8] for i in range(0, len(WORK) * 2, 8)) + "\n"
    proc = cli("-", "--kernel", "nanomsg_kernel.contracts.calc:CalcRoute", stdin=text.encode())
    assert proc.returncode == 0, proc.stderr
    shown = fields(proc.stdout)
    assert shown["route"] == "CALC_WORK (1)"
    assert shown["contract"] == "CalcWork"
    assert shown[".op"] == "DIV"
    assert shown[".a"] == "6"


def test_json_output_of_an_error_frame_and_an_explicit_hex_flag() -> None:
    proc = cli("--hex", "--json", stdin=ERROR.hex().encode())
    assert proc.returncode == 0, proc.stderr
    [report] = json.loads(proc.stdout)
    assert report["header"]["kind"] == "ERROR"
    assert report["body"] == {"status": "BAD_REQUEST", "message": "division by zero", "details": None}


def test_truncated_frame_shows_the_header_and_exits_5() -> None:
    proc = cli("--raw", stdin=WORK[:-2])
    assert proc.returncode == 5
    shown = fields(proc.stdout)
    assert shown["kind"] == "REQUEST"
    assert shown["error"].startswith(f"truncated body: header declares {len(WORK) - 26} bytes, {len(WORK) - 28} present")


def test_garbage_and_bad_hex_and_empty_input() -> None:
    proc = cli("--raw", stdin=b"hello world, this is not a frame")
    assert proc.returncode == 5
    assert "bad header: bad magic" in proc.stdout
    proc = cli("--hex", stdin=b"4e4bzz")
    assert proc.returncode == 5
    assert "input is not valid hex" in proc.stderr
    proc = cli(stdin=b"")
    assert proc.returncode == 5
    assert "no input" in proc.stderr


def test_input_over_the_bound_is_refused_before_decoding() -> None:
    proc = cli("--max-body", "16", stdin=b"NK" + b"\0" * 200)
    assert proc.returncode == 2
    assert "input is larger than" in proc.stderr


def test_missing_file_and_bad_kernel_are_usage_errors(tmp_path: Path) -> None:
    proc = cli(str(tmp_path / "nope.bin"))
    assert proc.returncode == 2
    assert "nope.bin" in proc.stderr
    path = tmp_path / "frame.bin"
    path.write_bytes(WORK)
    proc = cli(str(path), "--kernel", "nanomsg_kernel.contracts.calc:CalcWork")
    assert proc.returncode == 2
    assert "not a RoutingEnum" in proc.stderr


def test_several_frames_back_to_back() -> None:
    data = WORK + CODEC.encode(Echo(text="hi", reply="HI"), kind=Kind.RESPONSE, correlation_id=8) + ERROR
    reports = inspect_frames(data, CalcRoute)
    assert [r["header"]["kind"] for r in reports] == ["REQUEST", "RESPONSE", "ERROR"]
    assert reports[1]["body"] == {"contract": "Echo", "fields": {"text": "hi", "reply": "HI"}}
    assert [r["offset"] for r in reports] == [0, len(WORK), len(data) - len(ERROR)]
    text = render_text(reports)
    assert text.startswith("frame 1 at byte 0\n") and "frame 3 at byte" in text


def test_body_that_does_not_fit_the_kernel_is_reported_and_inspection_goes_on() -> None:
    bad = bytearray(WORK)
    bad[-1] = 0xC1  # a byte msgpack never uses
    reports = inspect_frames(bytes(bad) + ERROR, CalcRoute)
    assert reports[0]["error"].startswith("bad body: CalcWork: malformed msgpack body")
    assert reports[1]["body"]["status"] == "BAD_REQUEST"


def test_oversized_declared_body_is_refused_from_the_header() -> None:
    reports = inspect_frames(WORK, max_body=4)
    assert reports[0]["error"] == f"bad header: body of {len(WORK) - 26} bytes exceeds the maximum of 4 bytes"


def test_route_outside_the_kernel_is_named() -> None:
    frame = bytearray(WORK)
    frame[4:6] = (99).to_bytes(2, "big")
    [report] = inspect_frames(bytes(frame), CalcRoute)
    assert report["header"]["route"] == "99 (not a route of CalcRoute)"
    assert report["error"] == "bad body: unknown route 99 for CalcRoute"


@pytest.mark.parametrize("data", [WORK, WORK.hex().encode(), WORK.hex().upper().encode() + b"\n"])
def test_input_format_is_guessed(data: bytes) -> None:
    assert decode_input(data) == WORK


def test_hex_guess_does_not_mistake_raw_bytes() -> None:
    raw = b"4e4b" + b"\x00" * 10
    assert decode_input(raw) == raw
    with pytest.raises(DecodeError):
        decode_input(b"4e4b0", hex_input=True)


def test_the_examples_in_the_inspect_page_are_real(tmp_path: Path) -> None:
    """Every command of docs/cli/inspect.md (but those needing xxd) prints what the page shows."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "cli" / "inspect.md").read_text(encoding="utf-8")
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    checked = 0
    for block in re.findall(r"```console\n(.*?)```", page, re.S):
        steps = re.split(r"^\$ ", block, flags=re.M)[1:]
        last_code = 0
        for step in steps:
            command, _, expected = step.partition("\n")
            if command == "echo $?":
                assert expected.strip() == str(last_code), command
                continue
            if "xxd" in command:
                continue
            proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=60, check=False)
            last_code = proc.returncode
            assert proc.stdout == expected, (command, proc.stderr)
            checked += 1
    assert checked >= 5


def test_a_cancel_frame_names_the_request_it_cancels() -> None:
    proc = cli("--hex", "--json", stdin=cancel_frame(7).hex().encode())
    assert proc.returncode == 0, proc.stderr
    [report] = json.loads(proc.stdout)
    assert report["header"]["kind"] == "CANCEL" and report["body"] == {"cancels": 7}
    text = cli("--raw", stdin=cancel_frame(7))
    assert text.returncode == 0 and "the request with correlation id 7" in text.stdout
