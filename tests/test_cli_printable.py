"""Text from the wire or a file cannot steer the terminal, and hostile nesting gets one line of error.

A hostile service, a crafted frame, a config with odd keys and a log record quoting a peer
each go through the real command (in-process with click's runner for the many generated
cases, and as a subprocess for the cases a user would meet): no line printed holds a control
character other than the newline that ends it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanomsg_kernel import ServiceError, Status
from nanomsg_kernel.app.cli import main
from nanomsg_kernel.app.jsonio import MAX_NESTING
from nanomsg_kernel.app.logs import JsonFormatter, TextFormatter
from nanomsg_kernel.app.printable import printable
from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.frame import Kind, pack_header
from nanomsg_kernel.service import Service

KERNEL = "nanomsg_kernel.contracts.calc:CalcRoute"
CODEC = CalcRoute.codec()
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
HOSTILE = "division by zero\x1b]0;pwned\x07\r\x1b[2Kerror: none\nOK: 42\x9b31m\u202e"


def controls(text: str) -> list[str]:
    """The characters of one printed line that could steer a terminal."""
    return [c for c in text if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in BIDI]


def assert_clean(output: str) -> list[str]:
    """Every line of ``output`` is free of control characters; the lines."""
    lines = output.split("\n")
    for line in lines:
        assert not controls(line), f"control characters {controls(line)!r} in {line!r}"
    return lines


# Characters that matter here, mixed with any other (lone surrogates cannot cross msgpack).
NASTY = st.sampled_from(list("\x00\x07\x08\t\n\x0b\x0c\r\x1b\x7f\x85\x9b\u2028\u2029\u202e\u2066\\\"é🎉"))
TEXT = st.text(NASTY | st.characters(blacklist_categories=("Cs",)), max_size=40)
MSGPACK_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | TEXT | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT | st.integers(0, 99), inner, max_size=4),
    max_leaves=12,
)

hostile = Service("hostile", CalcRoute)


@hostile.handler(Echo)
async def hostile_echo(msg: Echo) -> Echo:
    """Answers with the request's text, or an error whose message is the text after '!'."""
    if msg.text.startswith("!"):
        raise ServiceError(Status.BAD_REQUEST, msg.text[1:])
    return msg.evolve(reply=msg.text)


