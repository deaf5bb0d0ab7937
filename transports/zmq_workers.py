"""``workers=N``: N worker processes behind one ZeroMQ endpoint, so a service uses every core.

The listening process runs two ZeroMQ proxies (``zmq.proxy_steerable``, in threads: C code,
no Python on the path of a message) and supervises the workers::

    clients' DEALERs -> ROUTER (the URL) ==proxy==> DEALER (ipc, private) -> workers' ROUTERs
    clients' XPUBs   -> SUB (events)     ==proxy==> PUSH   (ipc, private) -> workers' PULLs

The backend ``DEALER`` spreads requests over the workers round-robin and puts the client's
identity in front of each frame; a worker's ``ROUTER`` sees ``[proxy, client, frame]`` and
sends the reply back along the same envelope. Events go to exactly one worker each.

Workers are started with the ``spawn`` method (never ``fork`` from a running event loop):
each imports the service from ``service.locate()`` (``"module:attribute"``) and serves it.
The supervisor starts a worker again when it dies (back-off up to 5 s). On close, workers
are asked to finish their requests within the grace period, then killed if still alive; a
worker whose parent dies stops by itself, so no process is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

import zmq

from nanomsg_kernel.errors import ConfigError, TransportError
from nanomsg_kernel.transports.base import FrameHandler
from nanomsg_kernel.transports.zmq_endpoints import Endpoint, public_url
from nanomsg_kernel.transports.zmq_options import ListenOptions, configure
from nanomsg_kernel.transports.zmq_peers import PeerLimit
from nanomsg_kernel.transports.zmq_security import ServerCurve
from nanomsg_kernel.transports.zmq_server import DRAIN_SECONDS, FrameServer
from nanomsg_kernel.transports.zmq_socket import last_endpoint

__all__ = ["WorkerFarm", "WorkerSpec", "load_handler", "worker_main"]

log = logging.getLogger("nanomsg_kernel.transports.zmq")
_proxy_ids = itertools.count(1)
_MAX_RESPAWN_DELAY = 5.0
_STABLE_AFTER = 10.0
_CONNECT_WAIT_MS = 10_000
"""How long a starting worker waits for its connection to the proxy before saying ready."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to serve (pickled to the child)."""

    target: str
    requests: str
    events: str | None
    max_in_flight: int
    max_frame: int
    hwm: int
    reply_timeout: float
    max_held_bytes: int
    max_held_bytes_per_client: int
    uvloop: bool
    private_dir: str | None
    """The directory of the ipc endpoints: removed by the workers if the parent dies."""


def load_handler(target: str) -> FrameHandler:
    """Import ``"module:attribute"``: a service (its ``handle_frame``) or a frame handler."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"bad service location {target!r}: expected 'module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    handler = getattr(obj, "handle_frame", obj)
    if not callable(handler):
        raise ConfigError(f"{target!r} is neither a service nor a frame handler")
    return handler  # type: ignore[no-any-return]


def locate_handler(handler: FrameHandler) -> str:
    """Where a worker process can import ``handler`` from (``service.locate()``)."""
    owner = getattr(handler, "__self__", None)
    locate = getattr(owner, "locate", None)
    if locate is not None:
        return str(locate())
    module, name = getattr(handler, "__module__", None), getattr(handler, "__qualname__", "")
    if module and name and "<" not in name and module != "__main__":
        return f"{module}:{name}"
    raise ConfigError(
        "workers=N needs a handler that worker processes can import: a Service's handle_frame "
        "(the service a module-level attribute) or a module-level function"
    )


# -- the worker process ------------------------------------------------------------------------


def worker_main(spec: WorkerSpec, conn: multiprocessing.connection.Connection) -> None:
    """Entry point of a worker process: load the service and serve until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        handler = load_handler(spec.target)
    except BaseException as exc:
        conn.send(("error", f"cannot load {spec.target!r}: {type(exc).__name__}: {exc}"))
        return
    if spec.uvloop:
        import uvloop

        uvloop.run(_serve(handler, spec, conn))
    else:
        asyncio.run(_serve(handler, spec, conn))


