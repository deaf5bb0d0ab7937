"""The routing enum: each member is a contract's stable wire id.

A kernel declares one :class:`RoutingEnum` subclass; every member gets exactly one contract
through :func:`~nanomsg_kernel.contract.contract`. The member's value is the ``route`` field
of the frame header (0 to 65535), so values must never be reused for another contract.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from nanomsg_kernel.errors import ContractError
from nanomsg_kernel.frame import DEFAULT_MAX_BODY, MAX_U16

if TYPE_CHECKING:
    from nanomsg_kernel.client import Client
    from nanomsg_kernel.codec import Codec

__all__ = ["RoutingEnum", "register_contract"]

_CONTRACTS: dict[type[RoutingEnum], dict[RoutingEnum, type]] = {}
_CODECS: dict[tuple[type[RoutingEnum], int], Codec] = {}


def register_contract(route: RoutingEnum, cls: type) -> None:
    """Bind ``cls`` to ``route``; a second contract for the same member is an error."""
    kernel = type(route)
    if not 0 <= route.value <= MAX_U16:
        raise ContractError(f"{kernel.__name__}.{route.name} = {route.value}: route ids are 0 to {MAX_U16}")
    table = _CONTRACTS.setdefault(kernel, {})
    if route in table:
        raise ContractError(
            f"{kernel.__name__}.{route.name} already has contract {table[route].__name__}; "
            f"cannot also give it {cls.__name__}"
        )
    table[route] = cls


class RoutingEnum(enum.IntEnum):
    """Base of a kernel's routing enum. Subclass it with one member per contract."""

    @property
    def contract(self) -> type[Any]:
        """The contract class bound to this member."""
        try:
            return _CONTRACTS[type(self)][self]
        except KeyError:
            raise ContractError(f"{type(self).__name__}.{self.name} has no contract") from None

    @classmethod
    def contracts(cls) -> dict[Any, type[Any]]:
        """Members that have a contract, mapped to it (in member order)."""
        table = _CONTRACTS.get(cls, {})
        return {m: table[m] for m in cls if m in table}

    @classmethod
    def validate(cls) -> None:
        """Check every member has a contract and fits the wire; raise :class:`ContractError`."""
        if not list(cls):
            raise ContractError(f"{cls.__name__} has no members")
        table = _CONTRACTS.get(cls, {})
        missing = [m.name for m in cls if m not in table]
        if missing:
            raise ContractError(f"{cls.__name__}: no contract for {', '.join(missing)}")
        for m in cls:
            if not 0 <= m.value <= MAX_U16:
                raise ContractError(f"{cls.__name__}.{m.name} = {m.value}: route ids are 0 to {MAX_U16}")

    @classmethod
    def codec(cls, *, max_body_size: int = DEFAULT_MAX_BODY) -> Codec:
        """The kernel's :class:`~nanomsg_kernel.codec.Codec` (validated, built once, cached)."""
        key = (cls, max_body_size)
        codec = _CODECS.get(key)
        if codec is None:
            from nanomsg_kernel.codec import Codec

            codec = _CODECS[key] = Codec(cls, max_body_size=max_body_size)
        return codec

    @classmethod
    def connect(cls, url: str, **options: Any) -> Client:
        """A :class:`~nanomsg_kernel.client.Client` for this kernel at ``url``.

        Use it as ``async with Kernel.connect(url) as client``; options go to the transport.
        """
        from nanomsg_kernel.client import Client

        return Client(cls, url, **options)
