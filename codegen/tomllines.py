"""Find the line where a key of a TOML document is written.

``tomllib`` reports line numbers for syntax errors only; for errors found later (an unknown
type, a reused tag) the schema loader asks :func:`key_lines` where the offending key is.
The scan understands table headers, dotted and quoted keys, inline tables, multi-line
strings and arrays, and comments: enough to locate every key of a valid document.
"""

from __future__ import annotations

import re

__all__ = ["KeyLines", "key_lines"]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPE = re.compile(r'\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|["\\bfnrte])')
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "e": "\x1b", '"': '"', "\\": "\\"}

Path = tuple[str, ...]


class KeyLines:
    """Key paths of a document mapped to the (1-based) line they are written on."""

    def __init__(self, lines: dict[Path, int]) -> None:
        self._lines = lines

    def line(self, *path: str) -> int | None:
        """The line of ``path``, or of its nearest written ancestor (``None`` if neither)."""
        p: Path = tuple(path)
        while p:
            if p in self._lines:
                return self._lines[p]
            p = p[:-1]
        return None


def _unescape(s: str) -> str:
    def sub(m: re.Match[str]) -> str:
        e = m.group(1)
        return chr(int(e[1:], 16)) if e[0] in "uU" else _SIMPLE_ESCAPES[e]

    return _ESCAPE.sub(sub, s)


def _read_key(text: str, pos: int) -> tuple[Path, int] | None:
    """Read a (dotted) key at ``pos``; return it and the position after it, or None."""
    parts: list[str] = []
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos >= len(text):
            return None
        c = text[pos]
        if c == '"':
            m = re.compile(r'"((?:[^"\\]|\\.)*)"').match(text, pos)
            if m is None:
                return None
            parts.append(_unescape(m.group(1)))
            pos = m.end()
        elif c == "'":
            end = text.find("'", pos + 1)
            if end < 0:
                return None
            parts.append(text[pos + 1 : end])
            pos = end + 1
        else:
            m = _BARE.match(text, pos)
            if m is None:
                return None
            parts.append(m.group(0))
            pos = m.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return tuple(parts), pos


class _Scanner:
    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.table: Path = ()
        self.brackets: list[str] = []  # open [ and { inside a value
        self.inline: list[Path] = []  # paths of the open inline tables
        self.pending: Path | None = None  # key whose value starts next
        self.string: str | None = None  # open multi-line string delimiter

    def add(self, path: Path, lineno: int) -> None:
        self.lines.setdefault(path, lineno)

    def value(self, text: str, pos: int, lineno: int) -> None:
        """Scan value text from ``pos``: strings, brackets, inline-table keys, comments."""
        while pos < len(text):
            if self.string is not None:
                end = text.find(self.string, pos)
                if end < 0:
                    return
                pos = end + 3
                self.string = None
                continue
            c = text[pos]
            if c == "#":
                return
            if text.startswith('"""', pos) or text.startswith("'''", pos):
                self.string = text[pos : pos + 3]
                pos += 3
                continue
            if c == '"':
                m = re.compile(r'"(?:[^"\\]|\\.)*"').match(text, pos)
                pos = m.end() if m else len(text)
                continue
            if c == "'":
                end = text.find("'", pos + 1)
                pos = end + 1 if end >= 0 else len(text)
                continue
            if c == "{":
                self.brackets.append(c)
                self.inline.append(self.pending or ())
                pos = self._inline_key(text, pos + 1, lineno)
                continue
            if c == "[":
                self.brackets.append(c)
            elif c in "]}" and self.brackets:
                if self.brackets.pop() == "{" and self.inline:
                    self.inline.pop()
            elif c == "," and self.brackets and self.brackets[-1] == "{":
                pos = self._inline_key(text, pos + 1, lineno)
                continue
            pos += 1

    def _inline_key(self, text: str, pos: int, lineno: int) -> int:
        got = _read_key(text, pos)
        if got is None or got[1] >= len(text) or text[got[1]] != "=":
            return pos
        key, after = got
        path = self.inline[-1] + key
        self.add(path, lineno)
        self.pending = path
        return after + 1

    def line(self, text: str, lineno: int) -> None:
        if self.string is not None or self.brackets:
            self.value(text, 0, lineno)
            return
        stripped = text.lstrip()
        if not stripped or stripped.startswith("#"):
            return
        if stripped.startswith("["):
            array = stripped.startswith("[[")
            got = _read_key(stripped, 2 if array else 1)
            if got is not None:
                self.table = got[0]
                self.add(self.table, lineno)
            return
        got = _read_key(text, 0)
        if got is None or got[1] >= len(text) or text[got[1]] != "=":
            return
        key, after = got
        path = self.table + key
        self.add(path, lineno)
        self.pending = path
        self.value(text, after + 1, lineno)


def key_lines(text: str) -> KeyLines:
    """Scan a TOML document and return where each key is written."""
    scanner = _Scanner()
    for lineno, line in enumerate(text.splitlines(), start=1):
        scanner.line(line, lineno)
    return KeyLines(scanner.lines)
