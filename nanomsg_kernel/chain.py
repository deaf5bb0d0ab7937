"""The machinery of an interceptor chain: compiled once, run on each call (see
:mod:`nanomsg_kernel.interceptors` for what an interceptor is)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from nanomsg_kernel.deadlines import GRAIN
from nanomsg_kernel.errors import ServiceError, Status

__all__ = ["Chain", "Proceed", "status_of"]

Proceed = Callable[[Any], Awaitable[Any]]
"""What ``around`` is given: ``await proceed(msg)`` runs the rest of the chain."""

C = TypeVar("C")
_clock = time.perf_counter
_CANCELLED, _INTERNAL, _TIMEOUT, _OK = Status.CANCELLED, Status.INTERNAL, Status.TIMEOUT, Status.OK


def status_of(exc: BaseException, deadline: float | None = None) -> Status:
    """The status a call that raised ``exc`` ends with: a ``ServiceError``'s own (a
    :class:`~nanomsg_kernel.errors.RemoteError` too), ``CANCELLED`` for a cancellation
    (``TIMEOUT`` if ``deadline``, a ``loop.time()``, has passed), ``INTERNAL`` otherwise."""
    if isinstance(exc, ServiceError):
        return exc.status
    if isinstance(exc, asyncio.CancelledError):
        if deadline is not None and asyncio.get_running_loop().time() >= deadline - GRAIN:
            return _TIMEOUT
        return _CANCELLED
    return _INTERNAL


def _overrides(obj: object, base: type, name: str) -> bool:
    return getattr(type(obj), name, None) is not getattr(base, name)


class Chain(Generic[C]):
    """Interceptors compiled once for the call path: the hooks each overrides, in the order
    they run. ``C`` is what they see of the call (a context or a :class:`ClientCall`)."""

    __slots__ = ("afters", "afters_ok", "afters_upto", "befores", "interceptors", "layers", "nested")

    def __init__(self, interceptors: Iterable[Any], base: type) -> None:
        self.interceptors: tuple[Any, ...] = tuple(interceptors)
        for i in self.interceptors:
            if not isinstance(i, base):
                raise TypeError(f"an interceptor here must be a {base.__name__}, got {type(i).__name__}")
        self.befores: tuple[tuple[int, Callable[[Any, C], None]], ...] = tuple(
            (index, i.before) for index, i in enumerate(self.interceptors) if _overrides(i, base, "before")
        )
        """The ``before`` hooks in the order they run, each with its interceptor's index."""
        self.afters_upto: tuple[tuple[Callable[..., None], ...], ...] = tuple(
            tuple(i.after for i in reversed(self.interceptors[:index + 1]) if _overrides(i, base, "after"))
            for index in range(len(self.interceptors))
        )
        """For each interceptor, the ``after`` hooks of those up to it, in the order they run."""
        self.afters = self.afters_upto[-1] if self.interceptors else ()
        """Every ``after`` hook, in the order they run (innermost first)."""
        self.afters_ok: tuple[Callable[..., None], ...] = tuple(
            i.after for i in reversed(self.interceptors)
            if _overrides(i, base, "after") and not getattr(i, "errors_only", False)
        )
        """The ``after`` hooks a call that ended ``OK`` runs (those not ``errors_only``)."""
        self.nested = any(_overrides(i, base, "around") for i in self.interceptors)
        """Whether some interceptor wraps the call (then each one is a layer around the next)."""
        self.layers: tuple[tuple[Any, Any, Any], ...] = tuple(
            (
                i.before if _overrides(i, base, "before") else None,
                i.around if _overrides(i, base, "around") else None,
                i.after if _overrides(i, base, "after") else None,
            )
            for i in self.interceptors
        )

    @property
    def timed(self) -> bool:
        """Whether an ``after`` hook wants the call's duration."""
        return bool(self.afters)

    def enter(self, msg: Any, call: C, started: float, deadline: float | None = None) -> BaseException | None:
        """Run the ``before`` hooks. When one raises, the call ends there: the ``after`` hooks
        of the interceptors entered so far run (that one's included), and the error the call
        ends with is returned. ``None``: every hook let the call through."""
        for index, before in self.befores:
            try:
                before(msg, call)
            except Exception as exc:
                return self._after(self.afters_upto[index], msg, call, status_of(exc, deadline), started, exc,
                                   deadline)
        return None

    def finish(self, msg: Any, call: C, status: Status, started: float, error: BaseException | None,
               deadline: float | None = None) -> BaseException | None:
        """Run the ``after`` hooks (innermost first); returns the error the call ends with (one
        an ``after`` hook raised replaces the one before)."""
        seconds = _clock() - started
        for after in self.afters:  # (the loop of _after, inline: this runs on every call)
            try:
                after(msg, call, status, seconds, error)
            except Exception as exc:
                error, status = exc, status_of(exc, deadline)
        return error

    def finish_ok(self, msg: Any, call: C, started: float, deadline: float | None = None) -> BaseException | None:
        """:meth:`finish` for a call that ended ``OK``: only the hooks of :attr:`afters_ok`."""
        seconds = _clock() - started
        error: BaseException | None = None
        status = _OK
        for after in self.afters_ok:
            try:
                after(msg, call, status, seconds, error)
            except Exception as exc:
                error, status = exc, status_of(exc, deadline)
        return error

    @staticmethod
    def _after(afters: tuple[Callable[..., None], ...], msg: Any, call: Any, status: Status, started: float,
               error: BaseException | None, deadline: float | None) -> BaseException | None:
        seconds = _clock() - started
        for after in afters:
            try:
                after(msg, call, status, seconds, error)
            except Exception as exc:
                error, status = exc, status_of(exc, deadline)
        return error

    async def run(self, msg: Any, call: C, innermost: Proceed, deadline: float | None = None) -> Any:
        """Run the whole chain around ``innermost`` (each interceptor a layer around the next)."""
        layers = self.layers
        started = _clock()

        def layer(index: int) -> Proceed:
            if index == len(layers):
                return innermost
            before, around, after = layers[index]
            inner = layer(index + 1)

            async def step(m: Any) -> Any:
                if after is None:
                    if before is not None:
                        before(m, call)
                    return await (inner(m) if around is None else around(m, call, inner))
                try:
                    if before is not None:
                        before(m, call)
                    reply = await (inner(m) if around is None else around(m, call, inner))
                except BaseException as exc:
                    after(m, call, status_of(exc, deadline), _clock() - started, exc)
                    raise
                after(m, call, _OK, _clock() - started, None)
                return reply

            return step

        return await layer(0)(msg)
