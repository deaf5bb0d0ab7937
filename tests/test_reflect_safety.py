"""A description is untrusted data: its schema is bounded, validated, and built into classes
whose every text is a literal, never code."""

from __future__ import annotations

import inspect
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_schema_safety import NEUTRAL, SETTINGS, SLOTS, TOML_TEXT, hostile, kernel_with_docs, shape

from nanomsg_kernel.app.reflect import (
    MAX_SCHEMA_CHARS,
    MAX_SCHEMA_NESTING,
    described_kernel,
    described_schema,
)
from nanomsg_kernel.builtin import Describe
from nanomsg_kernel.codegen.model import clean_doc
from nanomsg_kernel.codegen.render import render_module
from nanomsg_kernel.codegen.toml_out import to_toml
from nanomsg_kernel.errors import DecodeError


def described(**values: object) -> Describe:
    docs = values.pop("docs", dict.fromkeys(SLOTS, "x"))
    assert isinstance(docs, dict)
    return Describe(service="svc", kernel="R", schema=to_toml(kernel_with_docs(docs, **values)))


@settings(SETTINGS, max_examples=60)
@given(docs=st.fixed_dictionaries({slot: TOML_TEXT for slot in SLOTS}), text=TOML_TEXT,
       member=TOML_TEXT.filter(bool), blob=st.binary(max_size=8))
def test_every_text_of_a_description_stays_data(docs: dict[str, str], text: str, member: str, blob: bytes) -> None:
    reply = described(docs=docs, text=text, member=member, blob=blob)
    schema = described_schema(reply)
    # What is built is the neutral module's code with other literals, and nothing else.
    assert shape(render_module(schema, schema_label="k.toml", command="c")) == shape(NEUTRAL)
    one_cls = described_kernel(reply).ONE.contract
    assert one_cls.__module__.startswith("_nanomsg_schema_")
    fields = {f.name: f for f in attrs.fields(one_cls)}
    assert (fields["s"].default, fields["b"].default, fields["p"].default) == (text, blob, (text, blob))
    assert fields["c"].default.value == member
    if clean_doc(docs["contract"]):
        assert inspect.cleandoc(one_cls.__doc__ or "") == inspect.cleandoc(clean_doc(docs["contract"]))


def test_a_hostile_doc_in_a_description_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    reply = described(docs=dict.fromkeys(SLOTS, hostile(marker)), text=hostile(marker))
    routes = described_kernel(reply)
    assert routes.ONE.contract.__doc__ == hostile(marker)
    assert not marker.exists()


@SETTINGS
@given(schema=st.text(max_size=400) | st.lists(st.sampled_from(
    ["[", "]", "{", "}", "=", '"', "routes", "contracts", "\n", "R", "ONE", "1", "type", "list[", "format = 1"]),
    max_size=60).map("".join), kernel=st.sampled_from(["R", "", "x"]))
def test_any_schema_text_is_a_kernel_or_a_decode_error(schema: str, kernel: str) -> None:
    try:
        routes = described_kernel(Describe(kernel=kernel, schema=schema))
    except DecodeError:
        return
    assert routes.__name__ == kernel


def test_long_deep_or_mismatched_descriptions_are_refused_before_they_are_parsed() -> None:
    with pytest.raises(DecodeError, match="characters long"):
        described_kernel(Describe(kernel="R", schema="#" * (MAX_SCHEMA_CHARS + 1)))
    deep = "a = " + "[" * (MAX_SCHEMA_NESTING + 1) + "]" * (MAX_SCHEMA_NESTING + 1)
    with pytest.raises(DecodeError, match="nests brackets deeper"):
        described_kernel(Describe(kernel="R", schema=deep))
    with pytest.raises(DecodeError, match="routing enum is 'R', not 'Other'"):
        described_kernel(Describe(kernel="Other", schema=described().schema))
    reserved = described().schema.replace("ONE = 1", "ONE = 65280")
    with pytest.raises(DecodeError, match="from 0 to 65279"):
        described_kernel(Describe(kernel="R", schema=reserved))