@pytest.fixture(scope="module")
def hostile_url() -> Iterator[str]:
    """The hostile service on tcp:// loopback, served by a loop in a thread of its own."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None
    url: list[str] = []

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with hostile.serve("tcp://127.0.0.1:0") as listener:
            url.append(listener.url)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the hostile service did not start"
    yield url[0]
    assert stop is not None
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    loop.close()


def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """The command run in this process; the log handler it installs is taken away again."""
    root = logging.getLogger()
    level = root.level
    try:
        result = CliRunner().invoke(main, list(args), input=stdin)
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "nanomsg_kernel.cli"]:
            root.removeHandler(handler)
        root.setLevel(level)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def subprocess_cli(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "nanomsg_kernel.app.cli", *args], input=stdin,
                          capture_output=True, timeout=60, check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


# -- the escaping function ---------------------------------------------------------------------


@given(st.text())
def test_printable_leaves_no_control_character_and_one_line(text: str) -> None:
    shown = printable(text)
    assert not controls(shown) and "\n" not in shown
    kept = printable(text, keep_newlines=True)
    assert kept.count("\n") == text.count("\n")
    assert_clean(kept)


@given(st.recursive(st.none() | st.text() | st.integers(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)))
def test_printable_json_still_means_the_same(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False, indent=2)
    shown = printable(text, keep_newlines=True)
    assert json.loads(shown) == value
    assert_clean(shown)


def test_text_without_control_characters_is_printed_as_it_is() -> None:
    text = "héllo 🎉 naïve — \\x1b is text ‍👩‍💻"
    assert printable(text) is text


# -- call: the reply and the error of a hostile service -----------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT.filter(lambda t: not t.startswith("!")))
def test_call_prints_a_hostile_reply_and_error_escaped(hostile_url: str, text: str) -> None:
    code, out, err = run("call", hostile_url, "Echo", "-k", KERNEL, "--json", json.dumps({"text": text}))
    assert (code, err) == (0, "")
    assert json.loads(out) == {"text": text, "reply": text}
    assert_clean(out)
    code, out, err = run("call", hostile_url, "Echo", "-k", KERNEL, "--json", json.dumps({"text": "!" + text}),
                         "--compact")
    assert (code, out) == (1, "")
    [line, end] = assert_clean(err)
    assert end == "" and line == "error: BAD_REQUEST: " + printable(text)


def test_a_hostile_error_message_cannot_retitle_the_terminal_or_rewrite_the_line(hostile_url: str) -> None:
    code, out, err = subprocess_cli("call", hostile_url, "Echo", "-k", KERNEL, "--json",
                                    json.dumps({"text": "!" + HOSTILE}))
    assert (code, out) == (1, "")
    assert err == ("error: BAD_REQUEST: division by zero\\u001b]0;pwned\\u0007\\r\\u001b[2Kerror: none\\nOK: 42"
                   "\\u009b31m\\u202e\n")
    code, out, err = subprocess_cli("call", hostile_url, "Echo", "-k", KERNEL, "--json", json.dumps({"text": HOSTILE}))
    assert code == 0, err
    assert_clean(out)
    assert json.loads(out)["reply"] == HOSTILE


# -- inspect: any frame -------------------------------------------------------------------------


def request_frame(value: Any, route: int = 1) -> bytes:
    body = msgpack.packb(value)
    return pack_header(Kind.REQUEST, route, 1, 9, 0, len(body)) + body


@settings(max_examples=60, deadline=None)
@given(value=MSGPACK_VALUES, message=TEXT, text=TEXT, junk=st.binary(max_size=40))
def test_inspect_prints_any_frame_without_control_characters(value: Any, message: str, text: str, junk: bytes) -> None:
    data = (request_frame(value) + CODEC.encode_error(Status.INTERNAL, message, details={message: [message]})
            + CODEC.encode(Echo(text=text, reply=text)) + pack_header(Kind.EVENT, 2, 1, 0, 0, len(junk)) + junk)
    for args in ((), ("--json",), ("--kernel", KERNEL), ("--kernel", KERNEL, "--json")):
        code, out, err = run("inspect", "-", "--raw", *args, stdin=data)
        assert code in (0, 5), err
        assert_clean(out)
        assert_clean(err)


def test_inspect_shows_a_hostile_string_escaped_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "frame.bin"
    path.write_bytes(CODEC.encode(Echo(text=HOSTILE)) + CODEC.encode_error(Status.BAD_REQUEST, HOSTILE))
    code, out, _err = subprocess_cli("inspect", str(path), "--kernel", KERNEL)
    assert code == 0
    lines = assert_clean(out)
    assert f"  .text           {printable(HOSTILE)}" in lines
    assert f"message           {printable(HOSTILE)}" in lines


# -- nesting ----------------------------------------------------------------------------------


def test_call_with_deeply_nested_json_exits_2_with_one_line(hostile_url: str, tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    code, out, err = subprocess_cli("call", hostile_url, "Echo", "-k", KERNEL, "--json", f"@{path}")
    assert (code, out) == (2, "")
    assert err == f"error: Echo: JSON nested deeper than {MAX_NESTING} levels\n"
    nested = '{"text": "x", "reply": ' + "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1) + "}"  # at the bound
    code, out, err = subprocess_cli("call", hostile_url, "Echo", "-k", KERNEL, "--json", nested)
    assert (code, err) == (2, "error: Echo.reply: expected a string, got an array\n")


def test_inspect_of_deeply_nested_msgpack_exits_5_with_one_error_line_per_frame(tmp_path: Path) -> None:
    body = b"\x91" * 1020 + b"\xc0"  # as deep as msgpack itself will unpack
    details: list[Any] = []
    for _ in range(200):
        details = [details]
    path = tmp_path / "deep.bin"
    path.write_bytes(pack_header(Kind.REQUEST, 1, 1, 1, 0, len(body)) + body
                     + CODEC.encode_error(Status.INTERNAL, "deep details", details=details)
                     + CODEC.encode(Echo(text="still read")))
    for args in ((), ("--json",)):
        code, out, err = subprocess_cli("inspect", str(path), *args)
        assert (code, err) == (5, "")
        assert "Traceback" not in out
        assert out.count(f"bad body: msgpack value nested deeper than {MAX_NESTING} levels") == 2
        assert "still read" in out


# -- serve: a config's own text ------------------------------------------------------------------


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string, every character that is not plain ASCII escaped."""
    return '"' + "".join(c if " " <= c <= "~" and c not in '"\\' else f"\\U{ord(c):08x}" for c in text) + '"'


