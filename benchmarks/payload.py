"""The ``blob`` service: a request carrying an opaque body, answered with the same body.

Used by :mod:`benchmarks.sizes` to show how a call's cost grows with the message size;
importable as ``benchmarks.payload:blob`` (the server processes serve it from there).
"""

from __future__ import annotations

from nanomsg_kernel import RoutingEnum, Service, contract

__all__ = ["Blob", "BlobRoute", "blob", "echo_blob"]


class BlobRoute(RoutingEnum):
    """Routes of the blob kernel (stable wire ids)."""

    BLOB = 1


@contract(BlobRoute.BLOB)
class Blob:
    """An opaque ``body``; the reply carries it back unchanged."""

    body: bytes


blob = Service("blob", BlobRoute)
"""Answers each :class:`Blob` with itself."""


@blob.handler(Blob, inline=True)
def echo_blob(msg: Blob) -> Blob:
    """Answer with the request (the body is neither copied nor inspected)."""
    return msg
