"""Whether the compiled extension (``nanomsg_kernel._speedups``) is active.

It is built by ``pip install .`` where a C compiler exists; without one the package runs on
its pure-Python reference code. ``NANOMSG_KERNEL_PURE=1`` in the environment forces the pure
code. The codec (:mod:`nanomsg_kernel.compiled`) and contracts' ``evolve``
(:mod:`nanomsg_kernel.contract`) use :data:`speedups` when it is not ``None``.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any

import msgpack

from nanomsg_kernel.types import Raw

__all__ = ["REASON", "speedups"]

speedups: Any = None
"""The compiled module, or ``None`` when the pure code is active."""
REASON = ""
"""Why the pure code is active (empty when the compiled one is)."""
if os.environ.get("NANOMSG_KERNEL_PURE", "") not in ("", "0"):
    REASON = "NANOMSG_KERNEL_PURE is set"
else:
    try:
        speedups = importlib.import_module("nanomsg_kernel._speedups")
    except ImportError as exc:
        REASON = f"the compiled codec is not built ({exc})"

if speedups is not None:
    speedups.configure(
        Raw,
        functools.partial(msgpack.unpackb, strict_map_key=False, timestamp=3),
        functools.partial(msgpack.packb, use_bin_type=True, datetime=True),
    )
