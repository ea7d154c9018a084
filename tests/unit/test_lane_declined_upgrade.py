"""What follows a WebSocket handshake the handler declined, on the aiohttp lane, in process.

aiohttp stops parsing at an upgrade request and keeps the bytes after it; when the handler
answers anything but 101 it parses them after all, in one go. The lane's check for trailer
fields reads a chunked body's end a piece at a time, so it never saw them: a trailer field
of a request pipelined behind a declined handshake reached the request after it.
"""

from __future__ import annotations

from tests.unit.test_lane_parser_pause import serve

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
CHUNKED = b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
NEXT = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"


async def test_a_trailer_field_behind_a_declined_upgrade_does_not_reach_the_next_request():
    evil = b"5\r\nhello\r\n0\r\nAuthorization: Bearer evil\r\n\r\n"
    seen, transport = await serve(UPGRADE + CHUNKED + evil + NEXT)
    assert [path for path, _ in seen] == ["/ws", "/a"]
    assert all("Authorization" not in headers for _, headers in seen)
    assert transport.closing
