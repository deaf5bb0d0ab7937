"""Schema text never becomes code: docs, names, values and paths are written as data."""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanomsg_kernel.app.schema_cli import codegen_command, schema_group
from nanomsg_kernel.codegen.diff import diff
from nanomsg_kernel.codegen.generate import plan
from nanomsg_kernel.codegen.load_kernel import load_module, load_routes
from nanomsg_kernel.codegen.model import (
    EMPTY_LIST,
    EnumSchema,
    FieldSchema,
    KernelSchema,
    MessageSchema,
    TypeRef,
    clean_doc,
)
from nanomsg_kernel.codegen.pysource import docstring
from nanomsg_kernel.codegen.reader import is_identifier
from nanomsg_kernel.codegen.render import GENERATED_MARK, render_module
from nanomsg_kernel.codegen.schema import SchemaError, load_path, load_text
from nanomsg_kernel.codegen.toml_out import to_toml, toml_value
from nanomsg_kernel.codegen.values import py_bytes, py_str
from nanomsg_kernel.testing import assert_evolution

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)

# Text that tries hardest to end a string literal or a line, mixed with any character.
NASTY = ['"', '"', '"""', "'", "\\", "\\\\", "\n", "\r", "\r\n", "\x00", "\t", "\x0c", "\x0b", "\x85",
         "\u2028", "\u2029", "\u202e", "\ufeff", " ", "  ", "#", ";", "(", ")", "x", "\\N", "\\u0041", "\x1b]0;"]
ANY_TEXT = st.lists(st.sampled_from([*NASTY, "\ud800", "\udfff"]) | st.characters(), max_size=14).map("".join)
"""Any text, lone surrogates included (a KernelSchema made in Python can hold them)."""
TOML_TEXT = st.lists(st.sampled_from(NASTY) | st.characters(blacklist_categories=("Cs",)), max_size=14).map("".join)
"""Any text a TOML file can hold (no lone surrogates)."""


def hostile(marker: Path) -> str:
    """A doc that, if it became code, would create ``marker``."""
    return f'A"""";__import__("pathlib").Path({str(marker)!r}).touch() #'


def kernel_with_docs(docs: dict[str, str], **values: Any) -> KernelSchema:
    """A kernel with a doc in every slot, and string values in every place a string is written."""
    member = values.get("member", "red")
    text = values.get("text", "t")
    blob = values.get("blob", b"b")
    return KernelSchema(
        name="k",
        routing="R",
        routes=(("ONE", 1),),
        enums=(EnumSchema("Colour", (("RED", member),), docs["enum"]),),
        records=(MessageSchema("Rec", (FieldSchema("s", 1, TypeRef("str"), text),), doc=docs["record"]),),
        contracts=(
            MessageSchema(
                "One",
                (
                    FieldSchema("r", 1, TypeRef("named", name="Rec")),
                    FieldSchema("s", 2, TypeRef("str"), text),
                    FieldSchema("b", 3, TypeRef("bytes"), blob),
                    FieldSchema("c", 4, TypeRef("named", name="Colour"), "RED"),
                    FieldSchema("p", 5, TypeRef("tuple", (TypeRef("str"), TypeRef("bytes"))), (text, blob)),
                    FieldSchema("l", 6, TypeRef("list", (TypeRef("str"),)), EMPTY_LIST),
                ),
                route="ONE",
                doc=docs["contract"],
            ),
        ),
        doc=docs["kernel"],
        routing_doc=docs["routing"],
    )


SLOTS = ("kernel", "routing", "enum", "record", "contract")


def docstrings(source: str) -> dict[str, str | None]:
    """The docstring of the module and of each class, as ``ast.get_docstring`` reads them."""
    tree = ast.parse(source)
    out: dict[str, str | None] = {"kernel": ast.get_docstring(tree)}
    names = {"R": "routing", "Colour": "enum", "Rec": "record", "One": "contract"}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[names[node.name]] = ast.get_docstring(node)
    return out


