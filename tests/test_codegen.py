"""Code generation: schemas -> kernel modules written as by hand, fresh-checked, exported back."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanomsg_kernel import RoutingEnum, contract, contract_info, field, record
from nanomsg_kernel.app.schema_cli import codegen_command, schema_group
from nanomsg_kernel.codegen.export import export_kernel, export_with_warnings
from nanomsg_kernel.codegen.generate import plan
from nanomsg_kernel.codegen.load_kernel import load_routes
from nanomsg_kernel.codegen.model import (
    EnumSchema,
    FieldSchema,
    KernelSchema,
    MessageSchema,
    TypeRef,
    clean_doc,
)
from nanomsg_kernel.codegen.render import GENERATED_MARK, render_module
from nanomsg_kernel.codegen.schema import SchemaError, load_path, load_text
from nanomsg_kernel.codegen.toml_out import to_toml
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType
from nanomsg_kernel.contracts.catalog import CatalogRoute
from nanomsg_kernel.testing import assert_roundtrip

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "nanomsg-kernel codegen schemas/ --out contracts/"

STRESS = '''\
format = 1
doc = """A kernel that uses every corner of the schema format.

It has a backslash \\\\ and "quotes"."""

[routes]
name = "StressRoute"

[routes.members]
A_VERY_LONG_ROUTE_NAME_THAT_KEEPS_GOING_AND_GOING_UNTIL_THE_DECORATOR_LINE_IS_TOO_LONG = 0
SHORT = 65279

[enums.Mode]
members = { FAST = "fast", SLOW = "slow", QUOTE = "it's \\"quoted\\"" }

[enums.Level]
doc = "\\"Levels\\"\\tstart with a quote,\\nhave\\u0085odd\\rcharacters\\u2028and\\n\\n      indented   \\n  lines."
members = { LOW = -1, HIGH = 9223372036854775807 }

[records.Outer]
[records.Outer.fields]
inner = { tag = 1, type = "Inner" }
inners = { tag = 2, type = "dict[int, list[optional[Inner]]]", default = {} }

[records.Inner]
version = 3
reserved = [2, 3]
doc = "Ends with a quote \\""

[records.Inner.fields]
x = { tag = 1, type = "float", default = 0 }
y = { tag = 4, type = "optional[Level]", default = "HIGH", since = 3 }

[contracts.AVeryLongContractNameThatIsLongEnough]
route = "A_VERY_LONG_ROUTE_NAME_THAT_KEEPS_GOING_AND_GOING_UNTIL_THE_DECORATOR_LINE_IS_TOO_LONG"
version = 65535
reserved = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900, 2000, 2100]

[contracts.AVeryLongContractNameThatIsLongEnough.fields]
outer = { tag = 7, type = "Outer" }
mode = { tag = 8, type = "Mode", default = "QUOTE", since = 65535 }
pair = { tag = 9, type = "tuple[int, str]", default = [1, "it's"] }
longpair = { tag = 17, type = "tuple[str, str]", default = ["a long string to make this line too long", "and another one that is long"] }
longone = { tag = 18, type = "tuple[str, ...]", default = ["a long string to make the field(...) line too long for one line"], since = 2 }
wide = { tag = 19, type = "tuple[str, str]", default = ["a long string to make this line too long", "and another long one that does not fit"] }
one = { tag = 10, type = "tuple[Mode]", default = ["SLOW"] }
many = { tag = 11, type = "tuple[Level, ...]", default = ["LOW", "HIGH"] }
blob = { tag = 12, type = "bytes", default = "00ff27" }
text = { tag = 13, type = "str", default = "a fairly long default string value that will push this line past the limit of the line", since = 40000 }
f = { tag = 14, type = "float", default = inf }
g = { tag = 15, type = "float", default = -1e300 }
when = { tag = 16, type = "optional[datetime]", default_none = true }
u = { tag = 2147483647, type = "optional[uuid]", default_none = true }

[contracts.Empty]
route = "SHORT"
'''


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nanomsg_kernel.app.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_contracts_are_generated_from_the_schemas_and_fresh() -> None:
    modules = plan(ROOT / "schemas", ROOT / "contracts")
    assert {m.path.name for m in modules} == {"calc.py", "catalog.py"}  # history/ is not generated
    for m in modules:
        assert m.fresh, f"{m.path} is stale: run {COMMAND}"
        assert m.source.startswith(f"{GENERATED_MARK} from schemas/{m.schema.name}; do not edit.\n")


def test_codegen_check_passes_on_the_project_as_ci_runs_it() -> None:
    done = run_cli("codegen", "schemas/", "--out", "contracts/", "--check")
    assert done.returncode == 0, done.stderr
    assert "2 generated module(s) up to date" in done.stdout


def test_the_generated_module_is_what_a_person_writes() -> None:
    source = (ROOT / "contracts" / "calc.py").read_text()
    assert textwrap.dedent(
        '''\
        @contract(CalcRoute.CALC_WORK, version=2)
        class CalcWork:
            """Apply ``op`` to ``a`` and ``b``; the reply carries ``result``."""

            a: int
            b: int
            op: WorkType
            result: int | None = None
            precision: int = field(default=0, since=2)
        '''
    ) in source
    catalog = (ROOT / "contracts" / "catalog.py").read_text()
    assert "@contract(CatalogRoute.PUT_ITEM, reserved=[3])" in catalog
    assert "    note: str | None = field(default=None, tag=4)\n" in catalog
    assert "    tags: list[str] = field(factory=list)\n" in catalog
    assert "    colours: tuple[Colour, ...] = ()\n" in catalog
    assert catalog.index("class Price") < catalog.index("class Item") < catalog.index("class PutItem")


def test_generated_contracts_keep_the_public_api() -> None:
    assert [(m.name, int(m)) for m in CalcRoute] == [("CALC_WORK", 1), ("ECHO", 2), ("CALC_DONE", 3)]
    info = contract_info(CalcWork)
    assert info.version == 2
    assert [(f.name, f.tag, f.since, f.spec.describe()) for f in info.fields] == [
        ("a", 1, 1, "int"), ("b", 2, 1, "int"), ("op", 3, 1, "WorkType"),
        ("result", 4, 1, "optional[int]"), ("precision", 5, 2, "int"),
    ]
    assert CalcWork(1, 2, WorkType.SUM) == CalcWork(a=1, b=2, op=WorkType.SUM, result=None, precision=0)


@pytest.mark.parametrize(("routes", "name"), [(CalcRoute, "calc"), (CatalogRoute, "catalog")])
def test_export_of_a_kernel_equals_its_schema_and_regenerates_the_same_module(
    routes: type[RoutingEnum], name: str
) -> None:
    exported = export_kernel(routes)
    assert exported == load_path(ROOT / "schemas" / f"{name}.toml")
    regenerated = render_module(load_text(to_toml(exported), "x", name), schema_label=f"schemas/{name}.toml",
                                command=COMMAND)
    assert regenerated == (ROOT / "contracts" / f"{name}.py").read_text()


def test_rendering_is_deterministic_and_formatted(tmp_path: Path) -> None:
    kernel = load_text(STRESS, "stress.toml", "stress")
    first = render_module(kernel, schema_label="schemas/stress.toml", command="x")
    assert first == render_module(load_text(STRESS, "stress.toml", "stress"), schema_label="schemas/stress.toml",
                                  command="x")
    # records come out after the records they use, whatever the file order
    assert first.index("class Inner") < first.index("class Outer")
    path = tmp_path / "stress.py"
    path.write_text(first)
    config = str(ROOT / "pyproject.toml")
    fmt = subprocess.run([sys.executable, "-m", "ruff", "format", "--config", config, "--diff", str(path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--config", config, str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    types = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(path)],
                           capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert types.returncode == 0, types.stdout + types.stderr


def test_a_stress_kernel_builds_and_roundtrips() -> None:
    routes = load_routes(load_text(STRESS, "stress.toml", "stress"))
    big = routes(0).contract
    info = contract_info(big)
    assert info.version == 65535 and 1500 in info.reserved
    assert [f.tag for f in info.fields][:3] == [7, 8, 9] and info.fields[-1].tag == 2**31 - 1
    made = big(outer=contract_info(big).fields[0].spec.py(inner=info.fields[0].spec.py.__nk_info__.fields[0]
                                                               .spec.py()))
    assert made.blob == b"\x00\xff'" and made.text.startswith("a fairly") and made.f == float("inf")
    assert made.mode.value == "it's \"quoted\"" and made.pair == (1, "it's") and made.g == -1e300
    assert_roundtrip(routes, max_examples=25)


def test_each_load_builds_new_distinct_classes() -> None:
    kernel = load_path(ROOT / "schemas" / "calc.toml")
    a, b = load_routes(kernel), load_routes(kernel)
    assert a is not b and a.CALC_WORK.contract is not b.CALC_WORK.contract
    assert a.codec().decode(b.codec().encode(b.ECHO.contract("hi"))) == a.ECHO.contract("hi")


def copy_schemas(tmp_path: Path) -> tuple[Path, Path]:
    schemas, out = tmp_path / "schemas", tmp_path / "contracts"
    schemas.mkdir()
    (schemas / "history").mkdir()
    for name in ("calc.toml", "catalog.toml", "history/calc.v1.toml"):
        (schemas / name).write_text((ROOT / "schemas" / name).read_text())
    return schemas, out


def test_codegen_writes_modules_and_leaves_unchanged_ones_alone(tmp_path: Path) -> None:
    schemas, out = copy_schemas(tmp_path)
    runner = CliRunner()
    done = runner.invoke(codegen_command, [str(schemas), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in out.iterdir()) == ["calc.py", "catalog.py"]
    assert (out / "calc.py").read_text() == (ROOT / "contracts" / "calc.py").read_text()
    before = (out / "calc.py").stat().st_mtime_ns
    os.utime(out / "calc.py", ns=(before - 10**9, before - 10**9))
    again = runner.invoke(codegen_command, [str(schemas), "--out", str(out)])
    assert again.exit_code == 0 and "unchanged:" in again.output
    assert (out / "calc.py").stat().st_mtime_ns == before - 10**9


def test_codegen_check_names_the_stale_and_the_missing_module(tmp_path: Path) -> None:
    schemas, out = copy_schemas(tmp_path)
    runner = CliRunner()
    assert runner.invoke(codegen_command, [str(schemas), "--out", str(out)]).exit_code == 0
    calc = schemas / "calc.toml"
    calc.write_text(calc.read_text().replace('text = { tag = 1, type = "str" }',
                                             'text = { tag = 1, type = "str" }\nlang = { tag = 3, type = "str", '
                                             'default = "en" }'))
    (out / "catalog.py").unlink()
    done = runner.invoke(codegen_command, [str(schemas), "--out", str(out), "--check"])
    assert done.exit_code == 1
    assert f"stale: {out / 'calc.py'} does not match {calc}" in done.output
    assert f"missing: {out / 'catalog.py'}" in done.output
    assert '+    lang: str = field(default="en", tag=3)' in done.output  # the diff shows what changed
    assert runner.invoke(codegen_command, [str(schemas), "--out", str(out)]).exit_code == 0
    assert runner.invoke(codegen_command, [str(schemas), "--out", str(out), "--check"]).exit_code == 0


def test_codegen_check_fails_in_a_subprocess_too(tmp_path: Path) -> None:
    schemas, out = copy_schemas(tmp_path)
    out.mkdir()
    (out / "calc.py").write_text((ROOT / "contracts" / "calc.py").read_text().replace("ECHO = 2", "ECHO = 7"))
    done = run_cli("codegen", str(schemas / "calc.toml"), "--out", str(out), "--check")
    assert done.returncode == 1
    assert f"stale: {out / 'calc.py'}" in done.stderr


def test_codegen_refuses_to_overwrite_a_hand_written_module(tmp_path: Path) -> None:
    schemas, out = copy_schemas(tmp_path)
    out.mkdir()
    (out / "calc.py").write_text('"""Hand-written."""\n')
    runner = CliRunner()
    done = runner.invoke(codegen_command, [str(schemas), "--out", str(out)])
    assert done.exit_code == 2 and "not generated by codegen" in done.output
    assert (out / "calc.py").read_text() == '"""Hand-written."""\n'
    assert runner.invoke(codegen_command, [str(schemas), "--out", str(out), "--force"]).exit_code == 0
    assert (out / "calc.py").read_text().startswith(GENERATED_MARK)


def test_codegen_reports_schema_errors_with_exit_status_2(tmp_path: Path) -> None:
    schemas, out = copy_schemas(tmp_path)
    (schemas / "calc.toml").write_text((schemas / "calc.toml").read_text().replace('type = "WorkType"',
                                                                                     'type = "WorkKind"'))
    (schemas / "bad-name.toml").write_text((schemas / "catalog.toml").read_text())
    done = run_cli("codegen", str(schemas), "--out", str(out))
    assert done.returncode == 2
    line = (schemas / "calc.toml").read_text().splitlines().index(
        'op = { tag = 3, type = "WorkKind" }') + 1
    assert f"{schemas / 'calc.toml'}:{line}: CalcWork.op: unknown type 'WorkKind'" in done.stderr
    assert "bad-name.toml: the file name must be a Python module name" in done.stderr
    assert not out.exists()


def test_schema_export_cli_writes_the_schema_of_a_hand_written_kernel(tmp_path: Path) -> None:
    done = run_cli("schema", "export", "nanomsg_kernel.contracts.catalog:CatalogRoute")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# Schema of nanomsg_kernel.contracts.catalog:CatalogRoute")
    assert load_text(done.stdout, "x", "catalog") == load_path(ROOT / "schemas" / "catalog.toml")
    target = tmp_path / "calc.toml"
    assert CliRunner().invoke(schema_group, ["export", "nanomsg_kernel.contracts.calc:CalcRoute", "-o", str(target)]).exit_code == 0
    assert load_path(target) == load_path(ROOT / "schemas" / "calc.toml")


class HandRoute(RoutingEnum):
    """A hand-written kernel with things a schema leaves out."""

    SHOUT = 5


@record
class Words:
    """Nested."""

    items: list[str] = field(factory=list)


@contract(HandRoute.SHOUT, version=3, reserved=[2])
class Shout:
    """Shout words."""

    words: Words
    volume: int = field(default=1, tag=3, since=2, validator=attrs.validators.ge(0))


class LambdaRoute(RoutingEnum):
    """Uses a default factory no schema can express."""

    ONE = 1


@contract(LambdaRoute.ONE)
class One:
    """Has a lambda factory."""

    items: list[int] = field(factory=lambda: [1, 2])


def test_export_of_a_hand_written_kernel_notes_what_the_schema_leaves_out() -> None:
    kernel, warnings = export_with_warnings(HandRoute)
    assert warnings == ["Shout.volume: validators and converters are not part of the schema"]
    shout = kernel.contracts[0]
    assert (shout.version, shout.reserved, [f.tag for f in shout.fields]) == (3, (2,), [1, 3])
    assert kernel.records[0].name == "Words" and kernel.name == "test_codegen"
    text = to_toml(kernel)
    assert 'volume = { tag = 3, type = "int", default = 1, since = 2 }' in text


def test_export_refuses_what_a_schema_cannot_express() -> None:
    with pytest.raises(SchemaError, match=r"One.items: the default factory '<lambda>' cannot be written"):
        export_kernel(LambdaRoute)
    runner = CliRunner()
    for ref, message in [
        ("tests.test_codegen:One", "One is not a RoutingEnum subclass"),
        ("tests.test_codegen:Nothing", "has no attribute 'Nothing'"),
        ("no_such_module_x:Routes", "cannot import the module"),
        ("tests.test_codegen:LambdaRoute", "cannot be written in a schema"),
    ]:
        done = runner.invoke(schema_group, ["export", ref])
        assert done.exit_code == 2, done.output
        assert message in done.output


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    doc=TEXT,
    s=TEXT,
    b=st.binary(max_size=12),
    f=st.floats(allow_nan=False),
    i=st.integers(-(2**63), 2**63 - 1),
    value=TEXT.filter(bool),
)
def test_any_values_survive_the_schema_writer_and_the_renderer(
    doc: str, s: str, b: bytes, f: float, i: int, value: str
) -> None:
    doc = clean_doc(doc)  # what a schema keeps of a docstring
    kernel = KernelSchema(
        name="k",
        routing="R",
        routes=(("ONE", 1),),
        enums=(EnumSchema("E", (("A", value),), doc),),
        contracts=(
            MessageSchema(
                "One",
                (
                    FieldSchema("s", 1, TypeRef("str"), s),
                    FieldSchema("b", 2, TypeRef("bytes"), b),
                    FieldSchema("f", 3, TypeRef("float"), f),
                    FieldSchema("i", 4, TypeRef("int"), i),
                    FieldSchema("e", 5, TypeRef("named", name="E"), "A"),
                ),
                route="ONE",
                doc=doc,
            ),
        ),
        doc=doc,
    )
    assert load_text(to_toml(kernel), "k.toml", "k") == kernel
    routes = load_routes(kernel)
    made = routes.ONE.contract()
    assert (made.s, made.b, made.f, made.i, made.e.value) == (s, b, f, i, value)
    assert inspect.cleandoc(routes.ONE.contract.__doc__) == (doc or "The One contract (R.ONE).")
    assert inspect.cleandoc(sys.modules[routes.__module__].__doc__ or "") == (doc or "The k kernel.")
