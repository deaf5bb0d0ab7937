"""Node configs: every error case reported by ``serve`` before anything starts, and what a good
config builds."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nanomsg_kernel.app.config import NodeConfigError, load_config, parse_config
from nanomsg_kernel.app.config_urls import check_url, parse_host_port
from nanomsg_kernel.binding import LocalBinding, RemoteBinding
from nanomsg_kernel.contracts.calc import CalcWork, WorkType
from nanomsg_kernel.contracts.services import calc, gateway

CALC = '[services.calc]\nobject = "nanomsg_kernel.contracts.services:calc"\n'
GATEWAY = '[services.gateway]\nobject = "nanomsg_kernel.contracts.services:gateway"\n'


def write(tmp_path: Path, text: str, name: str = "node.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def serve(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nanomsg_kernel.app.cli", "serve", *args],
        capture_output=True, text=True, timeout=60, check=False, cwd=cwd,
    )


def refused(path: Path, check: bool = True) -> list[str]:
    """Run ``serve`` on ``path``; assert it refused the config; return the problem lines."""
    proc = serve("--check", str(path)) if check else serve(str(path))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and lines[-1].endswith("nothing was started")
    return lines[:-1]


# -- every error case, through the command line ------------------------------------------------


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[services.calc\nobject = 1\n")
    [problem] = refused(path)
    assert problem.startswith(f"{path}: invalid TOML: ") and "line 1" in problem


def test_missing_file(tmp_path: Path) -> None:
    [problem] = refused(tmp_path / "absent.toml")
    assert problem == f"{tmp_path / 'absent.toml'}: cannot read: No such file or directory"


def test_unknown_keys_at_every_level(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        colour = "red"
        [node]
        nmae = "typo"
        {CALC}listne = ["tcp://127.0.0.1:0"]
    """)
    problems = refused(path)
    assert f"{path}: colour: unknown key (expected one of: node, services, identities)" in problems
    assert f"{path}: node.nmae: unknown key (expected one of: name, grace, metrics, app_dir, drain)" in problems
    assert f"{path}: services.calc.listne: unknown key (expected one of: object, listen, bindings, expose_errors)" in problems


def test_no_services(tmp_path: Path) -> None:
    [problem] = refused(write(tmp_path, '[node]\nname = "x"\n'))
    assert problem.endswith("services: missing: declare at least one [services.NAME] table")


def test_unknown_service_module_and_attribute(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [services.calc]
        object = "nanomsg_kernel.contracts.nosuchmodule:calc"
        [services.gateway]
        object = "nanomsg_kernel.contracts.services:nosuchservice"
        [services.other]
        object = "not a reference"
    """)
    problems = refused(path)
    assert problems == [
        f"{path}: services.calc.object: cannot import module 'nanomsg_kernel.contracts.nosuchmodule': "
        "ModuleNotFoundError: No module named 'nanomsg_kernel.contracts.nosuchmodule'",
        f"{path}: services.gateway.object: module 'nanomsg_kernel.contracts.services' has no attribute 'nosuchservice'",
        f"{path}: services.other.object: expected 'module:attribute', got 'not a reference'",
    ]


def test_object_that_is_not_a_service_or_is_named_otherwise(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [services.calc]
        object = "nanomsg_kernel.contracts.calc:CalcWork"
        [services.adder]
        object = "nanomsg_kernel.contracts.services:gateway"
        [services.nothing]
        listen = ["inproc://x"]
    """)
    problems = refused(path)
    assert f"{path}: services.calc.object: nanomsg_kernel.contracts.calc:CalcWork is a type, not a Service" in problems
    assert (f"{path}: services.adder.object: nanomsg_kernel.contracts.services:gateway is the service named 'gateway'; "
            "declare it as [services.gateway]") in problems
    assert f"{path}: services.nothing.object: missing: the service as 'module:attribute'" in problems