def shape(source: str) -> str:
    """The module's syntax tree with every str and bytes constant blanked: what is code."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            node.value = type(node.value)()
    return ast.dump(tree)


NEUTRAL = render_module(kernel_with_docs(dict.fromkeys(SLOTS, "x")), schema_label="k.toml", command="c")


def test_the_renderer_writes_only_the_expected_calls() -> None:
    calls = {n.func.id for n in ast.walk(ast.parse(NEUTRAL)) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name)}
    attr_calls = [n for n in ast.walk(ast.parse(NEUTRAL)) if isinstance(n, ast.Call)
                  and not isinstance(n.func, ast.Name)]
    assert calls <= {"contract", "record", "field", "float"} and not attr_calls


# -- docs -----------------------------------------------------------------------------------


@SETTINGS
@given(docs=st.fixed_dictionaries({slot: ANY_TEXT for slot in SLOTS}))
def test_any_doc_in_any_slot_reads_back_exactly_and_stays_data(docs: dict[str, str]) -> None:
    kernel = kernel_with_docs(docs)
    if any("\ud800" <= c <= "\udfff" for doc in docs.values() for c in doc):
        # Python 3.13 compiles no docstring holding a lone surrogate: refused on every Python
        with pytest.raises(SchemaError, match="lone surrogate"):
            render_module(kernel, schema_label="k.toml", command="c")
        return
    source = render_module(kernel, schema_label="k.toml", command="c")
    compile(source, "k.py", "exec")
    got = docstrings(source)
    defaults = {"kernel": "The k kernel.", "routing": "Routes of the k kernel (stable wire ids).",
                "enum": "The Colour enum.", "record": "The Rec record.", "contract": "The One contract (R.ONE)."}
    for slot in SLOTS:
        kept = clean_doc(docs[slot])
        assert got[slot] == (kept or defaults[slot]), slot
    assert (kernel.doc, kernel.routing_doc, kernel.enums[0].doc, kernel.records[0].doc, kernel.contracts[0].doc) == (
        clean_doc(docs["kernel"]), clean_doc(docs["routing"]), clean_doc(docs["enum"]), clean_doc(docs["record"]),
        clean_doc(docs["contract"]))
    assert shape(source) == shape(NEUTRAL)


@SETTINGS
@given(doc=TOML_TEXT, slot=st.sampled_from(SLOTS))
def test_any_doc_in_a_schema_file_reads_back_exactly(doc: str, slot: str) -> None:
    docs = dict.fromkeys(SLOTS, "x") | {slot: doc}
    text = to_toml(kernel_with_docs(docs))
    assert f"doc = {toml_value(clean_doc(doc))}" in text or not clean_doc(doc)
    kernel = load_text(text, "k.toml", "k")
    source = render_module(kernel, schema_label="k.toml", command="c")
    got = docstrings(source)[slot]
    if clean_doc(doc):
        assert got == clean_doc(doc)
    assert shape(source) == shape(NEUTRAL)


@SETTINGS
@given(text=ANY_TEXT)
def test_a_doc_is_kept_as_its_own_cleandoc(text: str) -> None:
    kept = clean_doc(text)
    assert clean_doc(kept) == kept and inspect.cleandoc(kept) == kept
    if any("\ud800" <= c <= "\udfff" for c in kept):
        with pytest.raises(SchemaError, match="lone surrogate"):
            docstring(kept, "")
        return
    module = ast.parse("\n".join(docstring(kept, "")))
    cls = ast.parse("\n".join(["class C:", *docstring(kept, "    ")])).body[0]
    assert isinstance(cls, ast.ClassDef)
    assert ast.get_docstring(module) == ast.get_docstring(cls) == kept
    # a doc that already is its own cleandoc, trailing spaces aside, is kept as it is
    if inspect.cleandoc(text) == text and all(line == line.rstrip() for line in text.split("\n")) \
            and text == text.strip("\n") and all(c in " \n" or not c.isspace() for c in text):
        # (other whitespace, e.g. "\r", is read differently by inspect.cleandoc from 3.13 on)
        assert kept == text


@pytest.mark.parametrize("doc", ['"', '""', '"""', '""""', '\\', '\\"', 'a"', '"a', '"""";x()#', 'a\\\n"',
                                 'x\n"""\n"', "\x00", "a\rb", "It's \"quoted\"\n\n  and indented"])
def test_awkward_docs_compile_in_every_slot(doc: str) -> None:
    source = render_module(kernel_with_docs(dict.fromkeys(SLOTS, doc)), schema_label="k.toml", command="c")
    assert set(docstrings(source).values()) == {clean_doc(doc)}
    assert shape(source) == shape(NEUTRAL)