@settings(max_examples=40, deadline=None)
@given(key=TEXT.filter(bool), name=TEXT.filter(bool))
def test_serve_prints_config_problems_without_control_characters(tmp_path_factory: pytest.TempPathFactory,
                                                                  key: str, name: str) -> None:
    path = tmp_path_factory.mktemp("config") / f"node{len(key)}.toml"
    path.write_text(f"{toml_string(key)} = 1\n[node]\nname = {toml_string(name)}\n"
                    f"[services.{toml_string(key)}]\nobject = {toml_string(name + ':x')}\n", encoding="utf-8")
    code, out, err = run("serve", "--check", str(path))
    assert (code, out) == (2, "")
    lines = assert_clean(err)
    assert lines[-1] == "" and lines[-2].startswith("error: ") and len(lines) >= 4


def test_a_hostile_service_name_in_a_config_is_escaped(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(f'[services.{toml_string(HOSTILE)}]\nobject = "nanomsg_kernel.contracts.services:calc"\n',
                    encoding="utf-8")
    code, out, err = subprocess_cli("serve", "--check", str(path))
    assert (code, out) == (2, "")
    [problem, summary, end] = assert_clean(err)
    assert problem.startswith(f"{path}: services.{printable(HOSTILE)}.object: ")
    assert summary == f"error: 1 problem in {path}; nothing was started" and end == ""


# -- logs ---------------------------------------------------------------------------------------


@given(message=TEXT, service=TEXT, peer=TEXT)
def test_log_records_quoting_a_peer_stay_one_line(message: str, service: str, peer: str) -> None:
    record = logging.LogRecord("nanomsg_kernel.transports.tcp", logging.WARNING, __file__, 1, "dropped %s: %s",
                               (peer, message), None)
    record.service = service
    record.peer = peer
    for formatter in (TextFormatter(), JsonFormatter()):
        [line] = assert_clean(formatter.format(record))
        assert line
    assert json.loads(JsonFormatter().format(record))["message"] == f"dropped {peer}: {message}"


def test_a_traceback_keeps_its_lines_and_loses_its_control_characters() -> None:
    try:
        raise ValueError(HOSTILE)
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "handler failed: %s", (HOSTILE,), sys.exc_info())
    text = TextFormatter().format(record)
    lines = assert_clean(text)
    assert lines[0].endswith("handler failed: " + printable(HOSTILE))
    assert lines[1] == "Traceback (most recent call last):"
    assert any("ValueError: division by zero\\u001b]0;pwned" in line for line in lines)
    [line] = assert_clean(JsonFormatter().format(record))
    assert "Traceback" in json.loads(line)["exception"]


# -- schema commands: a schema file's own text ---------------------------------------------------


def test_schema_problems_quoting_the_file_are_escaped(tmp_path: Path) -> None:
    schema = (Path(__file__).resolve().parent.parent / "schemas" / "calc.toml").read_text(encoding="utf-8")
    (tmp_path / "old.toml").write_text(schema, encoding="utf-8")
    hostile = schema.replace("[contracts.CalcWork.fields]\n",
                             '[contracts.CalcWork.fields]\n"w\\u001b]0;pwned\\u0007" = { tag = 9, type = "int" }\n')
    (tmp_path / "new.toml").write_text(hostile, encoding="utf-8")
    for command in (("schema", "diff", str(tmp_path / "old.toml"), str(tmp_path / "new.toml")),
                    ("schema", "jsonschema", str(tmp_path / "new.toml"))):
        code, out, err = run(*command)
        assert (code, out) == (2, "")
        assert "]0;pwned" in err and "a field name must be an identifier" in err
        assert_clean(err)