def test_binding_to_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        {GATEWAY}
        [services.gateway.bindings]
        calc = "calc"
        store = "inproc://store"
    """)
    problems = refused(path)
    assert problems == [
        f"{path}: services.gateway.bindings.calc: no service named 'calc' in this node (services: gateway)",
        f"{path}: services.gateway.bindings.store: nothing in this node listens on inproc://store "
        "(inproc:// reaches only this process)",
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("tcp://127.0.0.1", "bad TCP URL 'tcp://127.0.0.1': expected tcp://host:port"),
        ("tcp://127.0.0.1:99999", "bad TCP URL 'tcp://127.0.0.1:99999': Port out of range"),
        ("zmq+tcp://127.0.0.1:x", "bad ZeroMQ URL 'zmq+tcp://127.0.0.1:x': port 'x' is not a number"),
        ("zmq+tcp://127.0.0.1:0?colour=red", "bad ZeroMQ URL 'zmq+tcp://127.0.0.1:0?colour=red': unknown parameter"),
        ("127.0.0.1:7000", "bad URL '127.0.0.1:7000': expected scheme://address"),
        ("carrier-pigeon://coop", "no transport for scheme 'carrier-pigeon'"),
        ("inproc://a/b", "bad URL 'inproc://a/b': expected inproc://name"),
    ],
)
def test_bad_listen_url(tmp_path: Path, url: str, message: str) -> None:
    path = write(tmp_path, f'{CALC}listen = ["inproc://ok", "{url}"]\n')
    [problem] = refused(path)
    assert problem.startswith(f"{path}: services.calc.listen[1]: {message}"), problem


def test_bad_binding_urls(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        {GATEWAY}
        [services.gateway.bindings]
        calc = "tcp://127.0.0.1:0"
        other = "tcp://:7000"
        third = 7
        fourth = "zmq+tcp://127.0.0.1:0"
    """)
    problems = refused(path)
    assert problems == [
        f"{path}: services.gateway.bindings.calc: bad URL 'tcp://127.0.0.1:0': a host and a port other than 0 "
        "are needed to connect",
        f"{path}: services.gateway.bindings.other: bad TCP URL 'tcp://:7000': expected tcp://host:port",
        f"{path}: services.gateway.bindings.third: expected a service name or a URL, got 7",
        f"{path}: services.gateway.bindings.fourth: bad ZeroMQ URL 'zmq+tcp://127.0.0.1:0': cannot connect to port 0",
    ]


def test_listener_declared_twice(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        {CALC}listen = ["inproc://calc", "tcp://127.0.0.1:7000"]
        {GATEWAY}listen = ["tcp://127.0.0.1:7000", "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", "zmq+tcp://127.0.0.1:0",
                           "zmq+tcp://127.0.0.1:0"]
    """)
    [problem] = refused(path)
    assert problem == (f"{path}: services.gateway.listen[0]: tcp://127.0.0.1:7000 is already listened on "
                       "by [services.calc]")


def test_cycle_through_own_listeners_cannot_start(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        {CALC}listen = ["inproc://calc"]
        bindings = {{ gw = "inproc://gateway" }}
        {GATEWAY}listen = ["inproc://gateway"]
        bindings = {{ calc = "inproc://calc" }}
    """)
    [problem] = refused(path)
    assert problem == (
        f"{path}: services.calc.bindings.gw: services bound by URL to each other's listeners form a cycle "
        "(calc -> gateway -> calc) that cannot start in order; bind one of them by service name (in-process) instead"
    )


def test_bad_node_values(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        [node]
        name = ""
        grace = -1
        metrics = {{ listen = "localhost" }}
        {CALC}
    """)
    problems = refused(path)
    assert problems == [
        f"{path}: node.name: expected a non-empty string, got ''",
        f"{path}: node.grace: expected seconds from 0 to 3600, got -1",
        f"{path}: node.metrics.listen: expected host:port, got 'localhost'",
    ]


def test_serve_without_check_refuses_the_same_way(tmp_path: Path) -> None:
    path = write(tmp_path, f'{GATEWAY}bindings = {{ calc = "calc" }}\n')
    [problem] = refused(path, check=False)
    assert "services.gateway.bindings.calc: no service named 'calc'" in problem


def test_check_of_the_example_config() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "node.toml"
    proc = serve("--check", str(example))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{example}: ok (node 'calc-node': calc, gateway)"


def test_start_failure_after_checks_is_reported_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(tmp_path, f'{CALC}listen = ["inproc://calc", "tcp://127.0.0.1:{port}"]\n')
        proc = serve(str(path))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "error: node 'node' could not start:" in proc.stderr
    assert "ready" not in proc.stdout


# -- the loader in-process ---------------------------------------------------------------------


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(NodeConfigError) as info:
        parse_config(f'{GATEWAY}listen = ["bad"]\nbindings = {{ a = "x", b = "y" }}\n', "n.toml")
    assert len(info.value.problems) == 3
    assert all(p.startswith("n.toml: services.gateway.") for p in info.value.problems)


def test_local_cycles_and_self_bindings_are_fine_and_build_a_node() -> None:
    config = parse_config(f"""
{CALC}listen = ["inproc://cfg-calc"]
bindings = {{ gateway = "gateway", me = "inproc://cfg-calc" }}
{GATEWAY}bindings = {{ calc = "calc" }}
""", "n.toml")
    node = config.build()
    node.wire()
    try:
        assert isinstance(calc.bindings["gateway"], LocalBinding)
        assert isinstance(calc.bindings["me"], RemoteBinding)
        assert isinstance(gateway.bindings["calc"], LocalBinding)
        assert gateway.bindings["calc"].service is calc  # type: ignore[attr-defined]
    finally:
        calc.bindings = gateway.bindings = type(calc.bindings)({})


def test_services_start_after_the_listeners_they_are_bound_to() -> None:
    config = parse_config(f"""
{GATEWAY}bindings = {{ calc = "tcp://127.0.0.1:7010" }}
listen = ["inproc://gw"]
{CALC}listen = ["tcp://127.0.0.1:7010"]
""", "n.toml")
    assert [s.name for s in config.services] == ["calc", "gateway"]
    assert config.name == "n"


def test_listener_tables_carry_transport_options() -> None:
    config = parse_config(f'{CALC}listen = [{{ url = "inproc://o", queue_size = 8 }}]\n', "n.toml")
    [spec] = config.services
    assert spec.listen[0].url == "inproc://o" and spec.listen[0].options == {"queue_size": 8}
    with pytest.raises(NodeConfigError, match=r"services.calc.listen\[0\]: a listener table needs a 'url'"):
        parse_config(f"{CALC}listen = [{{ queue_size = 8 }}]\n", "n.toml")


def test_unreachable_service_is_a_warning() -> None:
    config = parse_config(CALC, "n.toml")
    assert config.warnings == ("n.toml: services.calc: no listener and no binding to it: it cannot be called",)


async def test_a_loaded_config_serves(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        [node]
        name = "t"
        {CALC}listen = ["inproc://cfg-serve"]
        {GATEWAY}bindings = {{ calc = "inproc://cfg-serve" }}
    """)
    node = load_config(path).build()
    async with node:
        done = await gateway.dispatch(CalcWork(a=2, b=3, op=WorkType.MULT))
    assert done.result == 6


