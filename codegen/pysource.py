"""Schema text written into Python source as data, never as code.

Every piece of a generated module that comes from a schema goes through one of these:

* :func:`docstring` — any text becomes a triple-quoted string literal whose value, read back
  with ``inspect.cleandoc`` (``ast.get_docstring``, ``inspect.getdoc``), is exactly the text
  as :func:`~nanomsg_kernel.codegen.model.clean_doc` keeps it. Backslashes are doubled,
  characters that are not printable (control characters, line and paragraph separators,
  bidirectional overrides) are written as escapes (a lone surrogate is refused), and a quote is escaped
  wherever it touches another quote or the closing quotes, so no quote run can end the literal;
* :func:`comment` — a file name or command in a ``#`` comment: written as it is when every
  character is printable, else as its ``repr`` (no line break, no NUL, no terminal control);
* :func:`identifier` and :func:`integer` — names and numbers written as code are checked to
  be ASCII identifiers (not keywords) and plain ``int``;
* string, bytes and float values are written by :mod:`nanomsg_kernel.codegen.values` from
  ``repr``.
"""

from __future__ import annotations

import keyword

from nanomsg_kernel.codegen.errors import SchemaError
from nanomsg_kernel.codegen.model import clean_doc

__all__ = ["comment", "docstring", "identifier", "integer"]


def _char(c: str) -> str:
    if c == "\\":
        return "\\\\"
    if c.isprintable():  # the space included; every other whitespace is escaped
        return c
    return repr(c)[1:-1]


def _line(text: str, *, first: bool, last: bool) -> str:
    """One line of a docstring's body: ``first`` starts the literal, ``last`` ends it."""
    out: list[str] = []
    end = len(text) - 1
    for i, c in enumerate(text):
        if c == '"' and (
            (i > 0 and text[i - 1] == '"')
            or (i < end and text[i + 1] == '"')
            or (first and i == 0)
            or (last and i == end)
        ):
            out.append('\\"')
        else:
            out.append(_char(c))
    return "".join(out)


def docstring(doc: str, indent: str) -> list[str]:
    """The source lines of a docstring for ``doc``, indented by ``indent`` (spaces).

    ``inspect.cleandoc`` of the literal's value is ``clean_doc(doc)``, for any text without
    lone surrogates (a :class:`~nanomsg_kernel.codegen.errors.SchemaError` for those: a TOML
    file cannot hold them, and Python 3.13 compiles no docstring that does).
    """
    if any("\ud800" <= c <= "\udfff" for c in doc):
        # Python 3.13 compiles no docstring holding one (escaped or not): refuse it everywhere
        raise SchemaError.one("docstring", ascii(doc[:40]), "a lone surrogate (U+D800-U+DFFF) cannot be in a docstring")
    lines = clean_doc(doc).split("\n")
    if len(lines) == 1:
        return [f'{indent}"""{_line(lines[0], first=True, last=True)}"""']
    out = [f'{indent}"""{_line(lines[0], first=True, last=False)}']
    out += [f"{indent}{_line(line, first=False, last=False)}" if line else "" for line in lines[1:]]
    out.append(f'{indent}"""')
    return out


def comment(text: str) -> str:
    """``text`` for a ``#`` comment: as it is if every character is printable, else its repr."""
    return text if text.isprintable() else repr(text)


def identifier(name: object) -> str:
    """``name`` if it is an ASCII Python identifier and not a keyword.

    Raises:
        ValueError: it is not; nothing that is not a name is written as code.
    """
    if type(name) is not str or not (name.isidentifier() and name.isascii() and not keyword.iskeyword(name)):
        raise ValueError(f"{name!r} is not a Python identifier")
    return name


def integer(value: object) -> str:
    """``value`` written as a Python int literal.

    Raises:
        ValueError: ``value`` is not an ``int`` (a ``bool`` or a subclass is not either).
    """
    if type(value) is not int:
        raise ValueError(f"{value!r} is not an int")
    return str(value)