@pytest.mark.parametrize("doc", ["\ud800", "a\udfffb"])
def test_a_lone_surrogate_in_a_doc_is_refused(doc: str) -> None:
    """Python 3.13 compiles no docstring holding a lone surrogate, escaped or not."""
    with pytest.raises(SchemaError, match="lone surrogate"):
        render_module(kernel_with_docs(dict.fromkeys(SLOTS, doc)), schema_label="k.toml", command="c")


def hostile_schema(marker: Path, *, module_doc: bool = True) -> str:
    doc = toml_value(hostile(marker))
    return f"""\
format = 1
doc = {doc if module_doc else '"Plain."'}

[routes]
name = "R"
doc = {doc}

[routes.members]
ONE = 1

[enums.Colour]
doc = {doc}
members = {{ RED = 1 }}

[records.Rec]
doc = {doc}

[records.Rec.fields]
c = {{ tag = 1, type = "Colour" }}

[contracts.One]
route = "ONE"
doc = {doc}

[contracts.One.fields]
r = {{ tag = 1, type = "optional[Rec]", default_none = true }}
"""


def hostile_schemas(tmp_path: Path, *, module_doc: bool) -> tuple[Path, Path]:
    """A schemas/ directory with the hostile doc in the class slots (and the module's), and an
    older version in history/."""
    marker = tmp_path / "ran"
    schemas = tmp_path / "schemas"
    (schemas / "history").mkdir(parents=True)
    text = hostile_schema(marker, module_doc=module_doc)
    (schemas / "k.toml").write_text(text)
    (schemas / "history" / "k.v1.toml").write_text(text.replace("A\\\"", "B\\\""))
    return schemas, marker


@pytest.mark.parametrize("module_doc", [False, True])
def test_a_hostile_doc_does_not_run_when_the_generated_module_is_imported(tmp_path: Path, module_doc: bool) -> None:
    schemas, marker = hostile_schemas(tmp_path, module_doc=module_doc)
    out = tmp_path / "out"
    done = CliRunner().invoke(codegen_command, [str(schemas), "--out", str(out)])
    assert done.exit_code == 0, done.output
    imported = subprocess.run([sys.executable, "-c", "import k; print(k.One.__doc__)"], cwd=out,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                              timeout=60, check=False)
    assert not marker.exists()
    assert imported.returncode == 0 and imported.stdout == hostile(marker) + "\n", imported.stderr
    got = docstrings((out / "k.py").read_text())
    assert got == dict.fromkeys(SLOTS, hostile(marker)) | ({} if module_doc else {"kernel": "Plain."})


def test_a_hostile_doc_does_not_run_in_assert_evolution(tmp_path: Path) -> None:
    schemas, marker = hostile_schemas(tmp_path, module_doc=False)
    try:
        report = assert_evolution(schemas / "history" / "k.v1.toml", schemas / "k.toml", max_examples=5)
    finally:
        assert not marker.exists()
    assert report.rules() == {"doc-changed"}
    assert load_routes(load_path(schemas / "k.toml")).ONE.contract.__doc__ == hostile(marker)
    assert not marker.exists()


def test_schema_diff_reports_a_doc_change_without_showing_it(tmp_path: Path) -> None:
    plain = tmp_path / "plain.toml"
    evil = tmp_path / "evil.toml"
    marker = tmp_path / "ran"
    plain.write_text(hostile_schema(marker).replace(toml_value(hostile(marker)), '"Plain."'))
    evil.write_text(hostile_schema(marker))
    report = diff(load_path(plain), load_path(evil))
    assert report.ok
    assert sorted(c.where for c in report.changes) == ["Colour", "One", "R", "Rec", "evil"]
    assert {c.rule for c in report.changes} == {"doc-changed"}
    done = CliRunner().invoke(schema_group, ["diff", str(plain), str(evil)])
    assert done.exit_code == 0, done.output
    assert "No changes" not in done.output and "One [doc-changed]: docstring changed" in done.output
    assert "__import__" not in done.output and not marker.exists()


# -- paths and comments ---------------------------------------------------------------------


def test_a_schema_path_with_a_line_break_stays_in_the_header_comment(tmp_path: Path) -> None:
    schemas = tmp_path / "sch\nimport os; os.system('x') #\remas"
    schemas.mkdir()
    (schemas / "k.toml").write_text('[routes]\nname = "R"\n[routes.members]\nONE = 1\n'
                                    '[contracts.One]\nroute = "ONE"\n')
    [module] = plan(schemas, tmp_path / "out\x1b]0;t\x07")
    tree = ast.parse(module.source)
    assert [type(s) for s in tree.body[:3]] == [ast.Expr, ast.ImportFrom, ast.ImportFrom]
    head = module.source.split('"""', 1)[0]
    assert head.startswith(GENERATED_MARK) and head.count("\n") == 2
    assert repr(f"{schemas.name}/k.toml") in head and "\x1b" not in head
    assert head.isprintable() is False and head.replace("\n", "").isprintable()


