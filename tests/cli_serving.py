"""``nanomsg-kernel serve`` in a child process, for the command-line tests."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def serving(args: list[str], **popen: Any) -> Iterator[dict[str, str]]:
    """Run ``args`` (a ``serve`` command line) until the block ends; yield the URL of each
    service's first listener, read from its ``listening`` lines up to ``ready``."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # ends when serve exits: never waits past a failed start
            lines.append(line.rstrip("\n"))
            if line.startswith("ready "):
                break
        urls: dict[str, str] = {}
        for words in (line.split() for line in lines if line.startswith("listening ")):
            urls.setdefault(words[1], words[2])
        assert urls, f"serve printed {lines}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        yield urls
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
