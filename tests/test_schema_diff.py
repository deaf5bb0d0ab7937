"""``schema diff``: one test per rule, breaking and compatible, plus modes, the CLI and git sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nanomsg_kernel.app.schema_cli import schema_group
from nanomsg_kernel.codegen.diff import BACKWARD, FORWARD, POLICY, Change, Report, diff
from nanomsg_kernel.codegen.model import KernelSchema
from nanomsg_kernel.codegen.schema import SchemaError, load_text
from nanomsg_kernel.codegen.sources import load_source, read_git

ROOT = Path(__file__).resolve().parent.parent

TEMPLATE = """\
format = 1

[routes]
name = "{routing}"

[routes.members]
{routes}

[enums.Colour]
members = {{ {colours} }}

[records.{point}]
version = {point_version}

[records.{point}.fields]
{point_fields}

[contracts.Work]
route = "{work_route}"
version = {version}
reserved = [{reserved}]

[contracts.Work.fields]
{fields}

{extra}
"""

ECHO = """\
[contracts.Echo]
route = "ECHO"

[contracts.Echo.fields]
text = { tag = 1, type = "str" }
"""

DEFAULTS = {
    "routing": "R",
    "routes": "WORK = 1\nECHO = 2",
    "colours": 'RED = "red", BLUE = "blue"',
    "point": "Point",
    "point_version": "1",
    "point_fields": 'x = { tag = 1, type = "int" }\ny = { tag = 2, type = "int", default = 0 }',
    "work_route": "WORK",
    "version": "1",
    "reserved": "",
    "fields": (
        'a = { tag = 1, type = "int" }\n'
        'colour = { tag = 2, type = "Colour", default = "RED" }\n'
        'at = { tag = 3, type = "optional[Point]", default_none = true }'
    ),
    "extra": ECHO,
}
A = 'a = { tag = 1, type = "int" }'
COLOUR = 'colour = { tag = 2, type = "Colour", default = "RED" }'
AT = 'at = { tag = 3, type = "optional[Point]", default_none = true }'


def k(**over: str) -> KernelSchema:
    text = TEMPLATE.format(**{**DEFAULTS, **over})
    return load_text(text, "v.toml", "k")


def fields(*lines: str) -> str:
    return "\n".join(lines)


def only(report: Report, rule: str) -> Change:
    found = [c for c in report.changes if c.rule == rule]
    assert len(found) == 1, report.text()
    return found[0]


def rules(report: Report) -> set[str]:
    return {c.rule for c in report.changes}


# -- breaking rules ----------------------------------------------------------------------


def test_identical_schemas_have_no_changes() -> None:
    report = diff(k(), k())
    assert report.changes == () and report.ok
    assert "No changes." in report.text()


def test_route_removed() -> None:
    report = diff(k(), k(routes="WORK = 1", extra=""))
    c = only(report, "route-removed")
    assert (c.where, c.breaks) == ("R.ECHO", {BACKWARD})
    assert "route id 2 (Echo) removed" in c.message and not report.ok


def test_route_moved_to_another_id_is_a_removal() -> None:
    report = diff(k(), k(routes="WORK = 1\nECHO = 7"))
    assert "now has id 7" in only(report, "route-removed").message
    assert only(report, "route-added").where == "R.ECHO" and not report.ok


def test_route_reassigned_to_another_contract() -> None:
    report = diff(k(), k(routes="WORK = 2\nECHO = 1"))
    found = [c for c in report.changes if c.rule == "route-reassigned"]
    assert [c.where for c in found] == ["R.ECHO", "R.WORK"]
    assert "route id 1 re-assigned from contract Work to Echo" in found[0].message
    assert all(c.breaks == {BACKWARD, FORWARD} for c in found) and not report.ok


def test_field_tag_reused_for_a_different_field() -> None:
    report = diff(k(), k(fields=fields('name = { tag = 1, type = "str" }', COLOUR, AT)))
    c = only(report, "field-tag-reused")
    assert c.where == "Work.name" and c.breaks == {BACKWARD, FORWARD}
    assert "tag 1 was a: int, is now name: str" in c.message
    assert rules(report) == {"field-tag-reused"}


@pytest.mark.parametrize(
    ("old", "new", "breaks"),
    [
        ('a = { tag = 1, type = "int" }', 'a = { tag = 1, type = "str" }', {BACKWARD, FORWARD}),
        ('a = { tag = 1, type = "int" }', 'a = { tag = 1, type = "float" }', {FORWARD}),
        ('a = { tag = 1, type = "float" }', 'a = { tag = 1, type = "int" }', {BACKWARD}),
        ('a = { tag = 1, type = "int" }', 'a = { tag = 1, type = "optional[int]" }', {FORWARD}),
        ('a = { tag = 1, type = "optional[int]" }', 'a = { tag = 1, type = "int" }', {BACKWARD}),
        ('a = { tag = 1, type = "int" }', 'a = { tag = 1, type = "bool" }', {BACKWARD, FORWARD}),
        ('a = { tag = 1, type = "Colour" }', 'a = { tag = 1, type = "str" }', {FORWARD}),
        ('a = { tag = 1, type = "tuple[int, int]" }', 'a = { tag = 1, type = "list[int]" }', {FORWARD}),
        ('a = { tag = 1, type = "tuple[int, int]" }', 'a = { tag = 1, type = "tuple[int, int, int]" }',
         {BACKWARD, FORWARD}),
        ('a = { tag = 1, type = "dict[str, int]" }', 'a = { tag = 1, type = "dict[str, float]" }', {FORWARD}),
        ('a = { tag = 1, type = "dict[str, int]" }', 'a = { tag = 1, type = "dict[int, int]" }', {BACKWARD, FORWARD}),
        ('a = { tag = 1, type = "list[int]" }', 'a = { tag = 1, type = "list[str]" }', {BACKWARD, FORWARD}),
        ('a = { tag = 1, type = "Point" }', 'a = { tag = 1, type = "list[int]" }', {BACKWARD, FORWARD}),
        ('a = { tag = 1, type = "bytes" }', 'a = { tag = 1, type = "uuid" }', {BACKWARD, FORWARD}),
        ('a = { tag = 1, type = "list[int]" }', 'a = { tag = 1, type = "tuple[int, ...]" }', set()),
        ('a = { tag = 1, type = "list[Point]" }', 'a = { tag = 1, type = "optional[list[Point]]" }', {FORWARD}),
    ],
)
def test_field_type_changed(old: str, new: str, breaks: set[str]) -> None:
    report = diff(k(fields=fields(old, COLOUR, AT)), k(fields=fields(new, COLOUR, AT)))
    c = only(report, "field-type-changed")
    assert c.where == "Work.a" and c.breaks == breaks, c.message
    assert report.ok == (not breaks)
    assert report.rules() == {"field-type-changed"}


def test_a_record_renamed_with_the_same_fields_reads_either_way() -> None:
    report = diff(k(), k(point="Spot", fields=fields(A, COLOUR, AT.replace("Point", "Spot"))))
    c = only(report, "field-type-changed")
    assert c.breaks == frozenset() and "from optional[Point] to optional[Spot]" in c.message
    assert rules(report) == {"field-type-changed", "record-removed", "record-added"} and report.ok


def test_a_record_replaced_by_one_that_requires_more_fields_breaks() -> None:
    spot = 'x = { tag = 1, type = "int" }\nz = { tag = 5, type = "str" }'
    report = diff(k(), k(point="Spot", point_fields=spot, fields=fields(A, COLOUR, AT.replace("Point", "Spot"))))
    c = only(report, "field-type-changed")
    assert c.breaks == {BACKWARD}  # a Spot reads as a Point (z is kept as unknown), not the reverse
    assert "Spot.z is required, and Point has no tag 5" in c.message


def test_an_enum_replaced_by_one_missing_a_value_breaks() -> None:
    extra = ECHO + '\n[enums.Hue]\nmembers = { RED = "red" }\n'
    report = diff(k(), k(extra=extra, fields=fields(A, 'colour = { tag = 2, type = "Hue", default = "RED" }', AT)))
    c = only(report, "field-type-changed")
    assert c.breaks == {BACKWARD}  # Hue values read as Colour; Colour.BLUE does not read as Hue
    assert only(report, "enum-added").where == "Hue"


def test_field_added_required() -> None:
    new = k(version="2", fields=fields(A, 'b = { tag = 4, type = "int", since = 2 }', COLOUR, AT))
    report = diff(k(), new)
    c = only(report, "field-added-required")
    assert (c.where, c.breaks) == ("Work.b", {BACKWARD}) and "without a default" in c.message
    assert only(report, "version-raised").breaks == frozenset() and not report.ok


def test_field_default_removed_when_earlier_versions_lack_the_field() -> None:
    d = 'd = { tag = 4, type = "int", default = 0, since = 2 }'
    old = k(version="2", fields=fields(A, d, COLOUR, AT))
    new = k(version="2", fields=fields(A, 'd = { tag = 4, type = "int", since = 2 }', COLOUR, AT))
    c = only(diff(old, new), "field-default-removed")
    assert c.breaks == {BACKWARD} and "messages of versions before 2 lack the field" in c.message


def test_field_default_removed_from_a_field_every_version_sends_is_compatible() -> None:
    report = diff(k(), k(fields=fields(A, 'colour = { tag = 2, type = "Colour" }', AT)))
    c = only(report, "field-default-removed")
    assert c.breaks == frozenset() and "every version of the schema sends it" in c.message and report.ok


def test_field_removed_while_required() -> None:
    report = diff(k(), k(version="2", reserved="1", fields=fields(COLOUR, AT)))
    c = only(report, "field-removed")
    assert (c.where, c.breaks) == ("Work.a", {FORWARD}) and "old decoders reject" in c.message
    assert rules(report) == {"field-removed", "reserved-tag-added", "version-raised"}


def test_tag_not_reserved_when_a_field_is_removed() -> None:
    report = diff(k(), k(version="2", fields=fields(A, COLOUR)))
    c = only(report, "tag-not-reserved")
    assert (c.where, c.breaks) == ("Work.at", {POLICY}) and "tag 3 of the removed field is not reserved" in c.message
    assert only(report, "field-removed").breaks == frozenset() and not report.ok


def test_reserved_tag_reused() -> None:
    old = k(reserved="9")
    new = k(version="2", fields=fields(A, COLOUR, AT, 'b = { tag = 9, type = "str", default = "", since = 2 }'))
    report = diff(old, new)
    c = only(report, "reserved-tag-reused")
    assert (c.where, c.breaks) == ("Work.b", {POLICY}) and "tag 9 was reserved in Work" in c.message
    assert "reserved-tag-removed" not in rules(report) and not report.ok


def test_reserved_tag_removed() -> None:
    c = only(diff(k(reserved="9"), k()), "reserved-tag-removed")
    assert c.breaks == {POLICY} and "tag 9 is no longer reserved" in c.message


def test_fields_added_without_raising_the_version() -> None:
    report = diff(k(), k(fields=fields(A, COLOUR, AT, 'b = { tag = 4, type = "int", default = 0 }')))
    c = only(report, "version-not-raised")
    assert (c.where, c.breaks) == ("Work", {POLICY}) and "raise it to 2" in c.message
    assert only(report, "field-added").breaks == frozenset() and not report.ok


def test_fields_removed_without_raising_the_version() -> None:
    report = diff(k(), k(reserved="3", fields=fields(A, COLOUR)))
    assert "(at)" in only(report, "version-not-raised").message and not report.ok


def test_a_record_gaining_a_field_needs_its_version_raised_too() -> None:
    grown = DEFAULTS["point_fields"] + '\nz = { tag = 3, type = "int", default = 0, since = 2 }'
    assert only(diff(k(), k(point_fields=grown.replace(", since = 2", ""))), "version-not-raised").where == "Point"
    assert diff(k(), k(point_version="2", point_fields=grown)).ok


def test_version_lowered() -> None:
    c = only(diff(k(version="3"), k(version="2")), "version-lowered")
    assert c.breaks == {POLICY} and "from 3 to 2" in c.message


def test_field_since_invalid() -> None:
    new = k(version="2", fields=fields(A, COLOUR, AT, 'b = { tag = 4, type = "int", default = 0 }'))
    c = only(diff(k(), new), "field-since-invalid")
    assert (c.where, c.breaks) == ("Work.b", {POLICY}) and "set since = 2" in c.message


def test_enum_value_added() -> None:
    report = diff(k(), k(colours='RED = "red", BLUE = "blue", GREEN = "green"'))
    c = only(report, "enum-value-added")
    assert (c.where, c.breaks) == ("Colour.GREEN", {FORWARD}) and not report.ok
    assert diff(k(), k(colours='RED = "red", BLUE = "blue", GREEN = "green"'), mode="backward").ok


def test_enum_value_removed() -> None:
    c = only(diff(k(), k(colours='RED = "red"')), "enum-value-removed")
    assert (c.where, c.breaks) == ("Colour.BLUE", {BACKWARD})


def test_enum_type_changed() -> None:
    c = only(diff(k(), k(colours="RED = 1, BLUE = 2")), "enum-type-changed")
    assert c.breaks == {BACKWARD, FORWARD} and "from str to int" in c.message


# -- compatible changes ------------------------------------------------------------------


def test_a_field_added_with_a_default_and_a_version_bump_is_compatible() -> None:
    new = k(version="2", fields=fields(A, COLOUR, AT, 'b = { tag = 4, type = "int", default = 0, since = 2 }'))
    report = diff(k(), new)
    assert report.ok and rules(report) == {"field-added", "version-raised"}
    assert report.breaking == [] and len(report.compatible) == 2


def test_a_field_removed_with_its_tag_reserved_and_a_version_bump_is_compatible() -> None:
    report = diff(k(), k(version="2", reserved="3", fields=fields(A, COLOUR)))
    assert report.ok and rules(report) == {"field-removed", "reserved-tag-added", "version-raised"}


@pytest.mark.parametrize(
    ("over", "rule", "where"),
    [
        ({"routes": "WORK = 1\nECHO = 2\nPING = 3", "extra": ECHO + '[contracts.Ping]\nroute = "PING"\n'},
         "route-added", "R.PING"),
        ({"routes": "DO = 1\nECHO = 2", "work_route": "DO"}, "route-renamed", "R.DO"),
        ({"routing": "Routes"}, "routing-renamed", "Routes"),
        ({"fields": fields('amount = { tag = 1, type = "int" }', COLOUR, AT)}, "field-renamed", "Work.amount"),
        ({"fields": fields('a = { tag = 1, type = "int", default = 0 }', COLOUR, AT)}, "field-default-added", "Work.a"),
        ({"fields": fields(A, COLOUR.replace('"RED"', '"BLUE"'), AT)}, "field-default-changed", "Work.colour"),
        ({"version": "2", "fields": fields(A, COLOUR, AT.replace("}", ", since = 2 }"))},
         "field-since-changed", "Work.at"),
        ({"reserved": "7"}, "reserved-tag-added", "Work"),
        ({"version": "2"}, "version-raised", "Work"),
        ({"extra": ECHO + "[records.Extra]\n"}, "record-added", "Extra"),
        ({"extra": ECHO + "[enums.Size]\nmembers = { S = 1 }\n"}, "enum-added", "Size"),
        ({"colours": 'ROUGE = "red", BLUE = "blue"', "fields": fields(A, COLOUR.replace("RED", "ROUGE"), AT)},
         "enum-member-renamed", "Colour.ROUGE"),
    ],
)
def test_compatible_changes_are_listed(over: dict[str, str], rule: str, where: str) -> None:
    report = diff(k(), k(**over))
    c = only(report, rule)
    assert c.where == where and c.breaks == frozenset(), report.text()
    assert report.ok, report.text()


def test_removing_records_and_enums_is_listed_as_compatible() -> None:
    old = k(extra=ECHO + "[records.Extra]\n[enums.Size]\nmembers = { S = 1 }\n")
    report = diff(old, k())
    assert {c.rule for c in report.compatible} == {"record-removed", "enum-removed"} and report.ok


def test_modes_decide_which_direction_counts() -> None:
    old = k()
    widened = k(fields=fields('a = { tag = 1, type = "float" }', COLOUR, AT))
    assert not diff(old, widened).ok
    assert diff(old, widened, mode="backward").ok
    assert not diff(old, widened, mode="forward").ok
    assert diff(widened, old, mode="forward").ok
    policy = k(fields=fields(A, COLOUR, AT, 'b = { tag = 4, type = "int", default = 0 }'))
    assert not any(diff(old, policy, mode=m).ok for m in ("full", "backward", "forward"))
    with pytest.raises(ValueError, match="mode must be one of"):
        diff(old, old, mode="sideways")


def test_the_example_kernel_evolves_compatibly() -> None:
    v1 = load_source(str(ROOT / "schemas" / "history" / "calc.v1.toml"))
    v2 = load_source(str(ROOT / "schemas" / "calc.toml"))
    report = diff(v1, v2)
    assert report.ok and report.rules() == {"field-added", "version-raised"}
    back = diff(v2, v1)
    assert back.rules(breaking=True) == {"tag-not-reserved", "version-lowered"}


def test_hand_written_and_schema_kernels_diff_the_same() -> None:
    assert diff(load_source("nanomsg_kernel.contracts.calc:CalcRoute"), load_source(str(ROOT / "schemas" / "calc.toml"))).changes == ()


# -- the command line --------------------------------------------------------------------


def write(tmp_path: Path, name: str, kernel_text: str) -> str:
    path = tmp_path / name
    path.write_text(kernel_text)
    return str(path)


def test_diff_cli_exit_status_and_text(tmp_path: Path) -> None:
    old = write(tmp_path, "old.toml", TEMPLATE.format(**DEFAULTS))
    new = write(tmp_path, "new.toml", TEMPLATE.format(**{**DEFAULTS, "routes": "WORK = 1", "extra": ""}))
    runner = CliRunner()
    bad = runner.invoke(schema_group, ["diff", old, new])
    assert bad.exit_code == 1
    assert "Breaking changes:\n  R.ECHO [route-removed; breaks backward]: route id 2 (Echo) removed" in bad.output
    assert bad.output.rstrip().endswith("1 breaking, 0 compatible")
    good = runner.invoke(schema_group, ["diff", new, old])
    assert good.exit_code == 0 and "R.ECHO [route-added]" in good.output


def test_diff_cli_json_and_mode(tmp_path: Path) -> None:
    old = write(tmp_path, "old.toml", TEMPLATE.format(**DEFAULTS))
    widened = TEMPLATE.format(**{**DEFAULTS, "fields": fields('a = { tag = 1, type = "float" }', COLOUR, AT)})
    new = write(tmp_path, "new.toml", widened)
    runner = CliRunner()
    full = runner.invoke(schema_group, ["diff", old, new, "--format", "json"])
    assert full.exit_code == 1
    data = json.loads(full.output)
    assert data["ok"] is False and data["mode"] == "full"
    assert data["breaking"][0]["rule"] == "field-type-changed" and data["breaking"][0]["breaks"] == ["forward"]
    backward = runner.invoke(schema_group, ["diff", old, new, "--mode", "backward", "--format", "json"])
    assert backward.exit_code == 0 and json.loads(backward.output)["compatible"][0]["where"] == "Work.a"


def test_diff_cli_reports_an_invalid_schema_with_status_2(tmp_path: Path) -> None:
    old = write(tmp_path, "old.toml", TEMPLATE.format(**DEFAULTS))
    broken = write(tmp_path, "new.toml", TEMPLATE.format(**{**DEFAULTS, "work_route": "NOPE"}))
    done = CliRunner().invoke(schema_group, ["diff", old, broken])
    assert done.exit_code == 2 and "new.toml:21: Work: route 'NOPE' is not a member of R" in done.output
    missing = CliRunner().invoke(schema_group, ["diff", old, "nothing-here"])
    assert missing.exit_code == 2 and "not a schema file, git:REV:path, nor module:RoutingEnum" in missing.output


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false", *args],
        cwd=repo, check=True, capture_output=True, timeout=60,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "schemas").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "schemas" / "k.toml").write_text(TEMPLATE.format(**DEFAULTS))
    git(repo, "add", "schemas/k.toml")
    git(repo, "commit", "-q", "-m", "v1")
    (repo / "schemas" / "k.toml").write_text(TEMPLATE.format(**{**DEFAULTS, "routes": "WORK = 1", "extra": ""}))
    return repo


def test_old_schema_from_a_git_revision(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    old = load_source("git:HEAD:schemas/k.toml")
    assert old.source == "git:HEAD:schemas/k.toml" and old.name == "k" and len(old.routes) == 2
    done = CliRunner().invoke(schema_group, ["diff", "git:HEAD:schemas/k.toml", "schemas/k.toml"])
    assert done.exit_code == 1 and "git:HEAD:schemas/k.toml -> schemas/k.toml" in done.output
    assert "[route-removed" in done.output
    assert read_git("HEAD", "./schemas/k.toml", cwd=repo / "schemas" / "..") == TEMPLATE.format(**DEFAULTS)


def test_git_source_in_a_subprocess(repo: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nanomsg_kernel.app.cli", "schema", "diff", "git:HEAD:schemas/k.toml", "schemas/k.toml"],
        cwd=repo, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1 and "R.ECHO [route-removed" in done.stdout


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("git:nosuchrev:schemas/k.toml", "git show nosuchrev:schemas/k.toml failed"),
        ("git:HEAD:schemas/missing.toml", "git show HEAD:schemas/missing.toml failed"),
        ("git:HEAD", "write it as git:REV:path"),
        ("git::schemas/k.toml", "write it as git:REV:path"),
        ("git:--output=x:k.toml", "is not a revision"),
    ],
)
def test_git_source_errors_are_clear(repo: Path, spec: str, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        load_source(spec, cwd=repo)
    assert message in str(info.value) and str(info.value).startswith(spec.split(":")[0])


def test_git_source_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    with pytest.raises(SchemaError, match="not a git repository"):
        load_source("git:HEAD:k.toml", cwd=tmp_path)


def test_git_source_without_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SchemaError, match=r"git:HEAD:k\.toml: git: git is not installed"):
        load_source("git:HEAD:k.toml", cwd=tmp_path)


def test_the_docs_list_every_rule() -> None:
    import re

    source = (ROOT / "codegen" / "diff.py").read_text()
    produced = set(re.findall(r'self\.add\(\s*"([a-z-]+)"', source))
    docs = (ROOT / "docs" / "schemas.md").read_text()
    documented = set(re.findall(r"`([a-z]+(?:-[a-z]+)+)`", docs))
    assert len(produced) >= 30
    assert produced <= documented, produced - documented