@given(label=ANY_TEXT, command=ANY_TEXT)
@SETTINGS
def test_any_label_and_command_stay_comments(label: str, command: str) -> None:
    source = render_module(kernel_with_docs(dict.fromkeys(SLOTS, "x")), schema_label=label, command=command)
    assert source.split("\n", 2)[2] == NEUTRAL.split("\n", 2)[2]
    assert source.startswith(GENERATED_MARK)
    for line in source.split("\n")[:2]:
        assert line.startswith("# ") and line.isprintable()


@given(comment=ANY_TEXT)
@SETTINGS
def test_an_export_comment_keeps_the_schema_file_valid(comment: str) -> None:
    kernel = load_text(to_toml(kernel_with_docs(dict.fromkeys(SLOTS, "x"))), "k.toml", "k")
    text = to_toml(kernel, comment=comment)
    assert load_text(text, "k.toml", "k") == kernel
    assert tomllib.loads(text)["doc"] == "x"


# -- names and values -----------------------------------------------------------------------


@SETTINGS
@given(s=ANY_TEXT, b=st.binary(max_size=16))
def test_string_and_bytes_values_are_single_literals(s: str, b: bytes) -> None:
    for literal, value in ((py_str(s), s), (py_bytes(b), b)):
        node = ast.parse(literal, mode="eval").body
        assert isinstance(node, ast.Constant) and node.value == value and type(node.value) is type(value)


@SETTINGS
@given(text=TOML_TEXT, member=TOML_TEXT.filter(bool), blob=st.binary(max_size=8))
def test_string_values_in_a_schema_file_stay_data(text: str, member: str, blob: bytes) -> None:
    kernel = load_text(to_toml(kernel_with_docs(dict.fromkeys(SLOTS, "x"), text=text, member=member, blob=blob)),
                       "k.toml", "k")
    source = render_module(kernel, schema_label="k.toml", command="c")
    assert shape(source) == shape(NEUTRAL)
    module = load_module(kernel)
    one = module.One(r=module.Rec())
    assert (one.s, one.b, one.p, module.Colour.RED.value, module.Rec().s) == (text, blob, (text, blob), member, text)


def with_field(k: KernelSchema, f: FieldSchema) -> KernelSchema:
    one = k.contracts[0]
    return attrs.evolve(k, contracts=(attrs.evolve(one, fields=(*one.fields, f)),))


NAME_SLOTS: dict[str, Any] = {
    "routing": lambda k, n: attrs.evolve(k, routing=n),
    "route": lambda k, n: attrs.evolve(k, routes=((n, 1),), contracts=(attrs.evolve(k.contracts[0], route=n),)),
    "enum member": lambda k, n: attrs.evolve(k, enums=(EnumSchema("Colour", ((n, "red"),)),)),
    "record": lambda k, n: attrs.evolve(k, records=(attrs.evolve(k.records[0], name=n),)),
    "contract": lambda k, n: attrs.evolve(k, contracts=(attrs.evolve(k.contracts[0], name=n),)),
    "field": lambda k, n: with_field(k, FieldSchema(n, 9, TypeRef("int"), 0)),
    "type": lambda k, n: with_field(k, FieldSchema("t", 9, TypeRef("named", name=n), None)),
    "kind": lambda k, n: with_field(k, FieldSchema("t", 9, TypeRef(n, (TypeRef("int"),)), None)),
    "tag": lambda k, n: with_field(k, FieldSchema("t", n, TypeRef("int"), 0)),
    "route id": lambda k, n: attrs.evolve(k, routes=(("ONE", n),)),
    "enum default": lambda k, n: with_field(k, FieldSchema("t", 9, TypeRef("named", name="Colour"), n)),
}


@SETTINGS
@given(name=ANY_TEXT | st.sampled_from(["x", "R", "import", "a.b", "x)\nimport os", "A#", "é"]),
       slot=st.sampled_from(sorted(NAME_SLOTS)))
