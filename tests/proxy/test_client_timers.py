"""The upstream client's lazily checked timers (`proxy.client`): one read timer and one
total timer per connection, re-armed by each exchange rather than set and cancelled per
request. A connection reused after a quick answer must still time out its next exchange."""

from __future__ import annotations

import asyncio
import time

import pytest

from proxy.client import ConnectionPool, UpstreamTimeout
from proxy.config.model import Timeouts, Upstream

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def _upstream(answers: int) -> tuple[asyncio.Server, int]:
    """Answers the first `answers` requests on each connection, then reads and says nothing."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                if served < answers:
                    writer.write(ANSWER)
                    served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _get(pool: ConnectionPool) -> bytes:
    resp = await pool.request("GET", "/", [("Host", "x")], None)
    try:
        return await resp.read()
    finally:
        resp.release()


@pytest.mark.parametrize(
    "timeouts",
    [Timeouts(read=0.3, total=None), Timeouts(read=None, total=0.3), Timeouts(read=0.3, total=30)],
)
async def test_a_reused_connection_still_times_out(timeouts: Timeouts) -> None:
    server, port = await _upstream(answers=2)
    pool = ConnectionPool(Upstream(name="u", url="", port=port, timeout=timeouts))
    try:
        assert await _get(pool) == b"ok"
        assert await _get(pool) == b"ok"  # the same connection, its timers re-armed
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await _get(pool)
        assert time.monotonic() - started < 3  # the third exchange's own timeout, not later
    finally:
        await pool.close()
        server.close()


async def test_a_shorter_total_timeout_is_not_held_back_by_the_armed_timer() -> None:
    """The one timer is set for the earliest deadline: an exchange with a shorter timeout
    than the one before it re-arms it earlier."""
    server, port = await _upstream(answers=1)
    long = ConnectionPool(Upstream(name="u", url="", port=port, timeout=Timeouts(total=30)))
    try:
        assert await _get(long) == b"ok"  # the connection's total timer is now set ~30 s out
        proto, _ = long._idle[0]  # noqa: SLF001
        short = ConnectionPool(Upstream(name="u", url="", port=port, timeout=Timeouts(total=0.3)))
        short.put(proto)
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await _get(short)
        assert time.monotonic() - started < 3
    finally:
        await long.close()
        server.close()


async def test_a_closed_connection_lets_go_of_its_timers() -> None:
    server, port = await _upstream(answers=1)
    pool = ConnectionPool(Upstream(name="u", url="", port=port))
    try:
        assert await _get(pool) == b"ok"
        proto, _ = pool._idle[0]  # noqa: SLF001
        assert proto._read_timeout_handle is not None  # noqa: SLF001 - lazily kept
        proto.close()
        assert proto._read_timeout_handle is None  # noqa: SLF001
        assert proto._total is None or proto._total.handle is None  # noqa: SLF001
    finally:
        await pool.close()
        server.close()
