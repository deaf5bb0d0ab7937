"""Run :mod:`reliability.server` (or the ``nanomsg-kernel serve`` CLI) in a child process."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["ServerProcess"]

SERVER = Path(__file__).with_name("server.py")


class ServerProcess:
    """A server child process: its URLs, its memory figures, and a clean or brutal end."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.urls: list[str] = []
        self.start_rss_kib = 0
        self.peak_rss_kib = 0
        self.metrics: dict[str, Any] = {}
        self.stderr = ""
        self._err: list[bytes] = []
        self._err_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, *urls: str, max_body: int = 1024 * 1024, timeout: float = 30.0) -> ServerProcess:
        """Start ``server.py`` on ``urls`` and wait until it is ready."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SERVER), "--max-body", str(max_body), *urls,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        self = cls(proc)
        try:
            await self._read_ready(timeout)
        except BaseException:
            await self.kill()
            raise
        return self

    @classmethod
    async def serve_config(cls, config: Path, timeout: float = 30.0) -> ServerProcess:
        """Start ``python -m nanomsg_kernel.app.cli serve config`` and wait until it is ready."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nanomsg_kernel.app.cli", "serve", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        self = cls(proc)
        try:
            await self._read_ready(timeout)
        except BaseException:
            await self.kill()
            raise
        return self

    async def _drain_stderr(self) -> None:
        # Read stderr all along: a child blocked on a full pipe would look like a hang.
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self._err.append(chunk)

    async def _read_ready(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        self._err_task = asyncio.create_task(self._drain_stderr())
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    await self._err_task
                    err = b"".join(self._err).decode(errors="replace")
                    raise AssertionError(f"the server exited before it was ready: {err[-2000:]}")
                words = raw.decode().split()
                if words[:1] == ["listening"]:
                    self.urls.append(words[-1])
                elif words[:1] == ["ready"]:
                    for word in words[1:]:
                        if word.startswith("rss_kib="):
                            self.start_rss_kib = int(word.split("=", 1)[1])
                    return

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.returncode is None

    async def stop(self, timeout: float = 30.0) -> str:
        """SIGTERM, wait for the end, read the figures; returns everything printed."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            out = await self.proc.stdout.read()
            await self.proc.wait()
            if self._err_task is not None:
                await self._err_task
        self.stderr = b"".join(self._err).decode(errors="replace")
        text = out.decode()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "peak_rss_kib":
                self.peak_rss_kib = int(value)
            elif key == "metrics":
                self.metrics = json.loads(value)
        return text

    async def kill(self) -> None:
        """SIGKILL (if still running) and reap."""
        if self.proc.returncode is None:
            self.proc.kill()
        if self.proc.stdout is not None:
            await self.proc.stdout.read()
        await self.proc.wait()
        if self._err_task is not None:
            await self._err_task
        self.stderr = b"".join(self._err).decode(errors="replace")
