"""A partition between a service and its NATS server: the service's link is delayed, then
cut, then given back. Calls meet their deadlines or fail clearly, none hangs, and they go on
once the link returns.

The link is a TCP relay on loopback between the service's process and the nats-server
(:class:`Link`): it forwards both ways, each chunk after ``delay`` seconds, and while cut it
holds what it reads without closing anything, as a network that drops packets does to TCP
(whose retransmissions deliver them, late, once the path is back). Network namespaces with
``tc netem`` would do the same below TCP, but need root and a kernel with the netem qdisc,
which the test machines do not all have; the relay needs neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from natsserver import NatsServer
from test_nats import instance

from nanomsg_kernel import Client
from nanomsg_kernel.contracts.calc import CalcRoute, Echo
from nanomsg_kernel.errors import ServiceError


class Link:
    """A TCP relay from 127.0.0.1 (port 0) to ``target``: delayed, cut and given back at will."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.delay = 0.0
        self.open = asyncio.Event()
        self.open.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                if self.delay:
                    await asyncio.sleep(self.delay)  # the link's latency, on purpose
                await self.open.wait()  # cut: held, not dropped, not closed
                dst.write(data)
                await dst.drain()
        dst.close()

    async def close(self) -> None:
        self.open.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()


async def phase(client: Client, timeout: float, count: int) -> tuple[dict[str, int], float]:
    """``count`` calls one after the other: what each did, and the longest one took."""
    outcomes: dict[str, int] = {}
    longest = 0.0
    for _ in range(count):
        began = time.monotonic()
        try:
            await asyncio.wait_for(client.call(Echo(text="p"), timeout=timeout), timeout + 5)  # a hang would show
            kind = "ok"
        except ServiceError as exc:  # DeadlineExceeded is a TimeoutError too: first
            kind = type(exc).__name__
        except TimeoutError:
            kind = "hung"
        longest = max(longest, time.monotonic() - began)
        outcomes[kind] = outcomes.get(kind, 0) + 1
    return outcomes, longest


async def test_a_partition_delays_then_cuts_then_gives_back_the_service_link(nats_server: NatsServer) -> None:
    link = Link(nats_server.port)
    await link.start()
    try:
        # the relay runs on this loop: wait for the instance's readiness in a thread
        service = instance(f"nats://127.0.0.1:{link.port}/calc.partition")
        await asyncio.to_thread(service.__enter__)
        try:
            async with Client(CalcRoute, f"nats://{nats_server.address}/calc.partition") as client:
                before, _ = await phase(client, 1.0, 10)
                assert before == {"ok": 10}
                link.delay = 0.15  # each way
                slow, longest = await phase(client, 2.0, 4)
                assert slow == {"ok": 4} and longest >= 0.3
                late, longest = await phase(client, 0.1, 4)
                assert late == {"DeadlineExceeded": 4} and longest < 1.0
                link.delay = 0.0
                link.open.clear()  # cut
                cut, longest = await phase(client, 0.5, 6)
                assert cut == {"DeadlineExceeded": 6} and longest < 1.5
                link.open.set()  # back
                began = time.monotonic()
                async with asyncio.timeout(15):
                    while (await phase(client, 1.0, 1))[0] != {"ok": 1}:
                        pass
                assert time.monotonic() - began < 15
                after, _ = await phase(client, 1.0, 10)
                assert after == {"ok": 10}
        finally:
            service.__exit__(None, None, None)
    finally:
        await link.close()
