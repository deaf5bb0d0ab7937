"""Which connections a listener serves: at most its own ``max_connections``, each holding a
descriptor of the process's budget.

:class:`ConnectionGate` admits a connection when the listener holds fewer than its
``max_connections`` *and* the process's
:class:`~nanomsg_kernel.fdbudget.DescriptorBudget` has a descriptor left; a connection
counts from the moment it is accepted until it is closed, a TLS handshake included. A
refused connection is closed at once, so it holds its descriptor for no longer than that.
The default ``max_connections`` is the listener's share of the process's descriptors
(:func:`~nanomsg_kernel.fdbudget.listener_share`).
"""

from __future__ import annotations

from nanomsg_kernel.errors import ConfigError
from nanomsg_kernel.fdbudget import DescriptorBudget, listener_share, process_budget

__all__ = ["ConnectionGate"]


class ConnectionGate:
    """Admits a listener's connections against its cap and the process's descriptors.

    Args:
        max_connections: connections held at once; ``None``: the listener's share of the
            process's descriptors, :func:`~nanomsg_kernel.fdbudget.listener_share`, capped
            at ``default_cap`` when one is given.
        budget: the descriptors to take from (default: the process's, shared by every
            listener).
        default_cap: the most the default ``max_connections`` may be (a listener that
            expects few clients, such as a metrics endpoint, asks for less than its share).

    Raises:
        ConfigError: ``max_connections`` is not a positive int.
    """

    __slots__ = ("budget", "max_connections", "open", "refused")

    def __init__(
        self,
        max_connections: int | None = None,
        budget: DescriptorBudget | None = None,
        *,
        default_cap: int | None = None,
    ) -> None:
        if max_connections is None:
            max_connections = listener_share()
            if default_cap is not None:
                max_connections = min(max_connections, default_cap)
        elif not isinstance(max_connections, int) or isinstance(max_connections, bool) or max_connections < 1:
            raise ConfigError(f"max_connections must be a positive int or None, got {max_connections!r}")
        if budget is not None and not isinstance(budget, DescriptorBudget):
            raise ConfigError(f"descriptor_budget must be a DescriptorBudget, got {type(budget).__name__}")
        self.max_connections = max_connections
        """Connections held at once, at most."""
        self.budget = process_budget() if budget is None else budget
        """The descriptors connections are taken from."""
        self.open = 0
        """Connections admitted and not yet released."""
        self.refused = 0
        """Connections refused: the listener at ``max_connections``, or no descriptor left."""

    def __repr__(self) -> str:
        return f"<ConnectionGate open={self.open}/{self.max_connections} refused={self.refused}>"

    def admit(self) -> bool:
        """Admit a new connection (then :meth:`release` it when it is closed), or refuse it."""
        if self.open >= self.max_connections or not self.budget.take():
            self.refused += 1
            return False
        self.open += 1
        return True

    def release(self) -> None:
        """An admitted connection is closed: give its place and its descriptor back."""
        self.open -= 1
        self.budget.give_back()
