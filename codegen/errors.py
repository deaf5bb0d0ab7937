"""Errors in schemas: every problem with its file, line and the name it is about."""

from __future__ import annotations

from typing import NamedTuple

from nanomsg_kernel.errors import ContractError

__all__ = ["Problem", "SchemaError"]


class Problem(NamedTuple):
    """One error in a schema: where it is, what it names, what is wrong."""

    source: str
    line: int | None
    name: str
    message: str

    def __str__(self) -> str:
        """``source:line: name: message``, with every character that is not printable escaped
        (a name or path from a schema file cannot move the cursor or start a line)."""
        where = f"{self.source}:{self.line}" if self.line else self.source
        return _printable(f"{where}: {self.name}: {self.message}")


def _printable(text: str) -> str:
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class SchemaError(ContractError):
    """A schema file (or an exported kernel) is invalid; ``problems`` lists every error."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    @classmethod
    def one(cls, source: str, name: str, message: str, line: int | None = None) -> SchemaError:
        """A :class:`SchemaError` holding a single problem."""
        return cls([Problem(source, line, name, message)])