async def _serve(handler: FrameHandler, spec: WorkerSpec, conn: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[float] = loop.create_future()
    orphaned = False

    def on_parent() -> None:
        nonlocal orphaned
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            msg, orphaned = ("stop", 0.0), True
        if msg[0] == "stop" and not stop.done():
            stop.set_result(float(msg[1]))

    loop.add_reader(conn.fileno(), on_parent)
    ctx: zmq.Context[Any] = zmq.Context()
    sockets: list[zmq.Socket[Any]] = []
    server = FrameServer(handler, max_in_flight=spec.max_in_flight, max_frame=spec.max_frame,
                         reply_timeout=spec.reply_timeout, max_held_bytes=spec.max_held_bytes,
                         max_held_bytes_per_client=spec.max_held_bytes_per_client)
    try:
        router = ctx.socket(zmq.ROUTER)
        sockets.append(router)
        router.sndhwm = router.rcvhwm = spec.hwm
        router.maxmsgsize = spec.max_frame
        router.router_mandatory = 1
        # "ready" once the proxy can hand this worker requests: its DEALER spreads them over
        # the connections that are up, so a worker still connecting would get none.
        handshake = router.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        router.connect(spec.requests)
        try:
            await asyncio.to_thread(handshake.poll, _CONNECT_WAIT_MS)
        finally:
            router.disable_monitor()
            handshake.close(0)
        server.serve_requests(router)
        if spec.events is not None:
            pull = ctx.socket(zmq.PULL)
            sockets.append(pull)
            pull.rcvhwm = spec.hwm
            pull.maxmsgsize = spec.max_frame
            pull.connect(spec.events)
            server.serve_events(pull)
        conn.send(("ready", os.getpid()))
        grace = await stop
        loop.remove_reader(conn.fileno())
        await server.close(grace)
    finally:
        for sock in sockets:
            sock.close(linger=1000)
        ctx.term()
        if orphaned and spec.private_dir is not None:  # nobody else will clean up
            shutil.rmtree(spec.private_dir, ignore_errors=True)


# -- the supervising side ----------------------------------------------------------------------


class _Proxy:
    """``zmq.proxy_steerable(frontend, backend)`` in a thread, stopped with ``TERMINATE``."""

    def __init__(self, ctx: zmq.Context[Any], frontend: zmq.Socket[Any], backend: zmq.Socket[Any]) -> None:
        address = f"inproc://nanomsg-kernel-proxy-{next(_proxy_ids)}"
        self._sockets = (frontend, backend)
        self._control = ctx.socket(zmq.PAIR)
        self._control.linger = 0
        self._control.bind(address)
        self._thread_control = ctx.socket(zmq.PAIR)
        self._thread_control.linger = 0
        self._thread_control.connect(address)
        self._thread = threading.Thread(target=self._run, name=f"zmq proxy {address}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(*self._sockets, None, self._thread_control)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ETERM:
                log.error("ZeroMQ proxy stopped: %s", exc)

    async def stop(self) -> None:
        """Terminate the proxy and close its sockets."""
        with contextlib.suppress(zmq.ZMQError):
            self._control.send(b"TERMINATE")
        await asyncio.to_thread(self._thread.join, 10.0)
        if self._thread.is_alive():  # pragma: no cover - the proxy ignored TERMINATE
            log.error("ZeroMQ proxy did not stop")
            return
        for sock in (*self._sockets, self._thread_control, self._control):
            sock.close(linger=0 if sock is self._control or sock is self._thread_control else 500)


class _Worker:
    """One worker process and the futures that follow its life."""

    def __init__(self, process: Any, conn: multiprocessing.connection.Connection) -> None:
        loop = asyncio.get_running_loop()
        self.process = process
        self.conn = conn
        self.pid: int = process.pid
        self.started = loop.time()
        self.ready: asyncio.Future[int] = loop.create_future()
        self.exited: asyncio.Future[int | None] = loop.create_future()
        self._loop = loop
        loop.add_reader(conn.fileno(), self._on_message)
        loop.add_reader(process.sentinel, self._on_exit)

    def _on_message(self) -> None:
        try:
            kind, value = self.conn.recv()
        except (EOFError, OSError):
            self._loop.remove_reader(self.conn.fileno())
            return
        if self.ready.done():
            return
        if kind == "ready":
            self.ready.set_result(int(value))
        else:
            self.ready.set_exception(ConfigError(f"worker process {self.pid} could not start: {value}"))

    def _on_exit(self) -> None:
        self._loop.remove_reader(self.process.sentinel)
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self.conn.fileno())
        self._reap()

    def _reap(self) -> None:
        # The sentinel closes a moment before the process can be waited for: retry shortly.
        self.process.join(0)
        code = self.process.exitcode
        if code is None:
            self._loop.call_later(0.002, self._reap)
            return
        if not self.ready.done():
            self.ready.set_exception(TransportError(f"worker process {self.pid} exited with code {code} while starting"))
        if not self.exited.done():
            self.exited.set_result(code)
        self.conn.close()

    def stop(self, grace: float) -> None:
        """Ask the worker to finish within ``grace`` seconds and exit."""
        if not self.exited.done():
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(("stop", grace))


class WorkerFarm:
    """Binds the endpoint, runs the proxies, and keeps ``count`` workers alive."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: Endpoint, opts: ListenOptions, target: str,
                 prefixes: list[bytes], curve: ServerCurve | None) -> None:
        self._ctx = ctx
        self._endpoint = endpoint
        self._opts = opts
        self._target = target
        self._prefixes = prefixes
        self._curve = curve
        self._proxies: list[_Proxy] = []
        self._workers: list[_Worker] = []
        self._respawns: set[asyncio.Task[None]] = set()
        self._dir: str | None = None
        self._spec: WorkerSpec | None = None
        self._closing = False
        self._mp = multiprocessing.get_context("spawn")
        self.restarts = 0
        """Workers started again after dying."""
        self.bound: list[str] = []
        self.limits: list[PeerLimit] = []
        """The peer cap of each public socket (watched from this process's event loop)."""
        """The public addresses bound (the private ones live in a directory of their own)."""

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers that are serving."""
        return [w.pid for w in self._workers
                if w.ready.done() and not w.ready.exception() and not w.exited.done()]

    def _private_address(self, name: str) -> str:
        if zmq.has("ipc") and sys.platform != "win32":
            assert self._dir is not None
            return f"ipc://{self._dir}/{name}"
        return "tcp://127.0.0.1:*"

    def _bind(self, kind: int, address: str, *, public: bool) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = self._ctx.socket(kind)
        try:
            if public:
                configure(sock, self._opts, ipv6=address.startswith("tcp://["))
                if self._curve is not None:
                    self._curve.apply(sock)
            else:
                sock.sndhwm = sock.rcvhwm = self._opts.hwm
                sock.linger = 0
            sock.bind(address)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise ConfigError(f"cannot bind {address}: {exc}") from None
        if public:
            self.bound.append(address)
            self.limits.append(PeerLimit(sock, self._opts.max_peers, last_endpoint(sock), self._opts.budget()))
        return sock

    async def start(self) -> str:
        """Bind, start the proxies and the workers; return the public URL."""
        self._dir = tempfile.mkdtemp(prefix="nanomsg-kernel-")
        opened: list[zmq.Socket[Any]] = []
        try:
            frontend = self._bind(zmq.ROUTER, self._endpoint.requests, public=True)
            opened.append(frontend)
            backend = self._bind(zmq.DEALER, self._private_address("requests"), public=False)
            opened.append(backend)
            events_url = events_backend = None
            if self._prefixes:
                sub = self._bind(zmq.SUB, self._endpoint.events, public=True)
                opened.append(sub)
                for prefix in self._prefixes:
                    sub.subscribe(prefix)
                push = self._bind(zmq.PUSH, self._private_address("events"), public=False)
                opened.append(push)
                events_url = last_endpoint(sub)
                events_backend = last_endpoint(push)
            url = public_url(last_endpoint(frontend), events_url)
            loop_module = type(asyncio.get_running_loop()).__module__
            self._spec = WorkerSpec(
                target=self._target, requests=last_endpoint(backend), events=events_backend,
                max_in_flight=self._opts.max_in_flight, max_frame=self._opts.max_frame, hwm=self._opts.hwm,
                reply_timeout=self._opts.reply_timeout, max_held_bytes=self._opts.max_held_bytes,
                max_held_bytes_per_client=self._opts.max_held_bytes_per_client, uvloop=loop_module.startswith("uvloop"),
                private_dir=self._dir,
            )
            self._proxies.append(_Proxy(self._ctx, frontend, backend))
            if self._prefixes:
                self._proxies.append(_Proxy(self._ctx, sub, push))
            opened.clear()
            starting = [await self._spawn() for _ in range(self._opts.workers)]
            async with asyncio.timeout(self._opts.start_timeout):
                await asyncio.gather(*(w.ready for w in starting))
        except BaseException as exc:
            for sock in opened:
                sock.close(0)
            await self.close(0.0)
            if isinstance(exc, TimeoutError):
                raise TransportError(f"worker processes did not start within {self._opts.start_timeout}s") from None
            raise
        return url

    async def _spawn(self) -> _Worker:
        assert self._spec is not None
        parent_conn, child_conn = self._mp.Pipe(duplex=True)
        process = self._mp.Process(target=worker_main, args=(self._spec, child_conn), daemon=True,
                                   name=f"nanomsg-kernel worker of {self._target}")
        try:
            await asyncio.to_thread(process.start)
        finally:
            child_conn.close()
        worker = _Worker(process, parent_conn)
        self._workers.append(worker)
        worker.exited.add_done_callback(lambda _f: self._on_exit(worker))
        return worker

    def _on_exit(self, worker: _Worker) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
        if self._closing or not self._opts.respawn:
            return
        lived = asyncio.get_running_loop().time() - worker.started
        log.warning("worker process %d of %s exited with code %s after %.1fs; starting another",
                    worker.pid, self._target, worker.exited.result(), lived)
        delay = 0.05 if lived > _STABLE_AFTER else min(_MAX_RESPAWN_DELAY, 0.05 * 2 ** min(self.restarts, 7))
        task = asyncio.get_running_loop().create_task(self._respawn(delay))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _respawn(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._closing:
            return
        self.restarts += 1
        worker = await self._spawn()
        try:
            await worker.ready
        except Exception as exc:
            log.error("a new worker process of %s failed: %s", self._target, exc)

    async def close(self, grace: float) -> None:
        """Stop the workers (after ``grace`` seconds for their requests), then the proxies."""
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        for task in list(self._respawns):
            task.cancel()
        if self._respawns:
            await asyncio.wait(set(self._respawns))
        workers = list(self._workers)
        for w in workers:
            w.stop(grace)
        exits = [w.exited for w in workers]
        if exits:
            _done, pending = await asyncio.wait(exits, timeout=grace + 5.0)
            for w in workers:
                if not w.exited.done():
                    log.warning("worker process %d did not stop; killing it", w.pid)
                    w.process.kill()
            if pending:
                await asyncio.wait(pending, timeout=10.0)
            # Let clients read the last replies before their connections close.
            await asyncio.sleep(max(0.0, min(DRAIN_SECONDS, deadline - loop.time())))
        for limit in self.limits:
            limit.close(disable=False)  # the proxy thread owns the socket
        self.limits.clear()
        for proxy in self._proxies:
            await proxy.stop()
        self._proxies.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
