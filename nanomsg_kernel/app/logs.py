"""Structured logs: every record carries the service, contract and correlation id it is about.

Services log through ``logging`` with ``extra={"service": ..., "contract": ...,
"correlation_id": ...}`` (and handlers through ``ctx.logger``, which adds them). This module
renders those records on stderr, as text or as one JSON object per line::

    configure_logging("INFO", json_lines=True)

    {"time": "2025-01-01T12:00:00.123+00:00", "level": "ERROR", "logger": "nanomsg_kernel.service.calc",
     "message": "handler failed", "service": "calc", "contract": "CalcWork", "correlation_id": 7, ...}

A record can quote a peer (an undecodable frame, a refused connection), so both renderings
escape every character that could steer a terminal
(:func:`~nanomsg_kernel.app.printable.printable`): a record is one line, plus the lines
of its traceback, if any.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import IO, Any

from nanomsg_kernel.app.printable import printable

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "TextFormatter", "configure_logging"]

CONTEXT_FIELDS = ("service", "contract", "correlation_id")
"""Record attributes that say which call a record is about (absent ones are ``None``)."""

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {f: getattr(record, f, None) for f in CONTEXT_FIELDS}
    for key, value in vars(record).items():
        if key not in _STANDARD and key not in out:
            out[key] = value
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the call's context fields,
    any other ``extra`` and the exception text, if any."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one line of JSON."""
        entry: dict[str, Any] = {
            "time": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return printable(json.dumps(entry, default=repr, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [service contract #id] message``; the bracket only when known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(call)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as text: one line, then its traceback's lines, if any."""
        parts = [str(getattr(record, "service", None) or ""), str(getattr(record, "contract", None) or "")]
        cid = getattr(record, "correlation_id", None)
        if cid is not None:
            parts.append(f"#{cid}")
        shown = " ".join(p for p in parts if p)
        record.call = printable(f" [{shown}]") if shown else ""
        record.message = printable(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        text = printable(self.formatMessage(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + printable(record.exc_text, keep_newlines=True)
        if record.stack_info:
            text += "\n" + printable(self.formatStack(record.stack_info), keep_newlines=True)
        return text


def configure_logging(level: str = "WARNING", *, json_lines: bool = False, stream: IO[str] | None = None) -> None:
    """Send log records (through the root logger) to ``stream`` (default stderr) from ``level``
    up, as text or JSON lines. A second call replaces the handler the first one added."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.set_name("nanomsg_kernel.app.cli")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "nanomsg_kernel.app.cli"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
