"""Turn the figures recorded by a run of the reliability suite into Markdown tables.

::

    rm -f /tmp/figures.jsonl
    NK_RELIABILITY_FIGURES=/tmp/figures.jsonl python -m pytest -q -p no:cacheprovider \\
        tests/test_conformance.py tests/test_reliability_*.py
    python -m tests.reliability.report /tmp/figures.jsonl

Prints the machine (cores, Python, platform) and one table per kind of test (the first
word of each record's ``test`` name), one row per record.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any

__all__ = ["main", "render"]

TITLES = {
    "decoder": "Hostile frames fed to the decoder (in-process)",
    "hostile": "Hostile frames sent to a live server",
    "load": "Load: 200 concurrent clients",
    "soak": "Conformance soak",
    "zmq": "Event order over ZeroMQ",
    "slow": "Slow subscriber",
    "backpressure": "Full queues",
    "restart": "Server process killed and restarted",
    "reconnect": "Reconnect after a server restart (conformance)",
    "wait": "Calls made while a ZeroMQ service restarts on the same port",
    "flood": "A flood of idle connections to one ZeroMQ listener",
    "long": "Long soak (--long only)",
    "descriptor": "Descriptor flood: one listener flooded in a process with a low RLIMIT_NOFILE",
    "held": "Replies held for a client that does not read",
}
"""Table titles by kind of test, in the order the tables are printed."""


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def render(records: list[dict[str, Any]]) -> str:
    """Markdown: the machine, then a table per kind of test."""
    lines = [
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()} ({platform.machine()}).",
        "",
    ]
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(str(rec["test"]).split()[0], []).append(rec)
    order = [*[g for g in TITLES if g in groups], *[g for g in groups if g not in TITLES]]
    for name in order:
        recs = groups[name]
        columns: list[str] = ["test"]
        for rec in recs:
            columns += [k for k in rec if k not in columns]
        lines += [f"### {TITLES.get(name, name)}", "", "| " + " | ".join(c.replace("_", " ") for c in columns) + " |",
                  "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(rec.get(c, "")) for c in columns) + " |" for rec in recs]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``report FILE``: print the tables of the figures in FILE (JSON lines)."""
    if len(argv) != 1:
        print("usage: python -m tests.reliability.report FIGURES.jsonl", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    print(render(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
