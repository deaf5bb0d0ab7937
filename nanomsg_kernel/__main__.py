"""``python -m nanomsg_kernel``: the version, and which codec is active (compiled or pure)."""

from __future__ import annotations

from nanomsg_kernel import __version__
from nanomsg_kernel.compiled import codec_line

if __name__ == "__main__":
    print(f"nanomsg-kernel {__version__} ({codec_line()})")
