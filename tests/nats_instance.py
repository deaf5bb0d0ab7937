"""One service instance in a process of its own, for the nats:// tests that kill one.

``python tests/nats_instance.py URL`` serves ``Echo`` at URL (replying with its process id)
and prints ``ready`` once subscribed; it runs until it is killed.
"""

from __future__ import annotations

import asyncio
import os
import sys

from nanomsg_kernel import Service, evolve
from nanomsg_kernel.contracts.calc import CalcRoute, Echo

instance = Service("instance", CalcRoute)


@instance.handler(Echo)
async def echo(msg: Echo) -> Echo:
    """Reply after a short wait (so that calls are in flight when the process is killed)."""
    await asyncio.sleep(0.005)
    return evolve(msg, reply=str(os.getpid()))


async def main(url: str) -> None:
    async with instance.serve(url):
        print("ready", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
