"""A CPU-bound service served by worker processes behind one ZeroMQ endpoint.

Run it with ``python examples/workers_node.py``. It serves ``burn`` over ``zmq+tcp://`` on a
free port of 127.0.0.1 with ``workers=2`` (two processes, so that the work uses two cores),
sends eight calls at once and prints which process answered each::

    workers: [41022, 41023]
    worker 41022: 4 of 8 calls
    worker 41023: 4 of 8 calls

(ZeroMQ spreads the calls over the workers that are connected when they are sent.)
The workers import the service from ``"module:attribute"`` (``burn.locate()``), so the
service is a module-level attribute and the program starts under an
``if __name__ == "__main__":`` guard: worker processes are started with ``spawn``, which
imports this file again.
"""

from __future__ import annotations

import asyncio
import os

from nanomsg_kernel import Client, RoutingEnum, Service, contract, evolve
from nanomsg_kernel.transports.zmq import ZmqListener


class BurnRoute(RoutingEnum):
    """The kernel of the example: one contract."""

    BURN = 1


@contract(BurnRoute.BURN)
class Burn:
    """Sum the squares below ``n``; the reply carries the ``total`` and the worker's ``pid``."""

    n: int
    total: int | None = None
    pid: int | None = None


burn = Service("burn", BurnRoute)


@burn.handler(Burn)
async def burn_cpu(msg: Burn) -> Burn:
    """CPU-bound work: one core for as long as it takes."""
    return evolve(msg, total=sum(i * i for i in range(msg.n)), pid=os.getpid())


async def main() -> None:
    """Serve ``burn`` with two workers and send it eight calls at once."""
    async with burn.serve("zmq+tcp://127.0.0.1:0", workers=2) as listener:
        assert isinstance(listener, ZmqListener)  # zmq+tcp:// URLs are served by ZmqListener
        print(f"workers: {sorted(listener.worker_pids)}")
        async with Client(BurnRoute, listener.url) as client:
            calls = [client.call(Burn(n=200_000), timeout=30.0) for _ in range(8)]
            replies: list[Burn] = await asyncio.gather(*calls)
        assert all(r.total == sum(i * i for i in range(200_000)) for r in replies)
        for pid in sorted({r.pid for r in replies}, key=str):
            print(f"worker {pid}: {sum(r.pid == pid for r in replies)} of 8 calls")


if __name__ == "__main__":
    asyncio.run(main())
