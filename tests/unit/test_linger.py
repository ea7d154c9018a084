"""`proxy.linger`: a lingering close's limits, in one process on real loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from proxy import linger
from proxy.linger import Lingering

ANSWER = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Answers(asyncio.Protocol):
    """Answers at once and hands the connection to `lingering`, as the lanes do."""

    def __init__(self, lingering: Lingering) -> None:
        self.lingering = lingering

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(ANSWER)  # type: ignore[attr-defined]
        self.lingering.close(transport)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Lingering, int]]:
    lingering = Lingering()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Answers(lingering), "127.0.0.1", 0)
    try:
        yield lingering, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        lingering.abort()
        await server.wait_closed()


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def _answer_and_end(reader: asyncio.StreamReader) -> bytes:
    """Everything up to the end of the stream (a reset counts as an end here)."""
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b"reset"


async def test_the_answer_then_the_end_of_the_stream_while_the_client_writes(served) -> None:
    lingering, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"x" * 100_000)
    assert await _answer_and_end(reader) == ANSWER  # a FIN after the answer, no reset
    await _until(lambda: len(lingering.connections) == 1 and lingering.started == 1)
    conn = next(iter(lingering.connections))
    writer.write(b"y" * 1000)  # discarded
    await _until(lambda: conn.discarded == 101_000)
    writer.close()  # the client closes: so does the proxy
    await _until(lambda: not lingering.connections)
    assert conn._timer is None  # noqa: SLF001 - no timer outlives the connection


async def test_too_many_bytes_end_the_lingering(served, monkeypatch) -> None:
    monkeypatch.setattr(linger, "LINGER_BYTES", 10_000)
    lingering, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await _answer_and_end(reader) == ANSWER
    await _until(lambda: len(lingering.connections) == 1)
    writer.write(b"x" * 50_000)
    await _until(lambda: not lingering.connections)  # closed by the proxy, not the client
    writer.close()


async def test_a_quiet_client_ends_the_lingering(served, monkeypatch) -> None:
    monkeypatch.setattr(linger, "LINGER_TIMEOUT", 0.05)
    lingering, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await _answer_and_end(reader) == ANSWER
    await _until(lambda: lingering.started == 1 and not lingering.connections)
    writer.close()


async def test_a_shutdown_ends_the_lingering_at_its_deadline(served) -> None:
    """The client neither closes nor stops writing: a shutdown whose grace is over closes
    the connection anyway, and one that begins lingering afterwards ends at once."""
    lingering, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await _answer_and_end(reader) == ANSWER
    await _until(lambda: len(lingering.connections) == 1)
    loop = asyncio.get_running_loop()
    lingering.stop_by(loop.time())
    await asyncio.wait_for(lingering.closed(), 10)
    assert not lingering.connections
    late_reader, late_writer = await asyncio.open_connection("127.0.0.1", port)
    await _until(lambda: lingering.started == 2)
    await asyncio.wait_for(lingering.closed(), 10)
    writer.close()
    late_writer.close()


async def test_aiohttps_own_read_of_an_unread_body_counts_against_the_lingering_time(
    monkeypatch,
) -> None:
    """A handler answers without reading a body the client is still sending: aiohttp
    first reads (and drops) it for its own `lingering_time`, keeping the connection, and
    only then closes it, which on the aiohttp lane begins a lingering close. That time is
    part of `LINGER_TIME` ("10 s in all", docs/proxy.md): the lingering close was given a
    fresh 10 s after aiohttp's (20 s in all by default)."""
    from aiohttp import web

    from proxy.aiohttp_lane import EdgeServer

    ends: list[float] = []
    begin = linger.LingeringClose.begin

    def recording_begin(self: linger.LingeringClose) -> None:
        ends.append(self._end)  # noqa: SLF001
        begin(self)

    monkeypatch.setattr(linger.LingeringClose, "begin", recording_begin)

    async def handler(request: web.BaseRequest) -> web.Response:
        resp = web.Response(status=400, text="no\n")
        resp.force_close()
        return resp

    lingering = Lingering()
    server = EdgeServer(handler, lingering=lingering, lingering_time=0.2)
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(server, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 100)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        answered = loop.time()  # the answer had ended before this
        assert head.startswith(b"HTTP/1.1 400 ")
        # aiohttp reads the rest of the body for 0.2 s, then the lingering close begins.
        await _until(lambda: lingering.started == 1, timeout=30)
        assert ends and ends[0] <= answered + linger.LINGER_TIME
    finally:
        writer.close()
        await _until(lambda: not lingering.connections, timeout=30)
        listening.close()
        lingering.abort()
        await server.shutdown(0)
        await listening.wait_closed()


