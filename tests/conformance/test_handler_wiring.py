"""Probes for the edge checks the handler runs before routing (see docs/proxy.md,
"Conformance decisions"): request-target forms, versions, Host, Expect, framing, and a
chunked body that breaks its framing after streaming began.
"""

from __future__ import annotations

import pytest

from tests.conformance.checks import (
    assert_rejected,
    assert_serving,
    forwarded_once,
    wait_upstream_quiet,
)
from tests.conformance.wire import ProtocolViolation, Wire

CHUNKED = b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
# Bigger than any body the proxy may buffer, so forwarding starts before the body ends.
BIG_CHUNK = b"%x\r\n" % (2 * 1024 * 1024) + b"x" * (2 * 1024 * 1024) + b"\r\n"

REJECTED = {
    # (request, status)
    "http09-with-headers": (b"GET /a HTTP/0.9\r\nHost: h\r\n\r\n", (400, 505)),
    "http2-in-a-1x-line": (b"GET /a HTTP/2.0\r\nHost: h\r\n\r\n", (400, 505)),
    "te-in-http10": (
        b"POST /a HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "te-unknown-coding": (
        b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    "te-empty": (
        b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \r\nContent-Length: 5\r\n\r\nhello",
        400,
    ),
    "host-empty": (b"GET /a HTTP/1.1\r\nHost: \r\n\r\n", 400),
    "host-userinfo": (b"GET /a HTTP/1.1\r\nHost: user@h\r\n\r\n", 400),
    "host-path": (b"GET /a HTTP/1.1\r\nHost: h/path\r\n\r\n", 400),
    "host-space": (b"GET /a HTTP/1.1\r\nHost: h h\r\n\r\n", 400),
    "absolute-userinfo": (b"GET http://user@h/a HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "absolute-ftp": (b"GET ftp://h/a HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "expect-unknown": (b"GET /a HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", 417),
    "trace": (b"TRACE /a HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer secret\r\n\r\n", 405),
}


@pytest.mark.parametrize(("data", "status"), REJECTED.values(), ids=REJECTED.keys())
def test_edge_rejections(e, data, status):
    resp = assert_rejected(e, data, status)
    if resp.status == 405:
        assert "GET" in resp.header("allow")[0]


def test_options_star_is_answered_by_the_proxy(e):
    with Wire(e.port) as w:
        resp = w.send(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").response()
        assert resp.status == 200 and "OPTIONS" in resp.header("allow")[0]
        resp = w.send(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n").response()
        assert resp.status == 200
    assert [r.target for r in e.legacy.requests()] == ["/after"]


@pytest.mark.parametrize(
    "head",
    [
        b"OPTIONS /a HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\n\r\n",  # the fast lane's kind
        b"OPTIONS /a HTTP/1.1\r\nHost: h\r\nMax-Forwards: 0\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n0\r\n\r\n",  # the aiohttp lane's
    ],
    ids=["plain", "chunked"],
)
def test_options_with_max_forwards_zero_is_answered_by_the_proxy(e, head):
    """RFC 9110 §7.6.2: the hop that receives Max-Forwards: 0 is the final recipient."""
    with Wire(e.port) as w:
        resp = w.send(head).response("OPTIONS")
        assert resp.status == 200 and "OPTIONS" in resp.header("allow")[0]
        assert resp.header("x-request-id")
        resp = w.send(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n").response()
        assert resp.status == 200
    assert [r.target for r in e.legacy.requests()] == ["/after"]


@pytest.mark.parametrize(
    ("request_head", "forwarded"),
    [
        (b"OPTIONS /a HTTP/1.1\r\nHost: h\r\nMax-Forwards: 5\r\n\r\n", ["4"]),
        (b"OPTIONS /a HTTP/1.1\r\nHost: h\r\nMax-Forwards: 1\r\n\r\n", ["0"]),
        (
            b"OPTIONS /a HTTP/1.1\r\nHost: h\r\nMax-Forwards: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ["2"],
        ),
        # Only OPTIONS (TRACE is refused at the edge) counts hops; a value nobody can act
        # on passes as it came.
        (b"GET /a HTTP/1.1\r\nHost: h\r\nMax-Forwards: 5\r\n\r\n", ["5"]),
        (b"OPTIONS /a HTTP/1.1\r\nHost: h\r\nMax-Forwards: x\r\n\r\n", ["x"]),
        # Past 4300 digits Python's `int` raises: capped, not a 500 (RFC 9110 §7.6.2 lets a
        # hop forward its own maximum).
        (
            b"OPTIONS /a HTTP/1.1\r\nHost: h\r\nMax-Forwards: " + b"9" * 5000 + b"\r\n\r\n",
            [str(2**31 - 1)],
        ),
    ],
    ids=["options", "options-last-hop", "options-chunked", "get", "not-a-number", "huge"],
)
def test_max_forwards_is_decremented_on_options(e, request_head, forwarded):
    method = request_head.split(b" ", 1)[0].decode()
    _, received = forwarded_once(e, request_head, method)
    assert received.header("max-forwards") == forwarded


@pytest.mark.parametrize(
    ("target", "host", "upstream", "forwarded_host"),
    [
        (b"http://other.example/a?x=1", b"h", "svc", "other.example"),
        (b"http://h/a?x=1", b"other.example", "legacy", "h"),
        (b"HTTP://Other.Example:8080/a?x=1", b"Other.Example:8080", "svc", "Other.Example:8080"),
    ],
)
def test_absolute_form_routes_and_forwards_by_its_authority(
    e, target, host, upstream, forwarded_host
):
    with Wire(e.port) as w:
        resp = w.send(b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").response()
        assert resp.status == 200, resp.body
    rec = e.svc if upstream == "svc" else e.legacy
    other = e.legacy if upstream == "svc" else e.svc
    assert other.requests() == []
    got = rec.assert_clean()
    assert [(r.target, r.header("host")) for r in got] == [("/a?x=1", [forwarded_host])]


def test_http10_without_host_is_forwarded_with_the_upstream_authority(e):
    with Wire(e.port) as w:
        w.send(b"GET /a HTTP/1.0\r\n\r\n")
        assert w.closed(timeout=5)
    assert b" 200 " in w.raw.split(b"\r\n", 1)[0], w.raw[:200]
    (got,) = e.legacy.assert_clean()
    assert got.header("host") == [f"127.0.0.1:{e.legacy.port}"]


def test_no_100_continue_for_an_http10_client(e):
    with Wire(e.port) as w:
        w.send(
            b"POST /a HTTP/1.0\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"
        )
        assert w.closed(timeout=5)
    assert not w.raw.startswith(b"HTTP/1.1 100"), w.raw[:100]
    assert w.raw.split(b" ", 2)[1] == b"200", w.raw[:100]
    (got,) = e.legacy.assert_clean()
    assert got.body == b"hello"


def test_valid_hosts_are_still_served(e):
    for host in (b"h", b"h:8080", b"127.0.0.1", b"[::1]:8080"):
        e.clear()
        _, got = forwarded_once(e, b"GET /a HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert got.header("host") == [host.decode()]


@pytest.mark.parametrize(
    "bad_tail",
    [b"zz\r\nabc\r\n0\r\n\r\n", b"0\r\nContent-Length: 50\r\n\r\n", b"5\r\nhello!!\r\n0\r\n\r\n"],
    ids=["bad-chunk-size", "framing-trailer", "chunk-spill"],
)
def test_framing_error_after_streaming_began_cuts_the_upstream_request(e, bad_tail):
    """The head and a first chunk are already upstream when the framing turns bad: the
    upstream must see a cut, never a complete request, and the client no success."""
    from tests.support.procs import wait_until

    with Wire(e.port) as w:
        w.send(CHUNKED + BIG_CHUNK)
        wait_until(lambda: any(c.raw for c in e.legacy.conns), timeout=5, what="forwarding")
        w.send(bad_tail)
        try:
            resp = w.response()
        except ProtocolViolation:
            pass  # cut without an answer: acceptable
        else:
            assert resp.status >= 400, resp.status
        assert w.closed()
    wait_upstream_quiet(e)
    assert e.legacy.requests() == [], "the upstream saw a complete request"
    assert_serving(e)


def test_a_chunked_body_reaches_django_style_wsgi(stack):
    """gunicorn hands Django a chunked body, but Django reads CONTENT_LENGTH bytes: 0. The
    proxy sends bodies that fit in memory with a length."""
    import json

    with Wire(stack.port) as w:
        resp = w.send(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        ).response()
    assert resp.status == 200
    assert json.loads(resp.body)["body"] == "hello world"
