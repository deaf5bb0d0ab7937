"""Flow control of the TCP frame writer on every supported Python.

A peer that stops reading must make :meth:`FrameWriter.drain` wait: asyncio's
``writelines()`` on Python 3.12 and 3.13 does not pause the protocol at the high-water mark,
and a writer relying on it returned from ``drain()`` at once and spun.
"""

from __future__ import annotations

import asyncio

from nanomsg_kernel.transports.tcp_stream import MAX_BATCH, FrameWriter


async def test_drain_waits_while_the_peer_does_not_read() -> None:
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(writer)

    server = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    peer = await accepted.get()
    try:
        out = FrameWriter(writer, high_water=64 * 1024)
        frame = b"x" * 4096
        for _ in range(16 * 1024):  # at most 64 MiB: more than the kernel's socket buffers
            for _ in range(MAX_BATCH):  # coalesced batches go through the held-frames path
                out.write(frame)
            out.flush()
            if out.congested:
                break
        assert out.congested
        drain = asyncio.ensure_future(out.drain())
        for _ in range(50):
            await asyncio.sleep(0)
        assert not drain.done(), "drain() returned while the peer reads nothing"
        drain.cancel()
    finally:
        writer.transport.abort()
        peer.transport.abort()
        server.close()
        await server.wait_closed()
