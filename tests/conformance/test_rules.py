"""The pure edge rules, without sockets: Host syntax, framing, Expect, targets, upgrades."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.edge import MAX_FORWARDS, admit, newer_minor
from proxy.errors import options_star_response
from proxy.filters.headers import (
    expectation,
    forward_headers,
    framing_problem,
    valid_host,
)
from proxy.forward import unrelayable
from proxy.pathsafety import UnsafePath, parse_target
from proxy.websocket import handshake_problem

_FORWARDING = {
    "peer": "10.0.0.1",
    "scheme": "http",
    "host": "h",
    "trusted": False,
    "request_id": "rid",
}


@pytest.mark.parametrize(
    "host",
    [
        "h",
        "shop.example",
        "shop.example:8443",
        "127.0.0.1",
        "127.0.0.1:80",
        "[::1]",
        "[::1]:8080",
        "xn--bcher-kva.example",
        "a-b_c~d.example",
    ],
)
def test_valid_hosts(host):
    assert valid_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "",
        " ",
        "h h",
        "user@h",
        "user:pw@h",
        "h/path",
        "h?q",
        "h#f",
        "h:99999",
        "h:8080:1",
        "[::1",
        "h\tx",
        "h:port",
        "h\\x",
        "h, other.example",
        "h,other.example",
        "h;x",
    ],
)
def test_invalid_hosts(host):
    assert not valid_host(host)


def test_sanitize_drops_underscore_names_and_canonicalizes_length():
    got = forward_headers(
        [("Host", "h"), ("X_Forwarded_For", "6.6.6.6"), ("Content-Length", "007"), ("A", "1")],
        content_length=7,
        **_FORWARDING,
    )
    assert got[:3] == [("Host", "h"), ("Content-Length", "7"), ("A", "1")]
    assert dict(got)["X-Forwarded-For"] == "10.0.0.1"


def test_sanitize_keeps_everything_else_in_order_with_repeats():
    headers = [("A", "1"), ("B", "2"), ("A", "3"), ("Cookie", "x=1")]
    assert forward_headers(headers, **_FORWARDING)[: len(headers)] == headers


@pytest.mark.parametrize(
    ("version", "headers", "status", "problem"),
    [
        ((1, 0), [("Transfer-Encoding", "chunked")], 400, "HTTP/1.0"),
        ((1, 1), [("Transfer-Encoding", "")], 400, "empty"),
        ((1, 1), [("Transfer-Encoding", " , ")], 400, "empty"),
        ((1, 1), [("Transfer-Encoding", "gzip, chunked")], 501, "'gzip'"),
        ((1, 1), [("Transfer-Encoding", "Deflate,chunked")], 501, "'deflate'"),
        ((1, 1), [("Transfer-Encoding", "chunked")], None, None),
        ((1, 1), [("Transfer-Encoding", "Chunked")], None, None),
        ((1, 0), [("Content-Length", "5")], None, None),
    ],
)
def test_framing_problem(version, headers, status, problem):
    got = framing_problem(version, headers)
    if status is None:
        assert got is None
    else:
        assert got is not None and got[0] == status and problem in got[1]


@pytest.mark.parametrize(
    ("version", "value", "want"),
    [
        ((1, 1), "100-continue", "continue"),
        ((1, 1), "100-Continue", "continue"),
        ((1, 0), "100-continue", None),  # never a 1xx to an HTTP/1.0 client
        ((1, 1), "200-ok", "reject"),
        ((1, 0), "200-ok", "reject"),
        ((1, 1), None, None),
    ],
)
def test_expectation(version, value, want):
    headers = [("Expect", value)] if value is not None else []
    assert expectation(version, headers) == want


@pytest.mark.parametrize(
    ("method", "raw", "form", "path", "query", "authority"),
    [
        ("GET", "/a?b=1&c", "origin", "/a", "b=1&c", None),
        ("GET", "/", "origin", "/", None, None),
        ("GET", "/q?", "origin", "/q", "", None),
        ("GET", "/q??x", "origin", "/q", "?x", None),
        ("OPTIONS", "*", "asterisk", "*", None, None),
        ("GET", "http://Other.example/a?x=1", "absolute", "/a", "x=1", "Other.example"),
        ("GET", "https://h:8443", "absolute", "/", None, "h:8443"),
        ("GET", "HTTP://h/a?", "absolute", "/a", "", "h"),
    ],
)
def test_parse_target(method, raw, form, path, query, authority):
    t = parse_target(method, raw)
    assert (t.form, t.path, t.query, t.authority) == (form, path, query, authority)


@pytest.mark.parametrize(
    ("method", "raw", "fragment"),
    [
        ("GET", "*", "only valid with OPTIONS"),
        ("CONNECT", "h:443", "CONNECT"),
        ("GET", "http://user@h/", "userinfo"),
        ("GET", "http:///a", "needs a host"),
        ("GET", "ftp://h/a", "or an absolute"),
        ("GET", "h/a", "or an absolute"),
        ("GET", "/a#frag", "fragment"),
        ("GET", "http://h/a#frag", "fragment"),
    ],
)
def test_parse_target_refuses(method, raw, fragment):
    with pytest.raises(UnsafePath, match=fragment):
        parse_target(method, raw)


@given(st.text(alphabet="/abc?=&%", max_size=30))
def test_origin_form_round_trips(raw):
    target = "/" + raw
    t = parse_target("GET", target)
    assert t.form == "origin"
    assert t.path + ("" if t.query is None else "?" + t.query) == target


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD = {
    "Connection": "keep-alive, Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
}


def test_valid_websocket_handshake():
    assert handshake_problem("GET", (1, 1), GOOD, False) is None


@pytest.mark.parametrize(
    ("method", "version", "change", "body", "status"),
    [
        ("POST", (1, 1), {}, False, 400),
        ("GET", (1, 0), {}, False, 400),
        ("GET", (1, 1), {}, True, 400),
        ("GET", (1, 1), {"Connection": "keep-alive"}, False, 400),
        ("GET", (1, 1), {"Sec-WebSocket-Key": "short"}, False, 400),
        ("GET", (1, 1), {"Sec-WebSocket-Key": ""}, False, 400),
        ("GET", (1, 1), {"Sec-WebSocket-Version": "99"}, False, 426),
    ],
)
def test_invalid_websocket_handshakes(method, version, change, body, status):
    problem = handshake_problem(method, version, {**GOOD, **change}, body)
    assert problem is not None and problem[0] == status


def test_options_star_answer():
    resp = options_star_response("rid")
    assert resp.status == 200
    assert "GET" in resp.headers["Allow"] and resp.headers["X-Request-ID"] == "rid"


@pytest.mark.parametrize(
    ("status", "headers", "problem"),
    [
        (200, [], None),
        (599, [(b"Transfer-Encoding", b"chunked")], None),
        (200, [(b"transfer-encoding", b"Chunked")], None),
        (101, [], "status 101"),
        (103, [], "status 103"),
        (600, [], "status 600"),
        (200, [(b"Transfer-Encoding", b"gzip, chunked")], "'gzip'"),
        (200, [(b"Transfer-Encoding", b"deflate")], "'deflate'"),
    ],
)
def test_unrelayable_responses(status, headers, problem):
    got = unrelayable(status, headers)
    assert (got is None) if problem is None else (problem in got)


@pytest.mark.parametrize(
    ("method", "headers", "max_forwards"),
    [
        ("OPTIONS", [("Max-Forwards", "0")], 0),
        ("OPTIONS", [("max-forwards", " 12 ")], 12),
        ("OPTIONS", [], None),
        ("OPTIONS", [("Max-Forwards", "1"), ("Max-Forwards", "2")], None),
        ("OPTIONS", [("Max-Forwards", "-1")], None),
        ("OPTIONS", [("Max-Forwards", "\u0661")], None),  # a digit to Python, not to HTTP
        ("GET", [("Max-Forwards", "0")], None),
        ("OPTIONS", [("Max-Forwards", "0007")], 7),
        # Huge values (past 4300 digits `int` raises) are capped, as RFC 9110 §7.6.2 allows.
        ("OPTIONS", [("Max-Forwards", "9" * 5000)], MAX_FORWARDS + 1),
        ("OPTIONS", [("Max-Forwards", "0" * 5000 + "3")], 3),
        ("OPTIONS", [("Max-Forwards", "99999999999")], MAX_FORWARDS + 1),
    ],
)
def test_admit_reads_max_forwards_on_options(method, headers, max_forwards):
    edge = admit(method, "/a", (1, 1), [("Host", "h"), *headers], ["h"], "GET")
    assert edge.max_forwards == max_forwards


def test_forward_headers_decrements_max_forwards_in_place():
    out = forward_headers(
        [("Host", "h"), ("Max-Forwards", "7"), ("Accept", "*/*")], **_FORWARDING, max_forwards=7
    )
    assert out[:3] == [("Host", "h"), ("Max-Forwards", "6"), ("Accept", "*/*")]


@pytest.mark.parametrize(
    ("line", "digit"),
    [
        (b"GET /a HTTP/1.2\r\nHost: h\r\n\r\n", 14),
        (b"GET /a HTTP/1.9\r\n", 14),
        (b"GET /a HTTP/1.2", 14),  # refused at its digit, the line's end not in yet
        (b"GET /a HTTP/1.2\r", 14),
        (b"\r\n\r\nGET /a HTTP/1.2\r\n", 18),  # after empty lines
        (b"GET /a HTTP/1.1\r\n", -1),
        (b"GET /a HTTP/1.0\r\n", -1),
        (b"GET /a HTTP/2.0\r\n", -1),
        (b"GET /a HTTP/0.9\r\n", -1),
        (b"GET /a HTTP/1.23\r\n", -1),
        (b"GET /a HTTP/1.2x\r\n", -1),
        (b"GET /a HTTP/1.2 \r\n", -1),
        (b"GET /a http/1.2\r\n", -1),
        (b"GET /a HTTP/1.1\r\nX: HTTP/1.2\r\n", -1),  # a header is no request line
        (b"GET HTTP/1.2 HTTP/1.1\r\n", -1),  # the target is no version
        (b"HTTP/1.2", -1),  # nor a line that is nothing else
    ],
)
def test_newer_minor_finds_only_a_version_ending_the_request_line(line, digit):
    assert newer_minor(line, 0, len(line)) == digit
    assert newer_minor(bytearray(b"xx" + line), 2, len(line) + 2) == (
        digit + 2 if digit >= 0 else -1
    )