class _FastHandler:
    """What the fast lane asks of `ProxyHandler`, answering every request with 200."""

    def preflight(self, msg, peer):
        from types import SimpleNamespace

        return SimpleNamespace(content_length=None)

    async def serve_plain(self, conn, msg, pre, body, **_) -> None:
        conn.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


async def _last_answer_while_stopping(server_factory, lingering: Lingering) -> bytes:
    """A keep-alive request answered after a shutdown began (`stop_by`), its client holding
    its socket and sending nothing more: what it reads up to the end of the stream."""
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(server_factory, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    lingering.stop_by(loop.time() + 30)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /k HTTP/1.1\r\nHost: h\r\n\r\n")
        return await _answer_and_end(reader)
    finally:
        writer.close()
        listening.close()
        lingering.abort()
        await listening.wait_closed()


@pytest.mark.parametrize("lane", ["fast", "aiohttp"])
async def test_a_last_answer_while_stopping_with_nothing_behind_it_is_closed_at_once(lane):
    """The proxy is stopping: its answer says `Connection: close`, and a client that sent
    nothing more expects the close (as nginx closes such a connection at once). Lingering
    kept it up to `LINGER_TIMEOUT` (5 s) for a client that holds its socket, which every
    rolling restart paid per kept-alive client."""
    from aiohttp import web

    from proxy.aiohttp_lane import EdgeServer
    from proxy.config.model import Limits
    from proxy.listener import Listener

    lingering = Lingering()
    if lane == "fast":
        listener = Listener(_FastHandler(), lambda: None, Limits(), express=False)
        listener.lingering = lingering
        listener.closing = True  # as `Listener.shutdown` says
        factory = listener
    else:

        async def handler(request: web.BaseRequest) -> web.Response:
            resp = web.Response(text="ok")
            resp.force_close()  # as the proxy answers while it stops
            return resp

        factory = EdgeServer(handler, lingering=lingering)
    got = await _last_answer_while_stopping(factory, lingering)
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"ok")
    assert lingering.started == 0


BIG = 32 * 1024 * 1024  # far more than loopback socket buffers hold: the rest stays queued


class _BigAnswer(asyncio.Protocol):
    def __init__(self, lingering: Lingering) -> None:
        self.lingering = lingering

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)  # type: ignore[attr-defined]
        transport.write(b"a" * BIG)  # type: ignore[attr-defined]
        self.lingering.close(transport)


async def test_a_shutdown_waits_for_the_answer_a_slow_reader_still_has_to_take(monkeypatch):
    """While the proxy stops, a lingering close that ends (here: the client was quiet) with
    answer bytes still queued stays counted until they are written, as any connection's
    last bytes are waited for within the grace period: the process left with them unsent."""
    monkeypatch.setattr(linger, "LINGER_TIMEOUT", 0.1)
    lingering = Lingering()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _BigAnswer(lingering), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lingering.stop_by(loop.time() + 60)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**16)
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        conn = next(iter(lingering.connections))
        # The quiet time ends the lingering; the answer is not all written yet.
        await _until(lambda: conn.transport.is_closing())
        closed = asyncio.ensure_future(lingering.closed())
        await asyncio.sleep(0)
        assert not closed.done()  # the shutdown still waits: bytes of the answer are queued
        body = await asyncio.wait_for(reader.read(), 30)
        await asyncio.wait_for(closed, 30)
        assert head.startswith(b"HTTP/1.1 200 ") and len(body) == BIG
    finally:
        writer.close()
        server.close()
        lingering.abort()
        await server.wait_closed()
