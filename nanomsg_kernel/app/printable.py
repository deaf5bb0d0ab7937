"""Text from the wire or a file, made safe to print on a terminal.

A peer's error message, a string field of a reply, a key of a config file or a log line
quoting a peer can hold control characters. Printed raw, ``ESC ] 0 ; … BEL`` retitles the
terminal and ``CR ESC [ 2K OK: 42`` overwrites ``error: …`` with a line the peer chose. Every
place the command line prints such text passes it through :func:`printable` first::

    >>> printable("division by zero\\x1b]0;pwned\\x07\\r\\x1b[2KOK: 42")
    'division by zero\\\\u001b]0;pwned\\\\u0007\\\\r\\\\u001b[2KOK: 42'

What is escaped: every control character (C0, DEL and C1: Unicode category ``Cc``), the
line and paragraph separators (U+2028, U+2029), the bidirectional formatting characters
that reorder what a reader sees (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to
U+2069) and lone surrogates (which no terminal encoding can write). Each becomes a JSON
string escape (``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\f`` or ``\\uXXXX``), so the same
function serves plain text and JSON text alike: in JSON these characters can only stand
inside strings, where the escape means the same character. Everything else, accents and
emoji included, is printed as it is.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

_UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_UNSAFE_OR_NEWLINE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SHORT = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT.get(char) or f"\\u{ord(char):04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every character that could steer a terminal escaped (see the module docs).

    Args:
        keep_newlines: leave ``\\n`` as it is, for text whose lines are this program's own
            (a traceback, JSON made by :func:`json.dumps`, whose strings never hold a raw
            newline); by default a newline is escaped too, so that the text stays one line.
    """
    pattern = _UNSAFE if keep_newlines else _UNSAFE_OR_NEWLINE
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape, text)
