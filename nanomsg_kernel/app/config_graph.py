"""The order a node's services start in, and the binding cycles that have none.

A service bound by URL to a listener of its own node needs that listener up first; ``edges``
maps each service to its ``(binding, target service)`` pairs of that kind.
"""

from __future__ import annotations

__all__ = ["cycles", "start_order"]


def cycles(edges: dict[str, list[tuple[str, str]]]) -> list[list[tuple[str, str]]]:
    """Cycles of two or more services in ``edges`` (service -> [(binding, target)]), one each."""
    found: list[list[tuple[str, str]]] = []
    seen_sets: set[frozenset[str]] = set()
    state: dict[str, int] = {}
    stack: list[tuple[str, str]] = []  # (service, binding taken)

    def visit(node: str) -> None:
        state[node] = 1
        for binding, target in edges.get(node, []):
            if target == node:
                continue
            if state.get(target) == 1:
                names = [s for s, _ in stack] + [node]
                start = names.index(target)
                ring = [*stack[start:], (node, binding)]
                members = frozenset(s for s, _ in ring)
                if members not in seen_sets:
                    seen_sets.add(members)
                    found.append(ring)
            elif target not in state:
                stack.append((node, binding))
                visit(target)
                stack.pop()
        state[node] = 2

    for n in edges:
        if n not in state:
            visit(n)
    return found


def start_order(names: list[str], edges: dict[str, list[tuple[str, str]]]) -> list[str]:
    """``names`` ordered so that each service comes after the services it is bound to by URL."""
    order: list[str] = []
    placed: set[str] = set()

    def place(n: str, path: frozenset[str]) -> None:
        if n in placed or n in path:
            return
        for _binding, target in edges.get(n, []):
            place(target, path | {n})
        placed.add(n)
        order.append(n)

    for n in names:
        place(n, frozenset())
    return order
