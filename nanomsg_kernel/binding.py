"""Bindings: the only way a service reaches another (capabilities, not a global registry).

A binding is a name given to a service by its node, pointing either at a local service
(calls are direct in-process function calls: no bytes, no event-loop hop) or at a URL
(calls go through a :class:`~nanomsg_kernel.client.Client`). Handler code is the same for both::

    reply = await ctx.bindings.calc.call(CalcWork(a=1, b=2, op=WorkType.SUM))

A name the service was not given raises :class:`~nanomsg_kernel.errors.CapabilityError`.
Calls through ``ctx.bindings`` inherit what is left of the current call's deadline unless
given a shorter ``timeout``.

A local call behaves like the wire: the request and the reply pass the codec's checks in
each direction (:meth:`~nanomsg_kernel.codec.Codec.isolate`: a value the encoder refuses is
refused here too), and the two sides share nothing mutable. A message of immutable fields
(scalars, enums, ASCII text) is handed over as it is, since contracts are frozen; one with
lists, dicts, records or other text goes through the codec's body encoding and decoding,
so each side has its own copy.

Types: ``call`` returns what a checker can name. A contract derived from
:class:`~nanomsg_kernel.contract.Request` ``[R]`` is answered by an ``R``; any other
contract by its own type (a handler returning ``evolve(msg, ...)``).

Sync handlers, in their service's threads, cannot ``await``: they use
``ctx.bindings.NAME.call_sync(msg)`` and ``publish_sync(event)``, which run the call on the
event loop the request came from and wait for it there, with the same deadline.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar, overload

from nanomsg_kernel.client import Client, caller_error
from nanomsg_kernel.client_interceptors import ClientInterceptor
from nanomsg_kernel.codec import Codec
from nanomsg_kernel.contract import Request
from nanomsg_kernel.errors import (
    CapabilityError,
    CodecError,
    DeadlineExceeded,
    DecodeError,
    RemoteError,
    Status,
    Unavailable,
)
from nanomsg_kernel.handler_threads import handler_loop
from nanomsg_kernel.metadata import EMPTY_METADATA, Metadata
from nanomsg_kernel.peer import Peer

__all__ = ["Binding", "Bindings", "BindingsView", "LocalBinding", "RemoteBinding"]

M = TypeVar("M")
R = TypeVar("R")
T = TypeVar("T")


def _deadline_for(timeout: float | None, inherited: float | None) -> float | None:
    if timeout is None and inherited is None:
        return None
    now = asyncio.get_running_loop().time()
    own = None if timeout is None else now + timeout
    if own is None:
        return inherited
    return own if inherited is None else min(own, inherited)


class Binding(abc.ABC):
    """A named capability to call one service."""

    name: str

    @overload
    async def call(self, msg: Request[R], *, timeout: float | None = None, deadline: float | None = None,
                   metadata: Metadata | None = None) -> R: ...
    @overload
    async def call(self, msg: M, *, timeout: float | None = None, deadline: float | None = None,
                   metadata: Metadata | None = None) -> M: ...
    @abc.abstractmethod
    async def call(self, msg: Any, *, timeout: float | None = None, deadline: float | None = None,
                   metadata: Metadata | None = None) -> Any:
        """Send a request and return the reply (``RemoteError`` on an error status).

        ``timeout`` is in seconds; ``deadline`` is an absolute ``loop.time()``; the earlier wins.
        ``metadata`` travels with the request as over a wire (the handler's ``ctx.metadata``).
        """

    @abc.abstractmethod
    async def publish(self, event: Any, *, metadata: Metadata | None = None) -> None:
        """Send a one-way event to the bound service."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Release what the binding holds (connections)."""



class LocalTarget(Protocol):
    """What a :class:`LocalBinding` calls: a :class:`~nanomsg_kernel.service.Service`."""

    name: str
    codec: Codec

    async def dispatch(self, msg: Any, *, deadline: float | None = None, metadata: Metadata = EMPTY_METADATA,
                       peer: Any = None) -> Any:
        """Run the handler of ``msg``'s contract and return its reply."""

    async def publish_local(self, event: Any, *, metadata: Metadata = EMPTY_METADATA, peer: Any = None) -> None:
        """Run the subscribers of ``event``."""


class LocalBinding(Binding):
    """A binding to a service in the same process: a direct call of its dispatch."""

    __slots__ = ("name", "peer", "service")

    def __init__(self, name: str, service: LocalTarget, *, caller: str | None = None) -> None:
        self.name = name
        self.service = service
        self.peer = Peer("local", service=caller)
        """What the bound service's handlers read as ``ctx.peer``: the calling service."""

    @overload
    async def call(self, msg: Request[R], *, timeout: float | None = None, deadline: float | None = None,
                   metadata: Metadata | None = None) -> R: ...
    @overload
    async def call(self, msg: M, *, timeout: float | None = None, deadline: float | None = None,
                   metadata: Metadata | None = None) -> M: ...
    async def call(self, msg: Any, *, timeout: float | None = None, deadline: float | None = None,
                   metadata: Metadata | None = None) -> Any:
        """Call the bound service's handler directly (no bytes in between).

        The request and the reply meet the codec's checks as over a wire
        (:meth:`~nanomsg_kernel.codec.Codec.isolate`), and neither side shares a mutable
        value with the other: a request the encoder refuses raises ``EncodeError`` here, a
        reply it refuses is an ``INTERNAL`` error, and each side gets its own lists and dicts.
        ``metadata`` is checked and copied as the encoder would (``EncodeError`` for what a
        client would refuse to send); the handler reads it as ``ctx.metadata``.

        Errors are those a :class:`~nanomsg_kernel.client.Client` raises for the same
        outcome: ``TIMEOUT`` is :class:`DeadlineExceeded`, ``UNAVAILABLE`` is
        :class:`~nanomsg_kernel.errors.Unavailable`, any other status a ``RemoteError``.
        """
        codec = self.service.codec
        try:
            msg = codec.isolate(msg)
        except DecodeError as exc:  # what the service's decoder would answer
            raise RemoteError(exc.status, str(exc)) from None
        try:
            if metadata:
                reply = await self.service.dispatch(msg, deadline=_deadline_for(timeout, deadline),
                                                    metadata=codec.check_metadata(metadata), peer=self.peer)
            elif timeout is None and deadline is None:
                reply = await self.service.dispatch(msg, peer=self.peer)
            else:
                reply = await self.service.dispatch(msg, deadline=_deadline_for(timeout, deadline), peer=self.peer)
        except RemoteError as exc:
            mapped = caller_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        try:
            return codec.isolate(reply)
        except CodecError as exc:  # what the service answers for a reply it cannot encode
            raise RemoteError(Status.INTERNAL, f"reply could not be encoded: {exc}") from None

    async def publish(self, event: Any, *, metadata: Metadata | None = None) -> None:
        """Run the bound service's subscribers for ``event``."""
        codec = self.service.codec
        checked = codec.check_metadata(metadata) if metadata else EMPTY_METADATA
        await self.service.publish_local(codec.isolate(event), metadata=checked, peer=self.peer)

    def __repr__(self) -> str:
        return f"<LocalBinding {self.name!r} -> {self.service.name!r}>"


class RemoteBinding(Binding):
    """A binding to a service at a URL; connects on first use.

    Its calls pass through ``interceptors`` (a node gives a
    :class:`~nanomsg_kernel.metrics.ClientMetrics`, then those of the service that owns the
    binding: :attr:`Service.client_interceptors
    <nanomsg_kernel.service.Service.client_interceptors>`).
    """

    def __init__(self, name: str, url: str, *, interceptors: Iterable[ClientInterceptor] = (), **options: Any) -> None:
        self.name = name
        self.url = url
        self.options = options
        self.interceptors = tuple(interceptors)
        """The chain around each call through this binding, outermost first."""
        self._client: Client | None = None

    def _get_client(self) -> Client:
        if self._client is None:
            self._client = Client(None, self.url, interceptors=self.interceptors, service=self.name, **self.options)
        return self._client

    @overload
    async def call(self, msg: Request[R], *, timeout: float | None = None, deadline: float | None = None,
                   metadata: Metadata | None = None) -> R: ...
    @overload
    async def call(self, msg: M, *, timeout: float | None = None, deadline: float | None = None,
                   metadata: Metadata | None = None) -> M: ...
    async def call(self, msg: Any, *, timeout: float | None = None, deadline: float | None = None,
                   metadata: Metadata | None = None) -> Any:
        """Encode, send, wait for the reply (within the deadline) and decode it."""
        d = _deadline_for(timeout, deadline)
        if d is None:
            return await self._get_client().call(msg, metadata=metadata)
        left = d - asyncio.get_running_loop().time()
        if left <= 0:
            raise DeadlineExceeded("deadline passed before the call was sent")
        return await self._get_client().call(msg, timeout=left, metadata=metadata)

    async def publish(self, event: Any, *, metadata: Metadata | None = None) -> None:
        """Send ``event`` one-way to the URL."""
        await self._get_client().publish(event, metadata=metadata)

    async def close(self) -> None:
        """Close the connection, if one was made."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"<RemoteBinding {self.name!r} -> {self.url!r}>"


class Bindings(Mapping[str, Binding]):
    """The bindings a node gave one service, by name (attribute or item access)."""

    def __init__(self, bindings: Mapping[str, Binding]) -> None:
        self._bindings = dict(bindings)

    def _missing(self, name: str) -> CapabilityError:
        given = ", ".join(sorted(self._bindings)) or "none"
        return CapabilityError(f"no binding named {name!r} (this service was given: {given})")

    def __getattr__(self, name: str) -> Binding:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self.__dict__["_bindings"][name]  # type: ignore[no-any-return]
        except KeyError:
            raise self._missing(name) from None

    def __getitem__(self, name: str) -> Binding:
        try:
            return self._bindings[name]
        except KeyError:
            raise self._missing(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._bindings)

    def __len__(self) -> int:
        return len(self._bindings)

    def view(self, deadline: float | None) -> BindingsView:
        """These bindings, with calls bounded by ``deadline`` (a ``loop.time()``)."""
        return BindingsView(self, deadline)

    async def close(self) -> None:
        """Close every binding."""
        for b in self._bindings.values():
            await b.close()

    def __repr__(self) -> str:
        return f"Bindings({sorted(self._bindings)})"


class BindingsView:
    """Bindings as seen from inside one call: each call inherits the call's deadline."""

    __slots__ = ("_bindings", "_deadline")

    def __init__(self, bindings: Bindings, deadline: float | None) -> None:
        self._bindings = bindings
        self._deadline = deadline

    def __getattr__(self, name: str) -> _DeadlineBound:
        if name.startswith("__"):
            raise AttributeError(name)
        return _DeadlineBound(self._bindings[name], self._deadline)

    def __getitem__(self, name: str) -> _DeadlineBound:
        return _DeadlineBound(self._bindings[name], self._deadline)

    def __contains__(self, name: object) -> bool:
        return name in self._bindings

    def __iter__(self) -> Iterator[str]:
        return iter(self._bindings)


class _DeadlineBound:
    """One binding with an inherited deadline."""

    __slots__ = ("_binding", "_deadline")

    def __init__(self, binding: Binding, deadline: float | None) -> None:
        self._binding = binding
        self._deadline = deadline

    @overload
    async def call(self, msg: Request[R], *, timeout: float | None = None, metadata: Metadata | None = None) -> R: ...
    @overload
    async def call(self, msg: M, *, timeout: float | None = None, metadata: Metadata | None = None) -> M: ...
    async def call(self, msg: Any, *, timeout: float | None = None, metadata: Metadata | None = None) -> Any:
        """Call the bound service; the deadline is the earlier of ``timeout`` and the inherited one."""
        return await self._binding.call(msg, timeout=timeout, deadline=self._deadline, metadata=metadata)

    async def publish(self, event: Any, *, metadata: Metadata | None = None) -> None:
        """Send a one-way event to the bound service."""
        await self._binding.publish(event, metadata=metadata)

    @overload
    def call_sync(self, msg: Request[R], *, timeout: float | None = None, metadata: Metadata | None = None) -> R: ...
    @overload
    def call_sync(self, msg: M, *, timeout: float | None = None, metadata: Metadata | None = None) -> M: ...
    def call_sync(self, msg: Any, *, timeout: float | None = None, metadata: Metadata | None = None) -> Any:
        """:meth:`call`, from a sync handler's thread: the call runs on the event loop the
        request came from, and this thread waits for its reply (or error).

        Raises:
            RuntimeError: not in a sync handler's thread (on the loop, ``await call()``).
            Unavailable: the loop stopped or closed before the call ended.
        """
        return _on_handler_loop(self.call(msg, timeout=timeout, metadata=metadata), "call_sync")

    def publish_sync(self, event: Any, *, metadata: Metadata | None = None) -> None:
        """:meth:`publish`, from a sync handler's thread (as :meth:`call_sync` does)."""
        _on_handler_loop(self.publish(event, metadata=metadata), "publish_sync")


def _on_handler_loop(work: Coroutine[Any, Any, T], what: str) -> T:
    """Run ``work`` on the loop of the sync handler this thread runs, and wait for it."""
    loop = handler_loop()
    if loop is None:
        work.close()
        raise RuntimeError(
            f"{what}() is for sync handlers, in their own thread; on the event loop, await the async form"
        )
    try:
        done = asyncio.run_coroutine_threadsafe(work, loop)
    except RuntimeError as exc:  # the loop is closed
        work.close()
        raise Unavailable(f"cannot call through a binding: {exc}") from None
    try:
        return done.result()
    except concurrent.futures.CancelledError:
        raise Unavailable("the call through a binding was cancelled: its event loop is stopping") from None
