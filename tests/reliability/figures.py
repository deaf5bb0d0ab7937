"""Figures measured by the reliability tests, recorded for ``docs/reliability.md``.

When ``NK_RELIABILITY_FIGURES`` names a file, every :func:`record` call appends one JSON
line to it; ``python -m tests.reliability.report FILE`` turns the lines into the tables of
the document. Without the variable, figures are only printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any

__all__ = ["peak_rss_kib", "record"]


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB: ``VmHWM`` (Linux), else ``ru_maxrss``
    (which, on Linux, a child process inherits from its parent at fork/exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def record(test: str, **values: Any) -> None:
    """Record the figures of one test (a JSON line in ``$NK_RELIABILITY_FIGURES``)."""
    line = json.dumps({"test": test, **values}, sort_keys=True)
    print(f"figures: {line}", file=sys.stderr)
    path = os.environ.get("NK_RELIABILITY_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
