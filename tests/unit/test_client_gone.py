"""A client that leaves while its answer is being written is told apart from an upstream
that fails mid-answer: the relays raise `ClientGone` for a write that finds the client's
connection closing (aiohttp raises ConnectionResetError there, as an upstream's reset
does), so the access line says 499 and no upstream is blamed (it said 502, with a warning
that the upstream failed mid-response)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from proxy.config.model import Limits
from proxy.forward import ClientGone, relay
from proxy.listener import Listener


class _Content:
    """An upstream body of two chunks; the client's connection starts closing between
    them (its loss not yet seen by the server: the window a write falls into)."""

    def __init__(self, close_client) -> None:
        self.chunks = [b"a" * 100_000, b"b" * 100_000]
        self.close_client = close_client

    async def readany(self) -> bytes:
        if len(self.chunks) == 1:
            self.close_client()
        return self.chunks.pop(0) if self.chunks else b""


class _UpstreamResponse:
    status, reason = 200, "OK"
    raw_headers = ((b"Content-Type", b"text/plain"),)

    def __init__(self, content: _Content) -> None:
        self.content = content

    def header(self, name: bytes) -> bytes | None:
        return None  # no Content-Length: streamed


async def test_a_write_to_a_client_gone_raises_client_gone():
    raised: list[BaseException] = []

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        upstream = _UpstreamResponse(_Content(lambda: request.transport.close()))
        try:
            await relay(request, upstream, {})
        except BaseException as exc:  # what the relay raised, for the test
            raised.append(exc)
            raise
        return web.Response()

    server = web.Server(handler)
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(server, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        async with asyncio.timeout(10):  # a guard against a hang, not a measure
            while not raised:
                await asyncio.sleep(0.01)
    finally:
        writer.close()
        listening.close()
        await server.shutdown(0)
        await listening.wait_closed()
    assert isinstance(raised[0], ClientGone), repr(raised[0])


async def test_the_fast_lane_reports_a_lost_client_as_client_gone():
    listener = Listener(object(), lambda: None, Limits(), express=False)
    conn = listener()

    class Transport(asyncio.Transport):
        def get_extra_info(self, name, default=None):
            return ("127.0.0.1", 40000) if name == "peername" else default

    conn.connection_made(Transport())
    conn.connection_lost(ConnectionResetError())
    try:
        await conn._drained()  # noqa: SLF001
    except ClientGone:
        pass
    else:
        raise AssertionError("a drain on a lost connection went on")
