"""The build of the compiled codec and evolve (nanomsg_kernel/_speedups.c, _evolve.c); the rest is in
pyproject.toml.

The extension is optional: where it cannot be built (no C compiler, no Python headers) the
package installs with its pure-Python codec, and the build says so once.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """``build_ext`` that lets the install go on without the extension, with one warning."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # the compiler or the headers are missing
            self._skipped(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._skipped(exc)

    def _skipped(self, exc: Exception) -> None:
        if getattr(self, "_warned", False):
            return
        self._warned = True
        sys.stderr.write(
            f"WARNING: nanomsg-kernel's compiled codec was not built ({type(exc).__name__}: {exc}); "
            "installing with the pure-Python codec (same wire format, slower).\n"
        )


speedups = Extension(
    "nanomsg_kernel._speedups",
    sources=["nanomsg_kernel/_speedups.c", "nanomsg_kernel/_evolve.c"],
    depends=["nanomsg_kernel/_speedups.h"],
    extra_compile_args=["-O2", "-std=c99", "-Wall"] if os.name == "posix" else [],
)

setup(ext_modules=[speedups], cmdclass={"build_ext": OptionalBuildExt})
