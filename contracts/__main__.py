"""``python -m contracts``: the example kernel's round trip, in-process and over ``inproc://``."""

from __future__ import annotations

import asyncio

from nanomsg_kernel import Client, RemoteError, Status
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, Echo, WorkType
from nanomsg_kernel.contracts.services import calc


async def _serve_and_call() -> list[str]:
    lines = []
    async with calc.serve("inproc://calc"), Client(CalcRoute, "inproc://calc") as client:
        done = await client.call(CalcWork(a=6, b=3, op=WorkType.DIV), timeout=1.0)
        lines.append(f"inproc://calc  CalcWork 6 / 3       -> result={done.result}")
        echo = await client.call(Echo(text="hello"), timeout=1.0)
        lines.append(f"inproc://calc  Echo 'hello'         -> reply={echo.reply!r}")
        try:
            await client.call(CalcWork(a=1, b=0, op=WorkType.DIV), timeout=1.0)
        except RemoteError as exc:
            if exc.status is not Status.BAD_REQUEST:
                raise
            lines.append(f"inproc://calc  CalcWork 1 / 0       -> {exc.status.name}: {exc.message}")
    return lines


def main() -> None:
    """Encode and decode a frame, then call the example service over ``inproc://``."""
    codec = CalcRoute.codec()
    work = CalcWork(a=1, b=2, op=WorkType.SUM)
    frame = codec.encode(work, correlation_id=7)
    assert codec.decode(frame) == work
    print(f"frame of {len(frame)} bytes: {frame.hex(' ')}")
    print(f"decoded: {codec.decode(frame)!r}")
    for line in asyncio.run(_serve_and_call()):
        print(line)
    print(calc.metrics.summary())


if __name__ == "__main__":
    main()
