"""The TCP transport on both event loops: asyncio's and uvloop's (an optional extra)."""

from __future__ import annotations

import asyncio

import pytest

from nanomsg_kernel.client import Client
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType
from nanomsg_kernel.contracts.services import calc
from nanomsg_kernel.transports.loop import loop_name, new_event_loop, run, uvloop_available


async def _calls() -> str:
    async with calc.serve("tcp://127.0.0.1:0") as listener, Client(CalcRoute, listener.url) as client:
        results = await asyncio.gather(
            *(client.call(CalcWork(a=i, b=1, op=WorkType.SUM), timeout=5.0) for i in range(200)))
        assert [r.result for r in results] == [i + 1 for i in range(200)]
    return loop_name()


def test_asyncio_loop_when_uvloop_is_not_wanted() -> None:
    assert run(_calls(), prefer_uvloop=False) == "asyncio"


def test_uvloop_when_installed_and_wanted() -> None:
    pytest.importorskip("uvloop", reason="uvloop is an optional extra")
    assert uvloop_available()
    assert run(_calls(), prefer_uvloop=True) == "uvloop"
    loop = new_event_loop(prefer_uvloop=True)
    try:
        assert loop_name(loop) == "uvloop"
    finally:
        loop.close()
