"""The upstream request head (proxy/client.py `_request_head`), on plain data."""

from __future__ import annotations

import pytest

from proxy.client import _request_head


def test_head_keeps_header_order_and_the_client_content_length_in_place():
    head = _request_head(
        "POST", "/a?b=1", [("Host", "h"), ("Content-Length", "05"), ("X", "1")], b"12345"
    )
    assert head == b"POST /a?b=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX: 1\r\n\r\n"


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Evil", "a\r\nSet-Cookie: x=1")],
        [("X-Evil", "a\nb")],
        [("X-Evil", "a\rb")],
        [("X\r\nY", "v")],
        [("X:Y", "v")],
    ],
)
def test_line_breaks_or_a_colon_in_a_name_are_refused(headers):
    with pytest.raises(ValueError, match="refusing to send"):
        _request_head("GET", "/", [("Host", "h"), *headers], None)


def test_a_line_break_in_the_target_is_refused():
    with pytest.raises(ValueError, match="refusing to send"):
        _request_head("GET", "/a\r\nX: 1", [("Host", "h")], None)
