"""A node served over TLS, with certificates made when the program starts.

Run it with ``python examples/tls_node.py`` (it needs ``trustme``: ``pip install trustme``,
part of the ``test`` extra). It makes a private certificate authority and a certificate for
127.0.0.1 with trustme, serves the example ``calc`` service over ``tcp://`` with TLS on a
free port, and calls it twice: once trusting the authority, once without::

    listening on tcp://127.0.0.1:45313 (TLS)
    6 * 7 = 42
    a client that does not trust the CA: Unavailable

In production the certificate and key come from files (``ctx.load_cert_chain(cert, key)``)
and a client trusts its CA with ``ssl.create_default_context(cafile=ca)``. The same node,
declared in a config for ``nanomsg-kernel serve``, is ``examples/tls_node.toml``.
"""

from __future__ import annotations

import asyncio
import ssl

import trustme

from nanomsg_kernel import Client, Node, Unavailable
from nanomsg_kernel.contracts.calc import CalcRoute, CalcWork, WorkType
from nanomsg_kernel.contracts.services import calc


def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context trusting its CA."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def main() -> None:
    """Serve ``calc`` over TLS and call it with and without trusting the CA."""
    server_ctx, client_ctx = contexts()
    node = Node("tls")
    node.add(calc, listen=[("tcp://127.0.0.1:0", {"ssl": server_ctx})])
    async with node:
        url = node.listeners[0].url
        print(f"listening on {url} (TLS)")
        async with Client(CalcRoute, url, ssl=client_ctx) as client:
            done = await client.call(CalcWork(a=6, b=7, op=WorkType.MULT), timeout=5.0)
            print(f"6 * 7 = {done.result}")
        try:
            async with Client(CalcRoute, url, ssl=ssl.create_default_context()) as stranger:
                await stranger.call(CalcWork(a=1, b=1, op=WorkType.SUM), timeout=5.0)
        except Unavailable:
            print("a client that does not trust the CA: Unavailable")


if __name__ == "__main__":
    asyncio.run(main())
