"""Protocol switches and expectations: nothing may end in a 101 the RFCs do not allow."""

from __future__ import annotations

import pytest

from tests.conformance.checks import assert_rejected, forwarded_once
from tests.conformance.wire import Wire

KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
WS = b"Connection: Upgrade\r\nUpgrade: websocket\r\n" + KEY + b"Sec-WebSocket-Version: 13\r\n"

BAD_UPGRADES = {
    # A body would be read as WebSocket frames once the connection switched.
    "with-body": (b"GET /ws HTTP/1.1\r\nHost: h\r\n" + WS + b"Content-Length: 5\r\n\r\nhello", 400),
    "with-chunked-body": (
        b"GET /ws HTTP/1.1\r\nHost: h\r\n" + WS + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    # Only GET upgrades; a POST must not be replayed upstream as a GET handshake.
    "post": (b"POST /ws HTTP/1.1\r\nHost: h\r\n" + WS + b"\r\n", 400),
    "no-connection-upgrade": (
        b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
        + KEY
        + b"Sec-WebSocket-Version: 13\r\n\r\n",
        400,
    ),
    "http10": (b"GET /ws HTTP/1.0\r\nHost: h\r\n" + WS + b"\r\n", 400),
    "bad-key": (
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: not-base64!\r\nSec-WebSocket-Version: 13\r\n\r\n",
        400,
    ),
    "version-99": (
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        + KEY
        + b"Sec-WebSocket-Version: 99\r\n\r\n",
        426,
    ),
}


@pytest.mark.parametrize(("data", "status"), BAD_UPGRADES.values(), ids=BAD_UPGRADES.keys())
def test_invalid_websocket_upgrade_is_refused_before_reaching_upstream(e, data, status):
    resp = assert_rejected(e, data, status)
    if status == 426:
        assert resp.header("sec-websocket-version") == ["13"]


@pytest.mark.parametrize(
    "upgrade",
    [
        b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        b"Upgrade: totally-made-up/1.0\r\nConnection: Upgrade\r\n",
        b"Upgrade: h2c\r\n",
    ],
    ids=["h2c", "unknown-protocol", "upgrade-without-connection"],
)
def test_other_upgrades_are_served_as_plain_requests(e, upgrade):
    resp, got = forwarded_once(e, b"GET /a HTTP/1.1\r\nHost: h\r\n" + upgrade + b"\r\n")
    assert resp.status == 200 and resp.informational == []
    names = {k for k, _ in got.headers}
    assert not names & {"upgrade", "connection", "http2-settings"}, got.headers


def test_expect_100_continue_is_answered_by_the_proxy_and_the_body_forwarded(e):
    with Wire(e.port) as w:
        w.send(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert w.wait_for(b"HTTP/1.1 100 Continue\r\n\r\n"), w.raw
        resp = w.send(b"hello").response()
        assert resp.status == 200 and resp.informational == [100]
    got = e.legacy.assert_clean()
    assert [(r.method, r.body, r.header("expect")) for r in got] == [("POST", b"hello", [])]


def test_expect_100_continue_with_the_body_already_sent_gets_no_interim_answer(e):
    # The client did not wait, so it is not waiting: a 100 would be read as the answer by a
    # client that takes the first status line (Http11Probe's SMUG-EXPECT-100-CL).
    with Wire(e.port) as w:
        resp = w.send(
            b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"
        ).response()
        assert resp.status == 200 and resp.informational == [], w.raw
    got = e.legacy.assert_clean()
    assert [(r.method, r.body, r.header("expect")) for r in got] == [("POST", b"hello", [])]


def test_expect_100_continue_without_a_body_gets_no_interim_answer(e):
    with Wire(e.port) as w:
        resp = w.send(b"GET /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n").response()
        assert resp.status == 200 and resp.informational == []
