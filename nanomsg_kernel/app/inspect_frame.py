"""Frame inspection: header fields and body of frames, readable, with or without a kernel.

Without a kernel the body is shown as generic msgpack (a map keyed by field tag); with a
kernel (its routing enum) it is decoded into the contract and shown by field name. Error
frames show their status, message and details. Input is raw bytes or hex text (spaces and
newlines allowed); several frames one after another are inspected in turn.

Nothing is trusted: each header is checked (magic, wire version, kind, declared body length
against the maximum) before its body is read, a kernel-less body may nest at most
:data:`~nanomsg_kernel.app.jsonio.MAX_NESTING` levels, and :func:`render_text` escapes every
character of the frame's text that could steer a terminal
(:func:`~nanomsg_kernel.app.printable.printable`).
"""

from __future__ import annotations

import json
import re
import string
from typing import TYPE_CHECKING, Any

import msgpack

from nanomsg_kernel.app.jsonio import BytesFormat, plain_json, to_json
from nanomsg_kernel.app.printable import printable
from nanomsg_kernel.codec import decode_error_body, msgpack_reason
from nanomsg_kernel.errors import DecodeError
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, HEADER_SIZE, METADATA_FLAG, Header, Kind, parse_header
from nanomsg_kernel.metadata import decode_metadata

if TYPE_CHECKING:
    from nanomsg_kernel.routing import RoutingEnum

__all__ = ["FrameReport", "decode_input", "inspect_frames", "render_text"]

_HEX_DIGITS = frozenset(string.hexdigits.encode())
_SPACE = re.compile(rb"\s+")

FrameReport = dict[str, Any]
"""One inspected frame: ``offset``, ``header`` (field -> value), ``metadata`` (when the
frame carries some), ``body`` or ``error``."""


def decode_input(data: bytes, *, hex_input: bool | None = None) -> bytes:
    """The frame bytes of ``data``: raw, or hex text when ``hex_input`` (``None``: guessed, hex
    when the text is only hex digits and whitespace and starts with ``4e4b``, the magic).

    Raises:
        DecodeError: hex input that is not valid hex.
    """
    if hex_input is None:
        stripped = _SPACE.sub(b"", data)
        hex_input = (
            bool(stripped) and stripped[:4].lower() == b"4e4b" and all(c in _HEX_DIGITS for c in stripped)
        )
    if not hex_input:
        return data
    text = _SPACE.sub(b"", data).decode("ascii", errors="replace")
    if text[:2].lower() == "0x":
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise DecodeError(f"input is not valid hex: {exc}") from None


def _header_fields(header: Header, routes: type[RoutingEnum] | None) -> dict[str, Any]:
    route: Any = header.route
    if routes is not None:
        try:
            route = f"{routes(header.route).name} ({header.route})"
        except ValueError:
            route = f"{header.route} (not a route of {routes.__name__})"
    return {
        "magic": "NK",
        "wire_version": header.wire_version,
        "kind": header.kind.name,
        "route": route,
        "contract_version": header.contract_version,
        "flags": header.flags,
        "correlation_id": header.correlation_id,
        "timeout_ms": header.timeout_ms,
        "body_length": header.body_length,
    }


def _body(
    header: Header, body: bytes, routes: type[RoutingEnum] | None, max_body: int, fmt: BytesFormat
) -> dict[str, Any]:
    if header.kind is Kind.CANCEL and not body:
        return {"cancels": header.correlation_id}
    if header.kind is Kind.ERROR:
        err = decode_error_body(body)
        return {"status": err.status.name, "message": err.message, "details": plain_json(err.details, bytes_format=fmt)}
    if routes is not None:
        codec = routes.codec(max_body_size=max_body)
        msg = codec.decode_body(header.route, body)
        return {"contract": type(msg).__name__, "fields": to_json(msg, bytes_format=fmt)}
    try:
        value = msgpack.unpackb(body, strict_map_key=False, timestamp=3)
    except Exception as exc:
        raise DecodeError(f"malformed msgpack body: {msgpack_reason(exc)}") from None
    return {"msgpack": plain_json(value, bytes_format=fmt)}


def inspect_frames(
    data: bytes,
    routes: type[RoutingEnum] | None = None,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    bytes_format: BytesFormat = "base64",
) -> list[FrameReport]:
    """Inspect every frame in ``data`` (frames back to back).

    A frame whose header is readable but whose body is not gets an ``error`` entry instead
    of ``body``; inspection stops at the first frame that cannot be delimited (bad header,
    body shorter than declared).

    Raises:
        DecodeError: ``data`` is empty.
    """
    if not data:
        raise DecodeError("no input: expected a frame")
    reports: list[FrameReport] = []
    offset = 0
    while offset < len(data):
        report: FrameReport = {"offset": offset}
        reports.append(report)
        try:
            header = parse_header(memoryview(data)[offset:], max_body)
        except DecodeError as exc:
            report["error"] = f"bad header: {exc}"
            break
        report["header"] = _header_fields(header, routes)
        start = offset + HEADER_SIZE
        end = start + header.body_length
        if end > len(data):
            report["error"] = f"truncated body: header declares {header.body_length} bytes, {len(data) - start} present"
            break
        body = data[start:end]
        try:
            if header.flags & METADATA_FLAG:
                metadata, skip = decode_metadata(body)
                report["metadata"] = plain_json(dict(metadata), bytes_format=bytes_format)
                body = body[skip:]
            report["body"] = _body(header, body, routes, max_body, bytes_format)
        except DecodeError as exc:
            report["error"] = f"bad body: {exc}"
        offset = end
    return reports


def _line(value: Any) -> str:
    return printable(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


def render_text(reports: list[FrameReport]) -> str:
    """The reports as aligned, readable text (one block per frame; one line per field, every
    value escaped with :func:`~nanomsg_kernel.app.printable.printable`)."""
    out: list[str] = []
    for i, report in enumerate(reports):
        if len(reports) > 1:
            out.append(f"frame {i + 1} at byte {report['offset']}")
        fields: dict[str, Any] = dict(report.get("header", {}))
        if "metadata" in report:
            fields["metadata"] = report["metadata"]
        body = report.get("body")
        if body is not None:
            if "contract" in body:
                fields["contract"] = body["contract"]
                fields.update({f"  .{k}": v for k, v in body["fields"].items()})
            elif "cancels" in body:
                fields["cancels"] = f"the request with correlation id {body['cancels']}"
            elif "status" in body:
                fields.update({"status": body["status"], "message": body["message"]})
                if body["details"] is not None:
                    fields["details"] = body["details"]
            else:
                fields["body (msgpack)"] = body["msgpack"]
        if "error" in report:
            fields["error"] = report["error"]
        width = max(len(k) for k in fields)
        out.extend(f"{printable(k.ljust(width))}  {_line(v)}" for k, v in fields.items())
        if i + 1 < len(reports):
            out.append("")
    return "\n".join(out)
