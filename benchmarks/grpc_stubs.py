"""The gRPC Python modules of ``benchmarks/proto/echo.proto``, generated at run time.

grpcio and grpcio-tools are optional (``pip install grpcio grpcio-tools``): :func:`missing`
says why the gRPC benchmarks cannot run, :func:`load` compiles the ``.proto`` with
grpcio-tools into a temporary directory (once per process) and imports the two modules.
"""

from __future__ import annotations

import atexit
import importlib
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

__all__ = ["INSTALL_HINT", "PROTO", "load", "missing"]

PROTO = Path(__file__).resolve().parent / "proto" / "echo.proto"
"""The service definition the gRPC benchmarks are generated from."""

INSTALL_HINT = "pip install grpcio grpcio-tools"

_loaded: tuple[ModuleType, ModuleType] | None = None


def missing() -> str | None:
    """``None`` when grpcio and grpcio-tools can be imported, else a one-line reason."""
    absent = []
    for name, dist in (("grpc", "grpcio"), ("grpc_tools", "grpcio-tools")):
        try:
            importlib.import_module(name)
        except ImportError:
            absent.append(dist)
    if not absent:
        return None
    return f"{' and '.join(absent)} not installed: gRPC rows skipped ({INSTALL_HINT})"


def load() -> tuple[ModuleType, ModuleType]:
    """Generate (first call only) and import ``echo_pb2`` and ``echo_pb2_grpc``."""
    global _loaded
    if _loaded is not None:
        return _loaded
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="nanomsg-kernel-grpc-")
    atexit.register(shutil.rmtree, out, True)
    include = str(Path(protoc.__file__).resolve().parent / "_proto")
    status = protoc.main(["grpc_tools.protoc", f"-I{PROTO.parent}", f"-I{include}", f"--python_out={out}",
                          f"--grpc_python_out={out}", str(PROTO)])
    if status != 0:
        raise RuntimeError(f"grpc_tools.protoc failed on {PROTO} (exit status {status})")
    sys.path.insert(0, out)
    try:
        _loaded = importlib.import_module("echo_pb2"), importlib.import_module("echo_pb2_grpc")
    finally:
        sys.path.remove(out)
    return _loaded
