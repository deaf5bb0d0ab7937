"""Compare two versions of a kernel's schema: every change, breaking or compatible, with why.

Each :class:`Change` names its rule, where it is, and which guarantees it breaks:

* ``backward`` — decoders built from the NEW schema can no longer read messages encoded
  with the OLD one (new servers, old clients);
* ``forward`` — decoders built from the OLD schema can no longer read messages encoded
  with the NEW one (old servers, new clients);
* ``policy`` — a rule of safe evolution is broken (a version not raised, a retired tag
  reused or un-reserved) even if these two versions happen to interoperate.

The default mode, ``full``, counts all three as breaking; ``backward`` and ``forward``
modes accept changes that break only the other direction. The rules are listed in
``docs/schemas.md``.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from nanomsg_kernel.codegen.model import (
    REQUIRED,
    EnumSchema,
    FieldSchema,
    KernelSchema,
    MessageSchema,
    Special,
)
from nanomsg_kernel.codegen.wire import readable

__all__ = ["BACKWARD", "FORWARD", "MODES", "POLICY", "Change", "Report", "diff"]

BACKWARD = "backward"
FORWARD = "forward"
POLICY = "policy"
MODES: dict[str, frozenset[str]] = {
    "full": frozenset({BACKWARD, FORWARD, POLICY}),
    "backward": frozenset({BACKWARD, POLICY}),
    "forward": frozenset({FORWARD, POLICY}),
}
"""What each mode treats as breaking."""


@attrs.frozen
class Change:
    """One difference between two schemas."""

    rule: str
    """The rule's id, e.g. ``field-added-required`` (listed in docs/schemas.md)."""
    where: str
    """What changed, e.g. ``CalcWork.precision``."""
    message: str
    breaks: frozenset[str] = frozenset()
    """The guarantees it breaks: ``backward``, ``forward``, ``policy`` (empty: compatible)."""

    def breaking(self, mode: str = "full") -> bool:
        """True when this change is breaking in ``mode``."""
        return bool(self.breaks & MODES[mode])

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"rule": self.rule, "where": self.where, "message": self.message, "breaks": sorted(self.breaks)}


@attrs.frozen
class Report:
    """Every change from ``old`` to ``new``, judged in ``mode``."""

    old: str
    new: str
    changes: tuple[Change, ...]
    mode: str = "full"

    @property
    def breaking(self) -> list[Change]:
        """The breaking changes in this report's mode."""
        return [c for c in self.changes if c.breaking(self.mode)]

    @property
    def compatible(self) -> list[Change]:
        """The changes that are not breaking in this report's mode."""
        return [c for c in self.changes if not c.breaking(self.mode)]

    @property
    def ok(self) -> bool:
        """True when nothing is breaking."""
        return not self.breaking

    def rules(self, *, breaking: bool | None = None) -> set[str]:
        """The rule ids present (only breaking, only compatible, or all)."""
        return {c.rule for c in self.changes if breaking is None or c.breaking(self.mode) == breaking}

    def text(self) -> str:
        """A human-readable report."""
        out = [f"schema diff {self.old} -> {self.new} (mode: {self.mode})"]
        for title, items in (("Breaking changes", self.breaking), ("Compatible changes", self.compatible)):
            if not items:
                continue
            out += ["", f"{title}:"]
            for c in items:
                tags = ", ".join(sorted(c.breaks))
                note = f"; breaks {tags}" if tags else ""
                out.append(f"  {c.where} [{c.rule}{note}]: {c.message}")
        if not self.changes:
            out += ["", "No changes."]
        out += ["", f"{len(self.breaking)} breaking, {len(self.compatible)} compatible"]
        return "\n".join(out)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "old": self.old,
            "new": self.new,
            "mode": self.mode,
            "ok": self.ok,
            "breaking": [c.as_dict() for c in self.breaking],
            "compatible": [c.as_dict() for c in self.compatible],
        }

    def json(self) -> str:
        """The report as JSON text."""
        return json.dumps(self.as_dict(), indent=2, ensure_ascii=False)


def _show_default(f: FieldSchema) -> str:
    if f.default is REQUIRED:
        return "none (required)"
    if isinstance(f.default, Special):
        return f.default.value
    return repr(f.default)


