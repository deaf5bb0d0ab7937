"""The command line imports the user's ``module:attribute`` from the app directory.

Each test runs the real command in a subprocess started with ``python -P``, which (like the
installed ``nanomsg-kernel`` script) puts no directory of the user's on ``sys.path``: the
user's ``shop.py`` is found only through the app directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from cli_serving import serving

import nanomsg_kernel
from nanomsg_kernel.frame import Kind, pack_header

REPO = Path(nanomsg_kernel.__file__).resolve().parent.parent

SHOP = '''
from nanomsg_kernel import RoutingEnum, Service, contract


class ShopRoute(RoutingEnum):
    PRICE = 1


@contract(ShopRoute.PRICE)
class Price:
    item: str
    cents: int | None = None


shop = Service("shop", ShopRoute)


@shop.handler(Price)
async def price(msg: Price) -> Price:
    return msg.evolve(cents=100 * len(msg.item))
'''

CONFIG = '''
[services.shop]
object = "shop:shop"
listen = ["tcp://127.0.0.1:0"]
'''


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A user's directory: shop.py beside shop.toml, and an empty directory 'elsewhere'."""
    (tmp_path / "shop.py").write_text(SHOP, encoding="utf-8")
    (tmp_path / "shop.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


def command(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "nanomsg_kernel.app.cli", *args]


def env() -> dict[str, str]:
    """The package importable from the source tree; nothing of the user's on the path."""
    return dict(os.environ, PYTHONPATH=str(REPO))


def cli(*args: str, cwd: Path, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = subprocess.run(command(*args), cwd=cwd, env=env(), input=stdin, capture_output=True, timeout=60,
                          check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def shown(text: str) -> dict[str, str]:
    """The fields of ``inspect``'s text output."""
    return {key: value.strip() for key, _, value in (line.strip().partition("  ") for line in text.splitlines())}


@pytest.fixture
def served(app: Path) -> Iterator[str]:
    """``nanomsg-kernel serve shop.toml`` run in the user's directory; the URL it listens on."""
    with serving(command("serve", "shop.toml"), cwd=app, env=env()) as urls:
        yield next(iter(urls.values()))


def test_serve_call_and_inspect_find_shop_py_in_the_current_directory(app: Path, served: str) -> None:
    code, out, err = cli("call", served, "Price", "--kernel", "shop:ShopRoute", "--json", '{"item": "lamp"}', cwd=app)
    assert code == 0, err
    assert json.loads(out) == {"item": "lamp", "cents": 400}
    body = msgpack.packb({1: "lamp", 2: 400})
    frame = pack_header(Kind.RESPONSE, 1, 1, 7, 0, len(body)) + body
    code, out, err = cli("inspect", "-", "--kernel", "shop:ShopRoute", cwd=app, stdin=frame)
    assert code == 0, err
    assert shown(out)["contract"] == "Price" and shown(out)[".cents"] == "400"


def test_from_another_directory_the_error_says_where_it_looked(app: Path) -> None:
    elsewhere = app / "elsewhere"
    code, out, err = cli("serve", "--check", "../shop.toml", cwd=elsewhere)
    assert (code, out) == (2, "")
    assert err.splitlines()[0] == (
        f"../shop.toml: services.shop.object: cannot import module 'shop': ModuleNotFoundError: No module named "
        f"'shop' (looked for in the app directory {elsewhere} and the installed packages)"
    )
    code, _out, err = cli("call", "tcp://127.0.0.1:1", "Price", "-k", "shop:ShopRoute", cwd=elsewhere)
    assert code == 2 and err.startswith("error: cannot import module 'shop'")


def test_app_dir_option_names_the_directory(app: Path) -> None:
    elsewhere = app / "elsewhere"
    code, out, err = cli("serve", "--check", "--app-dir", "..", "../shop.toml", cwd=elsewhere)
    assert code == 0, err
    assert out == "../shop.toml: ok (node 'shop': shop)\n"
    body = msgpack.packb({1: "lamp"})
    frame = pack_header(Kind.REQUEST, 1, 1, 7, 0, len(body)) + body
    code, out, err = cli("inspect", "-", "-k", "shop:ShopRoute", "--app-dir", str(app), cwd=elsewhere, stdin=frame)
    assert code == 0, err
    assert shown(out)[".item"] == "lamp"
    code, _out, err = cli("inspect", "-", "-k", "shop:ShopRoute", "--app-dir", "nowhere", cwd=elsewhere, stdin=frame)
    assert (code, err) == (2, "error: app directory 'nowhere' is not a directory\n")


def test_a_config_can_name_its_app_directory_relative_to_itself(app: Path) -> None:
    deploy = app / "deploy"
    deploy.mkdir()
    (deploy / "shop.toml").write_text('[node]\napp_dir = ".."\n' + CONFIG, encoding="utf-8")
    code, out, err = cli("serve", "--check", str(deploy / "shop.toml"), cwd=app / "elsewhere")
    assert code == 0, err
    assert out.endswith("ok (node 'shop': shop)\n")
    (deploy / "bad.toml").write_text('[node]\napp_dir = "missing"\n' + CONFIG, encoding="utf-8")
    code, _out, err = cli("serve", "--check", "deploy/bad.toml", cwd=app)
    assert code == 2
    assert err.startswith(f"deploy/bad.toml: node.app_dir: app directory '{deploy / 'missing'}' is not a directory\n")


def test_the_package_alone_does_not_import_from_the_current_directory(app: Path) -> None:
    """What the app directory changes: without it (plain ``-P``), shop is not importable."""
    script = textwrap.dedent("""
        import importlib.util, sys
        print(importlib.util.find_spec("shop") is None)
    """)
    proc = subprocess.run([sys.executable, "-P", "-c", script], cwd=app, env=env(), capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout == "True\n"