def test_url_helpers() -> None:
    assert parse_host_port("[::1]:80") == ("::1", 80)
    assert parse_host_port("http://127.0.0.1:0") == ("127.0.0.1", 0)
    assert check_url("tcp://127.0.0.1:1", listen=False) is None
    assert check_url(5, listen=True) == "expected a URL string, got int"


def test_bad_listener_options_are_refused_before_anything_starts(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        {CALC}listen = [{{ url = "zmq+tcp://127.0.0.1:0", workers = -1 }},
                  {{ url = "zmq+tcp://127.0.0.1:0", colour = "red" }},
                  {{ url = "tcp://127.0.0.1:0", max_in_flight = 0 }},
                  {{ url = "inproc://calc", queue = 3 }},
                  {{ url = "zmq+tcp://127.0.0.1:0", workers = 2, hwm = 10 }}]
    """)
    problems = refused(path)
    assert problems[0] == (f"{path}: services.calc.listen[0]: ZeroMQ option workers must be a number of "
                           "processes >= 0, got -1")
    assert problems[1].startswith(f"{path}: services.calc.listen[1]: unknown ZeroMQ listen option(s) colour")
    assert problems[2] == f"{path}: services.calc.listen[2]: max_in_flight must be a positive int, got 0"
    assert problems[3].startswith(f"{path}: services.calc.listen[3]: bad listen option: ")
    assert "'queue'" in problems[3]
    assert len(problems) == 4  # the last listener's options are good


def test_expose_errors_is_a_development_switch_per_service() -> None:
    config = parse_config(f"{CALC}listen = [\"inproc://cfg-expose\"]\nexpose_errors = true\n", "n.toml")
    assert calc.expose_errors is False
    try:
        config.build()
        assert calc.expose_errors is True
    finally:
        calc.expose_errors = False
    assert parse_config(f"{CALC}listen = [\"inproc://cfg-expose\"]\n", "n.toml").services[0].expose_errors is None
    with pytest.raises(NodeConfigError, match="services.calc.expose_errors: expected true or false, got 'yes'"):
        parse_config(f"{CALC}expose_errors = \"yes\"\n", "n.toml")


async def test_reflection_per_listener_and_the_drain_period_from_a_config() -> None:
    from nanomsg_kernel import Client, RemoteError, Status
    from nanomsg_kernel.builtin import BuiltinRoute, Describe, HealthStatus

    config = parse_config(
        f'[node]\ndrain = 2.5\n{CALC}listen = [{{ url = "inproc://cfg-refl-off", reflection = false }}, '
        f'"inproc://cfg-refl-on"]\n', "n.toml")
    assert config.drain == 2.5
    assert config.services[0].listen[0].options == {"reflection": False}
    node = config.build()
    async with node:
        async with Client(BuiltinRoute, "inproc://cfg-refl-off", timeout=10.0) as off:
            with pytest.raises(RemoteError) as err:
                await off.call(Describe())
            assert err.value.status is Status.CONTRACT_NOT_SUPPORTED
        async with Client(BuiltinRoute, "inproc://cfg-refl-on", timeout=10.0) as on:
            assert (await on.call(Describe())).kernel == "CalcRoute"
    assert calc.health is HealthStatus.NOT_SERVING
    calc.set_health(HealthStatus.SERVING)


def test_bad_reflection_and_drain_values() -> None:
    with pytest.raises(NodeConfigError) as err:
        parse_config(f'[node]\ndrain = -1\n{CALC}listen = [{{ url = "inproc://x", reflection = "no" }}]\n', "n.toml")
    assert err.value.problems == [
        "n.toml: node.drain: expected seconds from 0 to 3600, got -1",
        "n.toml: services.calc.listen[0].reflection: expected true or false, got 'no'",
    ]
