"""The aiohttp lane reads `HTTP/1.2` to `HTTP/1.9` as HTTP/1.1 by rewriting the version's
digit before llhttp sees it, and only that byte, whatever the reads.

llhttp bounds a request line's target, not the line: a line may end over
`max_line_size` (the method and version past a target just within it). The lane kept
measuring such a line into the header fields of a head that came in several reads, and
took a field value that ended a read with ` HTTP/1.2` for the version. The fake
transport here makes each piece one read, as a real socket cannot promise.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from proxy.aiohttp_lane import EdgeServer
from tests.unit.test_lane_parser_pause import Transport

LIMIT = 64  # `limits.max_request_line`
TARGET = b"/" + b"a" * (LIMIT - 1)  # within the limit; the line is over it
LINE = b"GET " + TARGET + b" HTTP/1.1\r\n"


async def served(reads: list[bytes]) -> list[tuple[tuple[int, int], dict[str, str]]]:
    """Feed `reads` one at a time, each after the lane took the one before; the version
    and header fields of each request the handler saw."""
    seen: list[tuple[tuple[int, int], dict[str, str]]] = []

    async def handler(request: web.BaseRequest) -> web.Response:
        seen.append((tuple(request.version), dict(request.headers)))
        return web.Response(text="ok")

    server = EdgeServer(handler, max_line_size=LIMIT)
    proto = server()
    transport = Transport()
    proto.connection_made(transport)
    for data in reads:
        proto.data_received(data)
    async with asyncio.timeout(30):  # a guard against a hang, not a measure
        while not seen and not transport.closing:
            await asyncio.sleep(0.001)
    proto.connection_lost(None)
    await server.shutdown(0)
    return seen


@pytest.mark.parametrize(
    "reads",
    [
        [LINE + b"Host: h\r\nX-Note: see", b" HTTP/1.2\r\n\r\n"],
        [LINE + b"Host: h\r\nX-Note: see", b" HTTP/1.2", b"\r\n\r\n"],
        [LINE, b"X-Note: see HTTP/1.2\r\nHost: h\r\n\r\n"],
    ],
    ids=["value-ends-the-read-with-its-crlf", "value-ends-the-read", "first-field"],
)
async def test_a_field_value_ending_in_a_version_is_not_rewritten(reads):
    seen = await served(reads)
    assert seen == [((1, 1), {"Host": "h", "X-Note": "see HTTP/1.2"})]


async def test_a_newer_version_ending_a_line_over_the_limit_is_still_read_as_http11():
    """The line's own version, cut between reads, is what is rewritten."""
    seen = await served([b"GET " + TARGET + b" HTTP/1.", b"2\r\nHost: h\r\n\r\n"])
    assert seen == [((1, 1), {"Host": "h"})]
