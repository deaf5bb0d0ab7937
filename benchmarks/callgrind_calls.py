"""Objects to count the instructions of a call with valgrind's callgrind: a codec, a request
frame, an ``inproc://`` client of a served service, and a local binding.

Import it as the setup of a callgrind run and repeat one statement N times; subtract the
same run with N = 0 (start-up and this setup) and the cost of an empty statement. For
example::

    valgrind --tool=callgrind python -c "from benchmarks.callgrind_calls import *
    for _ in range(4000): call()"

Statements: ``codec.decode_request(frame)`` (a server reading a request),
``codec.encode(msg, correlation_id=CID)``, ``codec.decode(frame)``, ``call()`` (an
``inproc://`` round trip through a client) and ``binding_call()`` (a local binding).
The garbage collector is off after the setup, so that its passes over the heap (whose size
differs between versions) do not blur the counts; run-to-run spread stays a few percent.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from nanomsg_kernel import Client, Node, Service
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType

__all__ = ["CID", "binding_call", "call", "codec", "frame", "msg"]

CID = 6177954717958356587
codec = CalcRoute.codec()
msg = CalcWork(a=1, b=2, op=WorkType.SUM)
frame = codec.encode(msg, correlation_id=CID, timeout_ms=1000)

_served = Service("callgrind-served", CalcRoute)
_back = Service("callgrind-back", CalcRoute)
_front = Service("callgrind-front", CalcRoute)


async def _echo(w: CalcWork) -> CalcWork:
    return w


_served.add_handler(CalcWork, _echo)
_back.add_handler(CalcWork, _echo)
_loop = asyncio.new_event_loop()
asyncio.set_event_loop(_loop)
_listener = _served.serve("inproc://callgrind")
_loop.run_until_complete(_listener.start())
_client = Client(CalcRoute, "inproc://callgrind")
_loop.run_until_complete(_client.connect())
_node = Node("callgrind")
_node.add(_back)
_node.add(_front, bindings={"back": _back})
_node.wire()
_binding = _front.bindings["back"]


def call() -> Any:
    """One ``inproc://`` call through the client, on the loop."""
    return _loop.run_until_complete(_client.call(msg))


def binding_call() -> Any:
    """One call through a local binding (its handler does not wait: one step, no loop)."""
    step = _binding.call(msg)
    try:
        step.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the binding call waited")


for _ in range(200):
    call()
    binding_call()
gc.collect()
gc.disable()
