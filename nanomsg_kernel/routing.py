"""The routing enum: each member is a contract's stable wire id.

A kernel declares one :class:`RoutingEnum` subclass; every member gets exactly one contract
through :func:`~nanomsg_kernel.contract.contract`. The member's value is the ``route`` field
of the frame header (0 to 65535), so values must never be reused for another contract.

This is the top of the kernel: it ties the contracts (:mod:`nanomsg_kernel.contract`, which
keeps the member -> contract table) to their :class:`~nanomsg_kernel.codec.Codec`. A client
for a kernel is made with ``Client(Kernel, url)`` (:class:`~nanomsg_kernel.client.Client`).
"""

from __future__ import annotations

import enum
from typing import Any

from nanomsg_kernel.codec import Codec
from nanomsg_kernel.contract import contract_of, kernel_contracts, validate_kernel
from nanomsg_kernel.frame import DEFAULT_MAX_BODY
from nanomsg_kernel.metadata import DEFAULT_MAX_METADATA_KEYS, DEFAULT_MAX_METADATA_SIZE

__all__ = ["RoutingEnum"]

_CODECS: dict[tuple[type[RoutingEnum], int, int, int], Codec] = {}


class RoutingEnum(enum.IntEnum):
    """Base of a kernel's routing enum. Subclass it with one member per contract."""

    __routing_enum__ = True

    @property
    def contract(self) -> type[Any]:
        """The contract class bound to this member."""
        return contract_of(self)

    @classmethod
    def contracts(cls) -> dict[Any, type[Any]]:
        """Members that have a contract, mapped to it (in member order)."""
        return dict(kernel_contracts(cls))

    @classmethod
    def validate(cls) -> None:
        """Check every member has a contract and fits the wire; raise :class:`ContractError`."""
        validate_kernel(cls)

    @classmethod
    def codec(cls, *, max_body_size: int = DEFAULT_MAX_BODY, max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE,
              max_metadata_keys: int = DEFAULT_MAX_METADATA_KEYS) -> Codec:
        """The kernel's :class:`~nanomsg_kernel.codec.Codec` (validated, built once per set of
        limits, cached)."""
        key = (cls, max_body_size, max_metadata_size, max_metadata_keys)
        codec = _CODECS.get(key)
        if codec is None:
            codec = _CODECS[key] = Codec(cls, max_body_size=max_body_size, max_metadata_size=max_metadata_size,
                                         max_metadata_keys=max_metadata_keys)
        return codec
