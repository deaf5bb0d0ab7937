"""A blocking client for scripts and notebooks: :class:`Client` on an event loop of its own thread.

::

    with SyncClient(CalcRoute, "tcp://127.0.0.1:7000", timeout=2.0) as client:
        done = client.call(CalcWork(a=6, b=3, op=WorkType.DIV))
        client.publish(CalcDone(work=1, result=2))

Each call runs :meth:`Client.call <nanomsg_kernel.client.Client.call>` on the client's loop
thread and waits for it, so it behaves exactly as the async client does: the same
timeouts (carried in the request), the same ``CANCEL`` when the caller gives up (an
interrupted wait, Ctrl-C in a notebook, cancels the call), and the same errors,
:class:`~nanomsg_kernel.errors.RemoteError`,
:class:`~nanomsg_kernel.errors.DeadlineExceeded` and
:class:`~nanomsg_kernel.errors.Unavailable`. It may be called from any thread, also one
that runs an event loop of its own (a notebook's), except its own loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload

from nanomsg_kernel.client import Client
from nanomsg_kernel.errors import ConfigError
from nanomsg_kernel.frame import DEFAULT_MAX_BODY

if TYPE_CHECKING:
    from nanomsg_kernel.contract import Request
    from nanomsg_kernel.routing import RoutingEnum

__all__ = ["SyncClient"]

M = TypeVar("M")
R = TypeVar("R")
T = TypeVar("T")


class SyncClient:
    """A :class:`~nanomsg_kernel.client.Client` with blocking methods, for code without an
    event loop. Use it as a context manager, or :meth:`close` it.

    Args:
        routes: the kernel's routing enum (``None``: any kernel, as for :class:`Client`).
        url: where the service listens.
        timeout: default per-call timeout in seconds (``None``: wait as long as it takes).
        max_body_size: largest body sent or accepted.
        **options: passed to the transport's ``connect``.
    """

    def __init__(
        self,
        routes: type[RoutingEnum] | None,
        url: str,
        *,
        timeout: float | None = None,
        max_body_size: int = DEFAULT_MAX_BODY,
        **options: Any,
    ) -> None:
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"SyncClient {url}", daemon=True)
        self._thread.start()
        self._closed = False

        async def make() -> Client:
            return Client(routes, url, timeout=timeout, max_body_size=max_body_size, **options)

        try:
            self._client: Client = self._wait(make())
        except BaseException:
            self._stop()
            raise

    def __repr__(self) -> str:
        return f"<SyncClient {self.url!r}{' closed' if self._closed else ''}>"

    @property
    def client(self) -> Client:
        """The async client underneath (use it only on :attr:`loop`)."""
        return self._client

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the client runs on, in its own thread."""
        return self._loop

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the client's loop and wait for its result; an interrupted wait
        cancels it (a call then sends ``CANCEL``)."""
        if self._closed:
            coro.close()
            raise ConfigError(f"{self!r} is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise ConfigError("a SyncClient cannot be called from its own loop's thread (it would wait for itself)")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise asyncio.CancelledError() from None
        except BaseException:
            future.cancel()
            raise

    def connect(self) -> None:
        """Connect now (the first call or publish also connects); ``Unavailable`` if the
        service cannot be reached."""
        self._wait(self._client.connect())

    @overload
    def call(self, msg: Request[R], *, timeout: float | None = None) -> R: ...
    @overload
    def call(self, msg: M, *, timeout: float | None = None) -> M: ...
    def call(self, msg: Any, *, timeout: float | None = None) -> Any:
        """Send ``msg`` as a request and return the reply: :meth:`Client.call
        <nanomsg_kernel.client.Client.call>`, blocking (the same errors)."""
        return self._wait(self._client.call(msg, timeout=timeout))

    def publish(self, event: Any) -> None:
        """Send ``event`` one-way: :meth:`Client.publish <nanomsg_kernel.client.Client.publish>`."""
        self._wait(self._client.publish(event))

    def close(self) -> None:
        """Close the connection and stop the loop thread (calls waiting fail with
        ``Unavailable``). Closing twice does nothing."""
        if self._closed:
            return
        try:
            self._wait(self._client.close())
        finally:
            self._stop()

    def _run(self) -> None:
        """The loop thread: run the loop until stopped, then end what is left and close it."""
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _stop(self) -> None:
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
