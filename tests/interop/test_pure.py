"""Pure helpers the interop findings led to, tested without sockets."""

from __future__ import annotations

from proxy.websocket import close_frame, refused_upgrade_headers
from tests.interop.aio_app import brotli_stored


def test_close_code_and_reason_travel_end_to_end():
    assert close_frame(4001, "asked to") == (4001, b"asked to")
    assert close_frame(1000, "") == (1000, b"")
    assert close_frame(1001, "going away") == (1001, b"going away")


def test_codes_that_may_not_be_sent_are_replaced():
    assert close_frame(None, "") == (1000, b"")
    assert close_frame(1005, "x") == (1000, b"")
    assert close_frame(1006, "") == (1011, b"")
    assert close_frame(1006, "", lost=1001) == (1001, b"")  # a client that vanished
    assert close_frame(0, "") == (1000, b"")
    assert close_frame(5000, "x") == (1000, b"")


def test_reason_is_cut_to_a_control_frame_on_a_character_boundary():
    code, reason = close_frame(4000, "é" * 100)
    assert code == 4000 and len(reason) <= 123
    assert reason.decode("utf-8") == "é" * 61


def test_stored_brotli_stream_layout():
    raw = brotli_stored(b"abc")
    assert raw[3:-1] == b"abc" and raw[-1] == 3
    assert int.from_bytes(raw[:3], "little") == (2 << 4) | (1 << 20)


def test_refused_upgrade_keeps_the_upstreams_own_headers():
    headers = [
        ("WWW-Authenticate", "Bearer"),
        ("Set-Cookie", "a=1"),
        ("Content-Length", "12"),
        ("Content-Type", "text/plain"),
        ("Connection", "close, X-Hop"),
        ("X-Hop", "secret"),
        ("Location", "/login"),
    ]
    assert refused_upgrade_headers(401, headers) == [
        ("WWW-Authenticate", "Bearer"),
        ("Set-Cookie", "a=1"),
        ("Location", "/login"),
    ]
    assert refused_upgrade_headers(302, [("Location", "/x")]) == [("Location", "/x")]


def test_an_upstream_that_did_not_speak_websocket_is_a_bad_gateway():
    assert refused_upgrade_headers(200, [("Content-Type", "text/html")]) is None
    assert refused_upgrade_headers(101, []) is None
