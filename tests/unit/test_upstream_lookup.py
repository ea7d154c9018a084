"""The upstream's host name is looked up once for all the connects that need it at once.

getaddrinfo runs in one of the event loop's few resolver threads and cannot be cancelled:
with a lookup per connect, a resolver that stopped answering held every thread (eight
connects to one such name), and upstreams named otherwise waited behind them (measured:
6.5 s for `localhost`). Here the resolver is the real one behind a gate the test opens.
"""

from __future__ import annotations

import asyncio

import pytest

from proxy.client import ConnectionPool, UpstreamTimeout
from proxy.config.loader import parse_config


def _upstream(url: str, connect: float = 5.0):
    text = (
        f"version: 1\nupstreams:\n  svc: {{url: '{url}', timeout: {{connect: {connect}}}}}\n"
        "default: svc\nroutes: []\n"
    )
    return parse_config(text).upstreams["svc"]


@pytest.fixture
async def listening():
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def gated_resolver(monkeypatch):
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    gate = asyncio.Event()
    names: list[str] = []

    async def lookup(host, *args, **kwargs):
        names.append(host)
        await gate.wait()
        return await real(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", lookup)
    return gate, names


async def test_concurrent_connects_share_one_lookup(listening, gated_resolver):
    gate, names = gated_resolver
    pool = ConnectionPool(_upstream(f"http://localhost:{listening}"))
    connects = [asyncio.ensure_future(pool._connect()) for _ in range(8)]
    while not names:
        await asyncio.sleep(0)
    for _ in range(10):  # every connect has had its turn to ask
        await asyncio.sleep(0)
    assert names == ["localhost"]
    gate.set()
    protos = await asyncio.gather(*connects)
    assert all(p.transport is not None for p in protos)
    for p in protos:
        p.close()
    await pool._connect()  # once the answer is in, the next connect asks again: no cache
    assert names == ["localhost", "localhost"]


async def test_a_connect_that_times_out_resolving_says_so_and_leaves_the_lookup_shared(
    listening, gated_resolver
):
    gate, names = gated_resolver
    pool = ConnectionPool(_upstream(f"http://localhost:{listening}", connect=0.05))
    with pytest.raises(UpstreamTimeout, match="resolving localhost timed out"):
        await pool._connect()
    with pytest.raises(UpstreamTimeout, match="resolving localhost timed out"):
        await pool._connect()
    assert names == ["localhost"]  # the second waited on the first one's lookup
    gate.set()
    patient = ConnectionPool(_upstream(f"http://localhost:{listening}"))
    (await patient._connect()).close()


async def test_an_address_is_not_looked_up(listening, gated_resolver):
    _, names = gated_resolver
    pool = ConnectionPool(_upstream(f"http://127.0.0.1:{listening}"))
    (await pool._connect()).close()
    assert names == []
