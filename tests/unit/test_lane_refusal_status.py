"""414 or 431 on the aiohttp lane when a body's bytes arrive before its handler starts.

The lane measures the request line itself (llhttp says 400 for every limit) and skips body
bytes. It took "a body is arriving" from the handler's view; a request leaves aiohttp's
queue a loop step before its handler starts, and body bytes read in between were measured
as a request line: a body of lines ended the count (a long URL after it was 431), a body
without line breaks counted into the next request line (a long header after it was 414).
Seen as a flaky conformance test on real sockets; here the step is taken on purpose.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import web

from proxy.aiohttp_lane import EdgeServer
from tests.unit.test_lane_parser_pause import Transport

STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")  # aiohttp writes its refusals as HTTP/1.0
HEAD = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n"


async def answer(pieces: list[bytes]) -> bytes:
    """The head first; the rest read just after the request left aiohttp's queue, before
    its handler began. What the client got back."""

    async def handler(request: web.BaseRequest) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    server = EdgeServer(handler)
    proto = server()
    transport = Transport()
    proto.connection_made(transport)
    proto.data_received(pieces[0])
    async with asyncio.timeout(30):  # a guard against a hang, not a measure
        while proto._messages:  # the request is taken off the queue by the next step
            await asyncio.sleep(0)
    assert proto._current_request is None  # the window: its handler has not started
    for piece in pieces[1:]:
        proto.data_received(piece)
    async with asyncio.timeout(30):
        while len(STATUS.findall(transport.out)) < 2 and not transport.closing:
            await asyncio.sleep(0.001)
    proto.connection_lost(None)
    await server.shutdown(0)
    return bytes(transport.out)


@pytest.mark.parametrize(
    ("body", "after", "status"),
    [
        (b"line\n" * 2_000, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
        (b"a" * 10_000, b"GET /a HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    ],
    ids=["url-after-a-body-of-lines", "header-after-a-body-without-line-breaks"],
)
@pytest.mark.parametrize("together", [False, True], ids=["apart", "pipelined"])
async def test_body_read_before_its_handler_starts_is_not_a_request_line(
    body, after, status, together
):
    rest = [body + after] if together else [body, after]
    out = await answer([HEAD % len(body), *rest])
    assert STATUS.findall(out) == [b"200", b"%d" % status]


@pytest.mark.parametrize("cut", [1, 2, 3], ids=["lf", "crlf", "lf-crlf"])
async def test_a_head_whose_empty_line_is_cut_between_reads_ends_where_it_ends(cut):
    """The last bytes of a head's empty line come in the next read, with a request whose
    URL is too long: that head ended in the read's first piece, so the long line after it
    is measured (414), not taken for the rest of the line before (431)."""

    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response(text="ok")

    server = EdgeServer(handler)
    proto = server()
    transport = Transport()
    proto.connection_made(transport)
    first = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    proto.data_received(first[:-cut])
    proto.data_received(first[-cut:] + b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    async with asyncio.timeout(30):  # a guard against a hang, not a measure
        while len(STATUS.findall(transport.out)) < 2 and not transport.closing:
            await asyncio.sleep(0.001)
    proto.connection_lost(None)
    await server.shutdown(0)
    assert STATUS.findall(transport.out) == [b"200", b"414"]
