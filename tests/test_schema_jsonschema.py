"""``schema jsonschema``: JSON Schema per contract, in the wire (tag) form and the jsonio (name) form."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from nanomsg_kernel import RoutingEnum, contract_info
from nanomsg_kernel.app.jsonio import to_json
from nanomsg_kernel.app.schema_cli import schema_group
from nanomsg_kernel.codegen.json_schema import contract_schemas
from nanomsg_kernel.codegen.schema import load_path
from nanomsg_kernel.contracts.calc import CalcRoute
from nanomsg_kernel.contracts.catalog import CatalogRoute
from nanomsg_kernel.testing import strategy_for
from nanomsg_kernel.types import TypeSpec

ROOT = Path(__file__).resolve().parent.parent
CALC = load_path(ROOT / "schemas" / "calc.toml")
CATALOG = load_path(ROOT / "schemas" / "catalog.toml")


def test_the_calc_work_schema_in_wire_form() -> None:
    s = contract_schemas(CALC)["CalcWork"]
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert (s["x-nanomsg-route"], s["x-nanomsg-version"], s["title"]) == (1, 2, "CalcWork")
    assert list(s["properties"]) == ["1", "2", "3", "4", "5"] and s["required"] == ["1", "2", "3"]
    assert s["properties"]["3"] == {"title": "op", "$ref": "#/$defs/WorkType"}
    assert s["properties"]["5"]["default"] == 0 and s["properties"]["5"]["x-nanomsg-since"] == 2
    assert s["properties"]["4"]["anyOf"][1] == {"type": "null"}
    assert s["$defs"]["WorkType"]["enum"] == [1, 2, 3, 4]


def test_the_name_form_uses_field_and_member_names() -> None:
    s = contract_schemas(CALC, keys="name")["CalcWork"]
    assert list(s["properties"]) == ["a", "b", "op", "result", "precision"]
    assert s["properties"]["a"]["x-nanomsg-tag"] == 1
    assert s["$defs"]["WorkType"]["enum"] == ["SUM", "DIFF", "MULT", "DIV", 1, 2, 3, 4]
    item = contract_schemas(CATALOG, keys="name")["PutItem"]["$defs"]["Item"]
    assert item["properties"]["colours"]["default"] == [] and item["properties"]["image"]["default"] == ""
    with pytest.raises(ValueError, match="keys must be"):
        contract_schemas(CALC, keys="both")


def test_nested_records_and_enums_go_under_defs() -> None:
    s = contract_schemas(CATALOG)["PutItem"]
    assert sorted(s["$defs"]) == ["Colour", "Item", "Price"]
    item = s["$defs"]["Item"]
    assert item["properties"]["5"]["anyOf"][0] == {
        "type": "array",
        "prefixItems": [
            {"anyOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]},
        ] * 3,
        "items": False,
        "minItems": 3,
        "maxItems": 3,
    }
    assert item["properties"]["8"]["propertyNames"] == {"pattern": "^-?[0-9]+$"}
    assert item["properties"]["1"] == {"title": "id", "type": "string", "format": "uuid"}
    assert "$defs" not in contract_schemas(CALC)["Echo"]


def wire_json(spec: TypeSpec, value: Any) -> Any:
    """A value in the wire form as JSON (tags as keys, enums by value)."""
    if value is None:
        return None
    k = spec.kind
    if k == "optional":
        return wire_json(spec.args[0], value)
    if k == "bytes":
        return base64.b64encode(value).decode()
    if k == "uuid":
        return str(value)
    if k == "datetime":
        return value.isoformat()
    if k == "enum":
        return value.value
    if k == "record":
        return message_json(value)
    if k in ("list", "tuple"):
        fixed = k == "tuple" and spec.py is tuple
        return [wire_json(spec.args[i] if fixed else spec.args[0], x) for i, x in enumerate(value)]
    if k == "dict":
        return {str(key): wire_json(spec.args[1], x) for key, x in value.items()}
    if k == "float" and value != value:  # pragma: no cover - strategies draw no NaN
        return "NaN"
    return value


def message_json(msg: Any) -> dict[str, Any]:
    return {str(f.tag): wire_json(f.spec, getattr(msg, f.name)) for f in contract_info(msg).fields}


def check_messages(cls: type, validator: Any, convert: Any) -> None:
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(msg=strategy_for(cls))
    def check(msg: Any) -> None:
        doc = json.loads(json.dumps(convert(msg)))
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, (doc, errors)

    check()


@pytest.mark.parametrize("routes", [CalcRoute, CatalogRoute])
def test_every_message_validates_against_its_schema(routes: type[RoutingEnum]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    kernel = CALC if routes is CalcRoute else CATALOG
    for keys, convert in (("tag", message_json), ("name", to_json)):
        for cls in routes.contracts().values():
            schema = contract_schemas(kernel, keys=keys)[cls.__name__]
            jsonschema.Draft202012Validator.check_schema(schema)
            validator = jsonschema.Draft202012Validator(
                schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
            )

            check_messages(cls, validator, convert)


@pytest.mark.parametrize(
    ("doc", "keys"),
    [
        ({"1": 1, "2": 2}, "tag"),  # op missing
        ({"1": 1, "2": 2, "3": 9}, "tag"),  # not a WorkType value
        ({"1": "1", "2": 2, "3": 1}, "tag"),
        ({"1": 2**63, "2": 2, "3": 1}, "tag"),  # beyond int64
        ({"1": 1, "2": 2, "3": 1, "x": 1}, "tag"),  # keys are tags
        ({"1": 1, "2": 2, "3": 1, "5": 1.5}, "tag"),
        ({"a": 1, "b": 2, "op": "POW"}, "name"),
        ({"a": 1, "b": 2, "op": "SUM", "result": "3"}, "name"),
    ],
)
def test_what_a_client_should_not_send_is_rejected(doc: dict[str, Any], keys: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(contract_schemas(CALC, keys=keys)["CalcWork"])
    assert list(validator.iter_errors(doc))
    ok = {"1": 1, "2": 2, "3": 1, "9": "unknown fields of newer versions are allowed"}
    assert not list(jsonschema.Draft202012Validator(contract_schemas(CALC)["CalcWork"]).iter_errors(ok))


def test_jsonschema_cli_prints_or_writes_one_schema_per_contract(tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(schema_group, ["jsonschema", "nanomsg_kernel.contracts.catalog:CatalogRoute"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output) == contract_schemas(CATALOG)
    out = tmp_path / "json"
    written = runner.invoke(schema_group, ["jsonschema", str(ROOT / "schemas" / "calc.toml"), "--out", str(out),
                                           "--keys", "name"])
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in out.iterdir()) == ["CalcDone.schema.json", "CalcWork.schema.json",
                                                     "Echo.schema.json"]
    assert json.loads((out / "Echo.schema.json").read_text()) == contract_schemas(CALC, keys="name")["Echo"]
