"""Schema files: the format, type expressions, defaults, and errors with file, line and name."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nanomsg_kernel.codegen.model import EMPTY_DICT, EMPTY_LIST, REQUIRED, TypeRef
from nanomsg_kernel.codegen.schema import SchemaError, load_path, load_text
from nanomsg_kernel.codegen.tomllines import key_lines
from nanomsg_kernel.codegen.typeexpr import TypeExprError, parse_type, python_annotation
from nanomsg_kernel.errors import ContractError

ROOT = Path(__file__).resolve().parent.parent

HEAD = """\
format = 1

[routes]
name = "R"

[routes.members]
PING = 1

[enums.Colour]
members = { RED = "red", BLUE = "blue" }

[records.Point]
[records.Point.fields]
x = { tag = 1, type = "int" }

[contracts.Ping]
route = "PING"
version = 2
reserved = [9]

[contracts.Ping.fields]
"""
FIELDS_LINE = HEAD.count("\n") + 1  # the line of the first field appended to HEAD


def load(text: str):
    return load_text(text, "k.toml", "k")


def problems(text: str) -> list[str]:
    with pytest.raises(SchemaError) as info:
        load(text)
    return [str(p) for p in info.value.problems]


def test_example_schemas_load() -> None:
    calc = load_path(ROOT / "schemas" / "calc.toml")
    assert calc.routing == "CalcRoute"
    assert calc.routes == (("CALC_WORK", 1), ("ECHO", 2), ("CALC_DONE", 3))
    work = calc.contracts[0]
    assert (work.name, work.version, work.route) == ("CalcWork", 2, "CALC_WORK")
    precision = work.fields[-1]
    assert (precision.name, precision.tag, precision.default, precision.since) == ("precision", 5, 0, 2)
    assert work.fields[3].default is None and work.fields[0].default is REQUIRED
    v1 = load_path(ROOT / "schemas" / "history" / "calc.v1.toml")
    assert v1.contracts[0].version == 1 and [f.name for f in v1.contracts[0].fields] == ["a", "b", "op", "result"]
    catalog = load_path(ROOT / "schemas" / "catalog.toml")
    item = catalog.record("Item")
    assert item is not None
    defaults = {f.name: f.default for f in item.fields}
    assert defaults["tags"] is EMPTY_LIST and defaults["stock"] is EMPTY_DICT
    assert defaults["colours"] == () and defaults["image"] == b"" and defaults["active"] is True
    assert catalog.contracts[0].reserved == (3,)


def test_a_schema_error_is_a_contract_error() -> None:
    assert issubclass(SchemaError, ContractError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("int", "int"),
        ("optional[ list[ str ] ]", "optional[list[str]]"),
        ("tuple[float, float, float]", "tuple[float, float, float]"),
        ("tuple[Colour, ...]", "tuple[Colour, ...]"),
        ("dict[int, optional[Point]]", "dict[int, optional[Point]]"),
        ("uuid", "uuid"),
    ],
)
def test_type_expressions_parse_and_describe(text: str, expected: str) -> None:
    assert parse_type(text).describe() == expected


def test_python_annotations_are_what_a_person_writes() -> None:
    assert python_annotation(parse_type("optional[tuple[float, float]]")) == "tuple[float, float] | None"
    assert python_annotation(parse_type("list[optional[datetime]]")) == "list[datetime.datetime | None]"
    assert python_annotation(parse_type("dict[str, uuid]")) == "dict[str, uuid.UUID]"
    assert python_annotation(parse_type("tuple[Colour, ...]")) == "tuple[Colour, ...]"
    assert parse_type("Point") == TypeRef("named", name="Point")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("list", "needs element types"),
        ("list[int", "missing ']'"),
        ("list[int, str]", "takes 1 type argument"),
        ("dict[float, int]", "dict keys must be str or int"),
        ("optional[optional[int]]", "same as optional"),
        ("int[str]", "takes no type arguments"),
        ("list[...]", "only allowed as tuple[X, ...]"),
        ("tuple[int, str, ...]", "only allowed as tuple[X, ...]"),
        ("int str", "unexpected 'str'"),
        ("list[$]", "unexpected"),
        ("", "non-empty"),
    ],
)
def test_bad_type_expressions_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(TypeExprError, match=None) as info:
        parse_type(text)
    assert message in str(info.value)


def test_key_lines_follow_tables_dotted_quoted_and_inline_keys() -> None:
    text = textwrap.dedent(
        '''\
        top = 1
        doc = """
        a = 2
        [not.a.table]
        """
        arr = [
          1, # comment = 3
          2,
        ]
        [a.b]
        c = { d = 1, "e.f" = { g = [1, 2], h = 3 } }
        "quoted key".x = 4
        [[list.of]]
        y = 'z = 5'  # q = 1
        '''
    )
    lines = key_lines(text)
    assert lines.line("top") == 1
    assert lines.line("doc") == 2
    assert lines.line("a") is None  # inside a multi-line string
    assert lines.line("not", "a", "table") is None
    assert lines.line("arr") == 6
    assert lines.line("comment") is None
    assert lines.line("a", "b") == 10
    assert lines.line("a", "b", "c") == 11
    assert lines.line("a", "b", "c", "d") == 11
    assert lines.line("a", "b", "c", "e.f", "h") == 11
    assert lines.line("a", "b", "quoted key", "x") == 12
    assert lines.line("list", "of", "y") == 14
    assert lines.line("list", "of", "y", "missing") == 14  # falls back to the nearest written key
    assert lines.line("q") is None and lines.line("z") is None


def field_error(line: str) -> list[str]:
    return problems(HEAD + line + "\n")


@pytest.mark.parametrize(
    ("field", "name", "message"),
    [
        ('a = { tag = 1, type = "Nope" }', "Ping.a", "unknown type 'Nope'"),
        ('a = { tag = 1, type = "list[int" }', "Ping.a", "missing ']'"),
        ('a = { tag = 1, type = "Ping" }', "Ping.a", "Ping is a contract; only enums and records"),
        ('a = { type = "int" }', "Ping.a", "missing tag"),
        ('a = { tag = 0, type = "int" }', "Ping.a", "tag must be an integer from 1 to 2147483647"),
        ('a = { tag = 9, type = "int" }', "Ping.a", "tag 9 is reserved in Ping"),
        ('a = { tag = 1 }', "Ping.a", "missing type"),
        ('a = { tag = 1, type = "int", since = 3 }', "Ping.a", "since = 3 is newer than the version (2)"),
        ('a = { tag = 1, type = "int", default = "x" }', "Ping.a", "default 'x' is not an int"),
        ('a = { tag = 1, type = "int", default = true }', "Ping.a", "default True is not an int"),
        ('a = { tag = 1, type = "int", default = 9223372036854775807 }', None, None),
        ('a = { tag = 1, type = "float", default = nan }', "Ping.a", "cannot be nan"),
        ('a = { tag = 1, type = "list[int]", default = [1] }', "Ping.a", "a list default can only be []"),
        ('a = { tag = 1, type = "dict[str, int]", default = { x = 1 } }', "Ping.a", "only be {}"),
        ('a = { tag = 1, type = "int", default_none = true }', "Ping.a", "only optional[...] fields can default"),
        ('a = { tag = 1, type = "optional[int]", default_none = 1 }', "Ping.a", "default_none must be true or false"),
        ('a = { tag = 1, type = "optional[int]", default_none = true, default = 1 }', "Ping.a", "not both"),
        ('a = { tag = 1, type = "Colour", default = "GREEN" }', "Ping.a", "not a member of Colour (RED, BLUE)"),
        ('a = { tag = 1, type = "bytes", default = "zz" }', "Ping.a", "'zz' is not hex"),
        ('a = { tag = 1, type = "Point", default = 1 }', "Ping.a", "a Point field can have no default"),
        ('a = { tag = 1, type = "datetime", default = 1979-05-27T07:32:00Z }', "Ping.a", "can have no default"),
        ('a = { tag = 1, type = "tuple[int, int]", default = [1] }', "Ping.a", "needs 2 items, got 1"),
        ('a = { tag = 1, type = "int", defualt = 1 }', "Ping.a.defualt", "unknown key"),
        ('class = { tag = 1, type = "int" }', "Ping.class", "a field name must be an identifier"),
        ('route = { tag = 1, type = "int" }', "Ping.route", "'route' or 'evolve'"),
        ('_a = { tag = 1, type = "int" }', "Ping._a", "not start with _"),
        ('Colour = { tag = 1, type = "int" }', "Ping.Colour", "not be a type name"),
        ('a = 3', "Ping.a", "expected a table, got an integer"),
    ],
)
def test_field_errors_name_the_field_and_its_line(field: str, name: str | None, message: str | None) -> None:
    if name is None:
        load(HEAD + field + "\n")  # valid
        return
    found = field_error(field)
    assert found == [f"k.toml:{FIELDS_LINE}: {name}: {found[0].split(': ', 2)[2]}"], found
    assert message is not None and message in found[0]


def test_a_duplicate_tag_names_both_fields() -> None:
    found = field_error('a = { tag = 1, type = "int" }\nb = { tag = 1, type = "str" }')
    assert found == [f"k.toml:{FIELDS_LINE + 1}: Ping.b: tag 1 is already used by Ping.a"]


def test_a_required_field_after_a_defaulted_one_is_refused() -> None:
    found = field_error('a = { tag = 1, type = "int", default = 0 }\nb = { tag = 2, type = "int" }')
    assert len(found) == 1 and f"k.toml:{FIELDS_LINE + 1}: Ping.b: a required field cannot follow Ping.a" in found[0]


def test_every_problem_of_a_file_is_reported_together() -> None:
    found = field_error('a = { tag = 1, type = "Nope" }\nb = { tag = 2, type = "int", default = "x" }')
    assert [f.split(": ")[1] for f in found] == ["Ping.a", "Ping.b"]
    assert found[0].startswith(f"k.toml:{FIELDS_LINE}:") and found[1].startswith(f"k.toml:{FIELDS_LINE + 1}:")


def replace(old: str, new: str, base: str = HEAD) -> str:
    assert old in base
    return base.replace(old, new)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "needle", "name", "message"),
    [
        ("PING = 1", "PING = 1\nPONG = 1", "PONG", "R.PONG", "route id 1 is already used by R.PING"),
        ("PING = 1", "PING = 70000", "PING", "R.PING", "a route id must be an integer from 0 to 65279"),
        ("PING = 1", "PING = 65280", "PING", "R.PING", "a route id must be an integer from 0 to 65279"),
        ("PING = 1", "PING = 1\nPONG = 2", "PONG", "PONG", "no contract is bound to this route"),
        ("PING = 1", "PING = 1\n_x = 2", "_x", "R._x", "a route name must be an identifier"),
        ("PING = 1", "PING = 1\ncontract = 2", "contract", "R.contract", "nor an attribute of RoutingEnum"),
        ('route = "PING"', 'route = "PONG"', "PONG", "Ping", "route 'PONG' is not a member of R"),
        ('route = "PING"', 'doc = "x"', "[contracts.Ping]", "Ping", "a contract needs route"),
        ("version = 2", "version = 0", "version = 0", "Ping", "version must be an integer from 1 to 65535"),
        ("reserved = [9]", "reserved = [9, 9]", "reserved", "Ping", "tag 9 is reserved twice"),
        ("reserved = [9]", 'reserved = "9"', "reserved", "Ping", "reserved must be an array"),
        ('RED = "red", BLUE = "blue"', 'RED = "red", BLUE = 2', "members = {", "Colour", "all integers or all strings"),
        ('RED = "red", BLUE = "blue"', 'RED = "red", BLUE = "red"', "members = {", "Colour.BLUE",
         "value 'red' is already used by Colour.RED"),
        ("[enums.Colour]", "[enums.Point]", "[records.Point]", "Point", "record name is already used by an enum"),
        ("[records.Point]", "[records.Point]\ncolour = 1", "colour = 1", "Point.colour", "unknown key"),
        ('x = { tag = 1, type = "int" }', 'x = { tag = 1, type = "Loop" }\n[records.Loop.fields]\np = { tag = 1, type = "Point" }',
         "[records.Point]", "Point", "records use each other in a cycle: Point -> Loop -> Point"),
        ('name = "R"', 'name = "int"', 'name = "int"', "int", "routing enum name must be a Python identifier"),
        ("format = 1", "format = 2", "format", "format", "reads schema format 1, not 2"),
        ("format = 1", "format = 1\nfrmat = 1", "frmat", "schema.frmat", "unknown key"),
    ],
)
def test_schema_errors_name_the_offender_and_its_line(old: str, new: str, needle: str, name: str, message: str) -> None:
    text = replace(old, new) + 'a = { tag = 1, type = "int" }\n'
    found = problems(text)
    want = f"k.toml:{line_of(text, needle)}: {name}: "
    assert any(f.startswith(want) and message in f for f in found), found


def test_a_schema_without_routes_is_refused() -> None:
    assert problems("format = 1\n") == ["k.toml: routes: missing [routes] table (the routing enum)"]


def test_a_toml_syntax_error_gives_its_line() -> None:
    found = problems('format = 1\n\n[routes\nname = "R"\n')
    assert len(found) == 1 and found[0].startswith("k.toml:3: syntax: ")


def test_a_missing_file_is_a_schema_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"nope\.toml: nope\.toml: cannot read the schema"):
        load_path(tmp_path / "nope.toml")
    bad = tmp_path / "latin.toml"
    bad.write_bytes(b"doc = '\xff'\n")
    with pytest.raises(SchemaError, match="not UTF-8"):
        load_path(bad)


def test_defaults_of_every_kind_load() -> None:
    text = HEAD + textwrap.dedent(
        """\
        a = { tag = 1, type = "float", default = 1 }
        b = { tag = 2, type = "bytes", default = "00ff" }
        c = { tag = 3, type = "Colour", default = "BLUE" }
        d = { tag = 4, type = "tuple[int, Colour]", default = [1, "RED"] }
        e = { tag = 5, type = "optional[str]", default = "none" }
        f = { tag = 6, type = "optional[int]", default_none = true }
        g = { tag = 7, type = "list[Point]", default = [] }
        h = { tag = 8, type = "tuple[str, ...]", default = [] }
        """
    )
    ping = load(text).contracts[0]
    got = {f.name: f.default for f in ping.fields}
    assert got == {"a": 1.0, "b": b"\x00\xff", "c": "BLUE", "d": (1, "RED"), "e": "none", "f": None,
                   "g": EMPTY_LIST, "h": ()}
    assert type(got["a"]) is float
