"""Which field types can read values written under another type.

:func:`readable` answers the question the decoder in :mod:`nanomsg_kernel.types` answers
at run time: a value written as type ``W`` (in one schema) is decoded as type ``R`` (in
another schema) -- does every such value decode? It drives ``schema diff``'s type rules:

* the same type, an enum or record of the same name (their own changes are diffed apart);
* ``int`` read as ``float`` (values beyond 2**53 lose precision);
* ``X`` read as ``optional[X]`` (but not the reverse: ``None`` does not decode as ``X``);
* an enum read as its value type (``int`` or ``str``), or as another enum that has all of
  its values; a record read as another record whose fields all read (structurally);
* ``list[X]`` and ``tuple[X, ...]`` read as each other (both are arrays), a fixed
  ``tuple[A, B]`` read as ``list[X]`` when ``A`` and ``B`` read as ``X``;
* containers element by element.
"""

from __future__ import annotations

from nanomsg_kernel.codegen.model import KernelSchema, MessageSchema, TypeRef

__all__ = ["kind_of", "readable"]


def kind_of(ref: TypeRef, kernel: KernelSchema) -> str:
    """The ref's kind, with ``named`` resolved to ``enum`` or ``record``."""
    if ref.kind == "named":
        return "enum" if kernel.enum(ref.name) is not None else "record"
    return ref.kind


def readable(w: TypeRef, r: TypeRef, ws: KernelSchema, rs: KernelSchema) -> str | None:
    """``None`` when every value written as ``w`` (schema ``ws``) decodes as ``r`` (schema
    ``rs``); otherwise the reason it does not."""
    if r.kind == "optional":
        return readable(w.args[0] if w.kind == "optional" else w, r.args[0], ws, rs)
    if w.kind == "optional":
        return f"{w} may be none, which {r} rejects"
    wk, rk = kind_of(w, ws), kind_of(r, rs)
    no = f"{w} values do not decode as {r}"
    if wk == "enum":
        return no if _enum_unreadable(w, r, rk, ws, rs) else None
    if wk == "record":
        if rk != "record":
            return no
        if w.name == r.name:
            return None
        wr, rr = ws.record(w.name), rs.record(r.name)
        assert wr is not None and rr is not None
        return _record_readable(wr, rr, ws, rs)
    if wk in ("list", "tuple") and rk in ("list", "tuple"):
        return _array_readable(w, r, ws, rs)
    if wk == "dict" and rk == "dict":
        return readable(w.args[0], r.args[0], ws, rs) or readable(w.args[1], r.args[1], ws, rs)
    if wk == rk and not w.args:
        return None
    if wk == "int" and rk == "float":
        return None
    return no


def _enum_unreadable(w: TypeRef, r: TypeRef, rk: str, ws: KernelSchema, rs: KernelSchema) -> bool:
    """True when the enum ``w`` does NOT read as ``r``."""
    we = ws.enum(w.name)
    assert we is not None
    if rk == we.value_kind:
        return False
    if rk != "enum":
        return True
    if w.name == r.name:
        return False
    re_ = rs.enum(r.name)
    assert re_ is not None
    return not set(we.by_value()) <= set(re_.by_value()) or we.value_kind != re_.value_kind


def _record_readable(wr: MessageSchema, rr: MessageSchema, ws: KernelSchema, rs: KernelSchema) -> str | None:
    for rf in rr.fields:
        wf = wr.field_by_tag(rf.tag)
        if wf is None:
            if rf.required:
                return f"{rr.name}.{rf.name} is required, and {wr.name} has no tag {rf.tag}"
            continue
        why = readable(wf.type, rf.type, ws, rs)
        if why:
            return f"{rr.name}.{rf.name}: {why}"
    return None


def _array_readable(w: TypeRef, r: TypeRef, ws: KernelSchema, rs: KernelSchema) -> str | None:
    w_fixed = w.kind == "tuple" and not w.variadic
    r_fixed = r.kind == "tuple" and not r.variadic
    if r_fixed:
        if not w_fixed or len(w.args) != len(r.args):
            return f"{w} values do not always have the {len(r.args)} items of {r}"
        for a, b in zip(w.args, r.args, strict=True):
            why = readable(a, b, ws, rs)
            if why:
                return why
        return None
    for a in w.args:
        why = readable(a, r.args[0], ws, rs)
        if why:
            return why
    return None
