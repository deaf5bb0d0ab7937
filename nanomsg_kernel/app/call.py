"""One request from the command line: JSON in, the reply as JSON out (``nanomsg-kernel call``).

::

    reply = await call_json("tcp://127.0.0.1:7000", CalcRoute, "CalcWork", '{"a": 6, "b": 3, "op": "DIV"}')

The whole exchange (connecting included) is bounded by the timeout.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from nanomsg_kernel.app.imports import import_ref
from nanomsg_kernel.app.jsonio import BytesFormat, loads, to_json
from nanomsg_kernel.client import Client
from nanomsg_kernel.errors import ConfigError, DeadlineExceeded
from nanomsg_kernel.routing import RoutingEnum

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["call_json", "find_contract", "load_kernel"]


def load_kernel(ref: str) -> type[RoutingEnum]:
    """The routing enum at ``"module:Attribute"`` (``ConfigError`` if it is not one)."""
    obj = import_ref(ref)
    if not (isinstance(obj, type) and issubclass(obj, RoutingEnum)):
        raise ConfigError(f"{ref} is not a RoutingEnum (a kernel's routing enum)")
    obj.validate()
    return obj


def find_contract(routes: type[RoutingEnum], name: str) -> type:
    """The contract of ``routes`` named ``name``: its class name (``CalcWork``), its routing
    member (``CALC_WORK``) or its route number (``1``); ``ConfigError`` listing them otherwise."""
    for member, cls in routes.contracts().items():
        if name in (cls.__name__, member.name, str(int(member))):
            return cls
    known = ", ".join(f"{c.__name__} ({m.name}={int(m)})" for m, c in routes.contracts().items())
    raise ConfigError(f"{routes.__name__} has no contract {name!r}; it has: {known}")


async def call_json(
    url: str,
    routes: type[RoutingEnum],
    contract: str,
    payload: str,
    *,
    timeout: float = 5.0,
    bytes_format: BytesFormat = "base64",
    on_slow: Callable[[], None] | None = None,
    slow_after: float = 0.5,
) -> dict[str, Any]:
    """Send the request ``payload`` (JSON text) as ``contract`` to ``url``; the reply as JSON data.

    Args:
        on_slow: called once if no reply came within ``slow_after`` seconds (progress note).

    Raises:
        ConfigError / EncodeError: bad URL, contract or payload (nothing was sent).
        RemoteError: the service answered with an error status.
        DeadlineExceeded: no reply (or no connection) within ``timeout``.
        Unavailable: the service cannot be reached.
        DecodeError: the reply is not a valid frame of the kernel.
    """
    cls = find_contract(routes, contract)
    msg = loads(cls, payload, bytes_format=bytes_format)
    routes.codec().encode_body(msg)  # the payload's values fit the wire before anything is sent
    loop = asyncio.get_running_loop()
    note = loop.call_later(slow_after, on_slow) if on_slow is not None else None
    client = Client(routes, url, timeout=timeout)
    try:
        async with asyncio.timeout(timeout):
            await client.connect()
            reply = await client.call(msg)
    except TimeoutError as exc:
        if isinstance(exc, DeadlineExceeded):
            raise
        raise DeadlineExceeded(f"{url}: no reply within {timeout:g}s") from None
    finally:
        if note is not None:
            note.cancel()
        await client.close()
    return to_json(reply, bytes_format=bytes_format)