def test_a_name_that_is_not_an_identifier_is_never_written(name: str, slot: str) -> None:
    kernel = NAME_SLOTS[slot](kernel_with_docs(dict.fromkeys(SLOTS, "x")), name)
    try:
        source = render_module(kernel, schema_label="k.toml", command="c")
    except SchemaError as exc:
        assert "cannot be written as Python" in str(exc)
        return
    assert slot not in ("tag", "route id")  # text is never written as a number
    if slot == "kind":
        assert name in ("optional", "list", "tuple", "dict", "int", "float", "bool", "str", "bytes", "datetime", "uuid")
    else:
        assert is_identifier(name)
    compile(source, "k.py", "exec")


@SETTINGS
@given(name=TOML_TEXT, where=st.sampled_from(["routes.name", "route", "enum", "member", "record", "field", "type"]))
def test_a_schema_file_refuses_every_name_that_is_not_an_identifier(name: str, where: str) -> None:
    key = toml_value(name)
    text = {
        "routes.name": f'[routes]\nname = {key}\n[routes.members]\nONE = 1\n[contracts.One]\nroute = "ONE"\n',
        "route": f'[routes]\nname = "R"\n[routes.members]\n{key} = 1\n[contracts.One]\nroute = {key}\n',
        "enum": f'[routes]\nname = "R"\n[routes.members]\nONE = 1\n[enums.{key}]\nmembers = {{ A = 1 }}\n'
                f'[contracts.One]\nroute = "ONE"\n[contracts.One.fields]\ne = {{ tag = 1, type = {key} }}\n',
        "member": f'[routes]\nname = "R"\n[routes.members]\nONE = 1\n[enums.E]\nmembers = {{ {key} = 1 }}\n'
                  f'[contracts.One]\nroute = "ONE"\n[contracts.One.fields]\ne = {{ tag = 1, type = "E" }}\n',
        "record": f'[routes]\nname = "R"\n[routes.members]\nONE = 1\n[records.{key}]\n'
                  f'[contracts.One]\nroute = "ONE"\n[contracts.One.fields]\ne = {{ tag = 1, type = {key} }}\n',
        "field": f'[routes]\nname = "R"\n[routes.members]\nONE = 1\n'
                 f'[contracts.One]\nroute = "ONE"\n[contracts.One.fields]\n{key} = {{ tag = 1, type = "int" }}\n',
        "type": f'[routes]\nname = "R"\n[routes.members]\nONE = 1\n'
                f'[contracts.One]\nroute = "ONE"\n[contracts.One.fields]\nf = {{ tag = 1, type = {key} }}\n',
    }[where]
    try:
        kernel = load_text(text, "k.toml", "k")
    except SchemaError:
        return
    source = render_module(kernel, schema_label="k.toml", command="c")
    compile(source, "k.py", "exec")
    names = [kernel.routing, *(n for n, _ in kernel.routes), *(e.name for e in kernel.enums),
             *(n for e in kernel.enums for n, _ in e.members), *(m.name for m in (*kernel.records, *kernel.contracts)),
             *(f.name for m in (*kernel.records, *kernel.contracts) for f in m.fields)]
    assert all(is_identifier(n) for n in names)


def test_schema_errors_print_names_and_paths_with_control_characters_escaped(tmp_path: Path) -> None:
    path = tmp_path / "a\x1b[2Jb.toml"
    path.write_text('[routes]\nname = "R"\n[routes.members]\n"\\u001b]0;pwned\\u0007\\nOK" = 1\n')
    done = CliRunner().invoke(codegen_command, [str(path), "--out", str(tmp_path / "out")])
    assert done.exit_code == 2
    assert "\x1b" not in done.output and "\x07" not in done.output
    assert "a\\x1b[2Jb.toml:4: R.\\x1b]0;pwned\\x07\\nOK: a route name must be an identifier" in done.output


def test_a_default_that_looks_like_code_is_only_a_value() -> None:
    kernel = KernelSchema("k", "R", (("ONE", 1),), contracts=(
        MessageSchema("One", (FieldSchema("s", 1, TypeRef("str"), 'x = field(1) #'),), route="ONE"),))
    source = render_module(kernel, schema_label="k.toml", command="c")
    assert "from nanomsg_kernel import RoutingEnum, contract\n" in source
    assert '    s: str = "x = field(1) #"\n' in source
    assert load_module(kernel).One().s == "x = field(1) #"