class _Differ:
    def __init__(self, old: KernelSchema, new: KernelSchema) -> None:
        self.old, self.new = old, new
        self.out: list[Change] = []

    def add(self, rule: str, where: str, message: str, *breaks: str) -> None:
        self.out.append(Change(rule, where, message, frozenset(breaks)))

    # -- routes --------------------------------------------------------------------------

    def doc(self, where: str, what: str, old: str, new: str) -> None:
        """A docstring changed (the text itself is not repeated: it is the schema author's)."""
        if old != new:
            self.add("doc-changed", where, f"{what} changed ({len(old)} -> {len(new)} characters)")

    def routes(self) -> None:
        old, new = self.old, self.new
        self.doc(new.name, "module docstring", old.doc, new.doc)
        if old.routing != new.routing:
            self.add("routing-renamed", new.routing, f"routing enum renamed from {old.routing} (ids are what travel)")
        self.doc(new.routing, "docstring", old.routing_doc, new.routing_doc)
        old_ids = {i: n for n, i in old.routes}
        new_ids = {i: n for n, i in new.routes}
        new_by_name = dict(new.routes)
        for name, rid in old.routes:
            oc = old.contract_for(rid)
            assert oc is not None
            if rid not in new_ids:
                moved = f"; {name} now has id {new_by_name[name]}" if name in new_by_name else ""
                self.add("route-removed", f"{old.routing}.{name}",
                         f"route id {rid} ({oc.name}) removed{moved}: messages sent to it by peers on the "
                         "old schema fail with 'unknown route'", BACKWARD)
                continue
            nc = new.contract_for(rid)
            assert nc is not None
            if nc.name != oc.name:
                self.add("route-reassigned", f"{new.routing}.{new_ids[rid]}",
                         f"route id {rid} re-assigned from contract {oc.name} to {nc.name}: a peer on the "
                         f"other version decodes the message as the wrong contract", BACKWARD, FORWARD)
                continue
            if new_ids[rid] != name:
                self.add("route-renamed", f"{new.routing}.{new_ids[rid]}",
                         f"route {name} renamed to {new_ids[rid]} (id {rid} unchanged)")
            self.message(oc, nc)
        for name, rid in new.routes:
            if rid not in old_ids:
                nc = new.contract_for(rid)
                assert nc is not None
                self.add("route-added", f"{new.routing}.{name}", f"route id {rid} added for contract {nc.name}")

    # -- enums and records ---------------------------------------------------------------

    def types(self) -> None:
        old_enums = {e.name: e for e in self.old.enums}
        new_enums = {e.name: e for e in self.new.enums}
        for name, e in old_enums.items():
            if name in new_enums:
                self.enum(e, new_enums[name])
            else:
                self.add("enum-removed", name, "enum removed (its uses are reported as type changes)")
        for name in new_enums:
            if name not in old_enums:
                self.add("enum-added", name, "enum added")
        old_recs = {r.name: r for r in self.old.records}
        new_recs = {r.name: r for r in self.new.records}
        for name, r in old_recs.items():
            if name in new_recs:
                self.message(r, new_recs[name])
            else:
                self.add("record-removed", name, "record removed (its uses are reported as type changes)")
        for name in new_recs:
            if name not in old_recs:
                self.add("record-added", name, "record added")

    def enum(self, o: EnumSchema, n: EnumSchema) -> None:
        self.doc(n.name, "docstring", o.doc, n.doc)
        if o.value_kind != n.value_kind:
            self.add("enum-type-changed", n.name, f"enum values changed from {o.value_kind} to {n.value_kind}: "
                     "no value decodes on the other side", BACKWARD, FORWARD)
            return
        ov, nv = o.by_value(), n.by_value()
        for v, name in ov.items():
            if v not in nv:
                self.add("enum-value-removed", f"{o.name}.{name}",
                         f"value {v!r} removed: messages of the old schema that carry it no longer decode",
                         BACKWARD)
            elif nv[v] != name:
                self.add("enum-member-renamed", f"{n.name}.{nv[v]}", f"member {name} renamed to {nv[v]} "
                         f"(value {v!r} unchanged)")
        for v, name in nv.items():
            if v not in ov:
                self.add("enum-value-added", f"{n.name}.{name}",
                         f"value {v!r} added: decoders built from the old schema reject it", FORWARD)

    # -- contracts and records -----------------------------------------------------------

    def message(self, o: MessageSchema, n: MessageSchema) -> None:
        name = n.name
        self.doc(name, "docstring", o.doc, n.doc)
        old_tags = {f.tag: f for f in o.fields}
        new_tags = {f.tag: f for f in n.fields}
        added = [f for f in n.fields if f.tag not in old_tags]
        removed = [f for f in o.fields if f.tag not in new_tags]
        for f in n.fields:
            if f.tag in old_tags:
                self.field(name, old_tags[f.tag], f)
        for f in added:
            where = f"{name}.{f.name}"
            if f.tag in o.reserved:
                self.add("reserved-tag-reused", where,
                         f"tag {f.tag} was reserved in {o.name} (a retired field's tag); old messages may "
                         f"still carry the retired field under it. Give {f.name} a new tag", POLICY)
            if f.required:
                self.add("field-added-required", where,
                         f"required field added (tag {f.tag}, {f.type}) without a default: messages of the "
                         "old schema lack it, so new decoders reject them", BACKWARD)
            else:
                self.add("field-added", where, f"field added (tag {f.tag}, {f.type}, default "
                         f"{_show_default(f)}); old decoders keep it as an unknown field")
            if n.version > o.version and not o.version < f.since <= n.version:
                self.add("field-since-invalid", where,
                         f"since = {f.since}, but version {o.version} had no {f.name}: set since = {n.version}",
                         POLICY)
        for f in removed:
            where = f"{o.name}.{f.name}"
            if f.required:
                self.add("field-removed", where, f"required field removed (tag {f.tag}): old decoders "
                         "reject messages without it", FORWARD)
            else:
                self.add("field-removed", where, f"field removed (tag {f.tag}); old decoders use its default")
            if f.tag not in n.reserved:
                self.add("tag-not-reserved", where, f"tag {f.tag} of the removed field is not reserved: add it "
                         f"to {name}'s reserved tags so that no later field reuses it", POLICY)
        for tag in sorted(set(o.reserved) - set(n.reserved)):
            if tag not in new_tags:
                self.add("reserved-tag-removed", name, f"tag {tag} is no longer reserved: a later field could "
                         "reuse a retired tag", POLICY)
        for tag in sorted(set(n.reserved) - set(o.reserved)):
            self.add("reserved-tag-added", name, f"tag {tag} reserved")
        if n.version < o.version:
            self.add("version-lowered", name, f"version lowered from {o.version} to {n.version}", POLICY)
        elif (added or removed) and n.version == o.version:
            names = ", ".join(f.name for f in (*added, *removed))
            self.add("version-not-raised", name, f"fields added or removed ({names}) but the version stays "
                     f"{o.version}: raise it to {o.version + 1}", POLICY)
        elif n.version > o.version:
            self.add("version-raised", name, f"version {o.version} -> {n.version}")

    def field(self, owner: str, o: FieldSchema, n: FieldSchema) -> None:
        where = f"{owner}.{n.name}"
        back = readable(o.type, n.type, self.old, self.new)
        fwd = readable(n.type, o.type, self.new, self.old)
        breaks = [d for d, why in ((BACKWARD, back), (FORWARD, fwd)) if why]
        reasons = "; ".join(f"{d}: {why}" for d, why in ((BACKWARD, back), (FORWARD, fwd)) if why)
        if o.name != n.name:
            if breaks:
                self.add("field-tag-reused", where,
                         f"tag {n.tag} was {o.name}: {o.type}, is now {n.name}: {n.type}, a different field "
                         f"({reasons})", *breaks)
                return
            self.add("field-renamed", where, f"{o.name} renamed to {n.name} (tag {n.tag} and type unchanged on "
                     "the wire; code using the old name must change)")
        if o.type != n.type:
            if breaks:
                self.add("field-type-changed", where, f"type changed from {o.type} to {n.type} ({reasons})",
                         *breaks)
            else:
                self.add("field-type-changed", where, f"type changed from {o.type} to {n.type}; values "
                         "decode either way")
        if o.required and not n.required:
            self.add("field-default-added", where, f"default {_show_default(n)} added")
        elif not o.required and n.required:
            if o.since > 1:
                self.add("field-default-removed", where,
                         f"default removed: messages of versions before {o.since} lack the field and would no "
                         "longer decode", BACKWARD)
            else:
                self.add("field-default-removed", where, "default removed: the field is required now, and "
                         "every version of the schema sends it")
        elif repr(o.default) != repr(n.default):
            self.add("field-default-changed", where, f"default changed from {_show_default(o)} to "
                     f"{_show_default(n)} (only messages that lack the field see it)")
        if o.since != n.since:
            self.add("field-since-changed", where, f"since changed from {o.since} to {n.since}")


def diff(old: KernelSchema, new: KernelSchema, *, mode: str = "full") -> Report:
    """Every change from ``old`` to ``new``; :attr:`Report.ok` is False on breaking changes.

    Args:
        mode: ``full`` (default: both directions and the evolution rules), ``backward``
            or ``forward`` (see the module docstring).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    d = _Differ(old, new)
    d.routes()
    d.types()
    return Report(old.source or old.name, new.source or new.name, tuple(d.out), mode)
