"""The aiohttp lane's trailer check while aiohttp's parser is paused, in process.

aiohttp's parser pauses in the middle of what it is fed when a request body is over its
buffer's limit (the handler has not read it yet) or when 32 requests are queued; what it is
fed after that it keeps, and parses in one go when it resumes. The lane's check for trailer
fields reads the bytes around a chunked body's end, a piece at a time: the parser must not
be fed ahead of it. The transport here is fake so that the whole input is one read, and the
handler runs only once the read is taken (as on a real connection whose data came at once).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from proxy.aiohttp_lane import EdgeServer
from proxy.forward import last_on_connection

CHUNKED = b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
EVIL = b"5\r\nhello\r\n0\r\nAuthorization: Bearer evil\r\n\r\n"
# A body bigger than the limit of what the lane buffers before the handler reads it.
BIG = b"%x\r\n" % (600 * 1024) + b"x" * (600 * 1024) + b"\r\n"


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closing = False

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def serve(data: bytes) -> tuple[list[tuple[str, dict[str, str]]], Transport]:
    """Feed `data` as one read; run until every request in it is answered or the lane
    closes the connection. The requests the handler saw, and the transport."""
    seen: list[tuple[str, dict[str, str]]] = []

    async def handler(request: web.BaseRequest) -> web.Response:
        await request.read()
        seen.append((request.path, dict(request.headers)))
        resp = web.Response(text="ok")
        if last_on_connection(request):  # as the proxy's handler does
            resp.force_close()
        return resp

    server = EdgeServer(handler)
    proto = server()
    transport = Transport()
    proto.connection_made(transport)
    proto.data_received(data)
    sent = data.count(b" HTTP/1.1\r\n")
    async with asyncio.timeout(30):  # a guard against a hang, not a measure
        while not transport.closing and transport.out.count(b"HTTP/1.1 200 OK") < sent:
            await asyncio.sleep(0.001)
    proto.connection_lost(None)
    await server.shutdown(0)
    return seen, transport


async def test_trailers_of_a_body_parsed_after_a_pause_are_not_taken_for_none():
    """The body's end is parsed after the handler starts reading it (the parser paused at
    its buffer's limit); the bytes read last are another chunked request's, ending as a
    body without trailers does. The first body's trailer section must still be seen, and
    the request behind it neither parsed nor given its `Authorization` field."""
    decoy = CHUNKED.replace(b"/a", b"/next") + b"5\r\nhello\r\n0\r\n\r\n"
    seen, transport = await serve(CHUNKED + BIG + EVIL + decoy)
    assert [path for path, _ in seen] == ["/a"]
    assert all("Authorization" not in headers for _, headers in seen)
    assert transport.closing


async def test_a_chunked_request_after_a_queue_of_requests_keeps_its_trailers_apart():
    """32 requests queued pause the parser between two requests; a Content-Length body and
    the request behind it in one piece then put the parser a request behind the pieces, so
    a chunked request's head and end were parsed in one go, never checked for trailers."""
    get = b"GET /g HTTP/1.1\r\nHost: h\r\n\r\n"
    data = CHUNKED + b"0\r\n\r\n" + get * 31
    data += b"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx" + get
    data += CHUNKED + EVIL + b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
    seen, transport = await serve(data)
    assert [path for path, _ in seen][-1] == "/a"
    assert all("Authorization" not in headers for _, headers in seen)
    assert transport.closing
