"""The worked examples in docs/wire.md are exactly what the codec produces."""

from __future__ import annotations

import re
from pathlib import Path

import construct
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanomsg_kernel import BuiltinRoute, HealthCheck, HealthStatus, Kind, Status
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.frame import HEADER_SIZE, HEADER_SPEC, HEADER_STRUCT, MAGIC, WIRE_VERSION, cancel_frame

DOC = Path(__file__).resolve().parent.parent / "docs" / "wire.md"
codec = CalcRoute.codec()
builtin = BuiltinRoute.codec()

EXAMPLES = {
    "calc_request": lambda: codec.encode(CalcWork(a=1, b=2, op=WorkType.SUM), correlation_id=7, timeout_ms=1500),
    "calc_response": lambda: codec.encode(
        CalcWork(a=6, b=3, op=WorkType.DIV, result=2), kind=Kind.RESPONSE, correlation_id=7
    ),
    "calc_error": lambda: codec.encode_error(Status.BAD_REQUEST, "division by zero", correlation_id=8, route=1),
    "echo_request": lambda: codec.encode(Echo(text="héllo"), correlation_id=2**40 + 5),
    "cancel": lambda: cancel_frame(7),
    "calc_request_metadata": lambda: codec.encode(
        CalcWork(a=1, b=2, op=WorkType.SUM), correlation_id=7, timeout_ms=1500,
        metadata={"tenant": "acme", "token": b"\x01\x02"},
    ),
    "health_request": lambda: builtin.encode(HealthCheck(), correlation_id=1),
    "health_response": lambda: builtin.encode(
        HealthCheck(service="calc", status=HealthStatus.SERVING), kind=Kind.RESPONSE, correlation_id=1
    ),
}
CODECS = {"health_request": builtin, "health_response": builtin}
"""The codec of an example that is not of the calculator kernel."""


def doc_examples() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"<!-- example: (\w+) -->\s*```text\n(.*?)```", text, re.S)
    return {name: bytes.fromhex(block) for name, block in found}


def test_doc_has_every_example() -> None:
    assert set(doc_examples()) == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_doc_example_matches_codec(name: str) -> None:
    assert EXAMPLES[name]() == doc_examples()[name]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_doc_example_decodes(name: str) -> None:
    frame = doc_examples()[name]
    decoded = CODECS.get(name, codec).decode_frame(frame)
    assert decoded.header.body_length == len(frame) - HEADER_SIZE


def test_doc_metadata_example_carries_its_metadata() -> None:
    frame = doc_examples()["calc_request_metadata"]
    assert dict(codec.frame_metadata(frame)) == {"tenant": "acme", "token": b"\x01\x02"}
    assert codec.decode(frame) == CalcWork(a=1, b=2, op=WorkType.SUM)
    # without its block and flag, the frame is the plain request byte for byte
    plain = doc_examples()["calc_request"]
    assert frame[HEADER_SIZE + 4 + 23:] == plain[HEADER_SIZE:]


@given(
    kind=st.integers(0, 255), route=st.integers(0, 0xFFFF), cver=st.integers(0, 0xFFFF), flags=st.integers(0, 0xFFFF),
    cid=st.integers(0, 2**64 - 1), tmo=st.integers(0, 2**32 - 1), length=st.integers(0, 2**32 - 1),
)
def test_construct_spec_and_struct_agree(
    kind: int, route: int, cver: int, flags: int, cid: int, tmo: int, length: int
) -> None:
    values = dict(
        wire_version=WIRE_VERSION, kind=kind, route=route, contract_version=cver, flags=flags,
        correlation_id=cid, timeout_ms=tmo, body_length=length,
    )
    built = HEADER_SPEC.build(values)
    packed = HEADER_STRUCT.pack(MAGIC, WIRE_VERSION, kind, route, cver, flags, cid, tmo, length)
    assert built == packed
    assert len(built) == HEADER_SIZE == HEADER_SPEC.sizeof()
    parsed = HEADER_SPEC.parse(packed)
    assert HEADER_STRUCT.unpack(packed)[1:] == tuple(parsed[k] for k in values)


def test_construct_spec_refuses_bad_magic() -> None:
    with pytest.raises(construct.ConstError):
        HEADER_SPEC.parse(b"XX" + bytes(24))
