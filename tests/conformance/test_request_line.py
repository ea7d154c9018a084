"""Request lines, targets, versions and methods at the edge, on raw sockets."""

from __future__ import annotations

import random
import socket

import pytest

from tests.conformance.checks import assert_refused, assert_rejected, forwarded_once
from tests.conformance.wire import Wire

REJECTED = {
    "leading-space": b" GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
    "tab-separator": b"GET\t/a HTTP/1.1\r\nHost: h\r\n\r\n",
    "trailing-space": b"GET /a HTTP/1.1 \r\nHost: h\r\n\r\n",
    "space-in-target": b"GET /pa th HTTP/1.1\r\nHost: h\r\n\r\n",
    "missing-target": b"GET HTTP/1.1\r\nHost: h\r\n\r\n",
    "lowercase-method": b"get /a HTTP/1.1\r\nHost: h\r\n\r\n",
    "bad-method-char": b"G@T /a HTTP/1.1\r\nHost: h\r\n\r\n",
    "unknown-method": b"FOOBAR /a HTTP/1.1\r\nHost: h\r\n\r\n",
    "version-lowercase": b"GET /a http/1.1\r\nHost: h\r\n\r\n",
    "version-no-minor": b"GET /a HTTP/1\r\nHost: h\r\n\r\n",
    "version-leading-zeros": b"GET /a HTTP/01.01\r\nHost: h\r\n\r\n",
    "version-space": b"GET /a HTTP/ 1.1\r\nHost: h\r\n\r\n",
    "version-3.0": b"GET /a HTTP/3.0\r\nHost: h\r\n\r\n",
    "version-9.9": b"GET /a HTTP/9.9\r\nHost: h\r\n\r\n",
    # Not HTTP/1.2 to 1.9 (served as HTTP/1.1), nor anything llhttp reads as a version.
    "version-1.10": b"GET /a HTTP/1.10\r\nHost: h\r\n\r\n",
    "version-1.23": b"GET /a HTTP/1.23\r\nHost: h\r\n\r\n",
    "version-1.2-letter": b"GET /a HTTP/1.2x\r\nHost: h\r\n\r\n",
    "version-1.2-trailing-space": b"GET /a HTTP/1.2 \r\nHost: h\r\n\r\n",
    "version-1.2-twice": b"GET /a HTTP/1.2 HTTP/1.2\r\nHost: h\r\n\r\n",
    "version-1.2-bare-lf": b"GET /a HTTP/1.2\nHost: h\n\n",
    "version-1.2-lowercase": b"GET /a http/1.2\r\nHost: h\r\n\r\n",
    "version-2.1": b"GET /a HTTP/2.1\r\nHost: h\r\n\r\n",
    "version-0.2": b"GET /a HTTP/0.2\r\nHost: h\r\n\r\n",
    "query-del": b"GET /a?x=\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
    "query-high-byte": b"GET /a?x=\xff HTTP/1.1\r\nHost: h\r\n\r\n",
    "fragment": b"GET /public#/../admin HTTP/1.1\r\nHost: h\r\n\r\n",
    "asterisk-with-get": b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
    "connect": b"CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n",
    "connect-internal": b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
    "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "binary-garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    + bytes(range(64))
    + b"\r\n\r\n",
}


@pytest.mark.parametrize("data", REJECTED.values(), ids=REJECTED.keys())
def test_malformed_request_line_is_rejected(e, data):
    assert_rejected(e, data, status=(400, 405, 501, 505))


def test_http09_simple_request_gets_no_answer_and_is_not_forwarded(e):
    with Wire(e.port) as w:
        w.send(b"GET /a\r\n")
        # Not a complete HTTP/1.x head: the proxy waits for more or closes; it never
        # answers in HTTP/0.9 style (a bare body) and never forwards.
        assert w.silent() == b"" or w.raw.startswith(b"HTTP/1.1 400")
    assert e.legacy.requests() == []


@pytest.mark.parametrize(
    "data",
    [
        b"GET /a HTTP/2.0\r\nHost: h\r\n\r\n",
        b"GET /a HTTP/0.9\r\nHost: h\r\n\r\n",
        b"GET /a\r\n\r\n",  # no version, then an empty line: llhttp reads HTTP/0.9
    ],
    ids=["http2", "http09-with-headers", "no-version"],
)
def test_an_unsupported_version_is_refused_in_http11(e, data):
    """The 505 is written in the version the proxy speaks: `HTTP/2.0 505` or `HTTP/0.9 505`
    (aiohttp's echo of the request's version) is no HTTP/1.x answer a client can read."""
    with Wire(e.port) as w:
        w.send(data)
        assert w.closed(timeout=5)
    assert w.raw.startswith(b"HTTP/1.1 505 "), w.raw[:80]
    assert e.legacy.requests() == []


@pytest.mark.parametrize("version", [b"1.2", b"1.9"])
def test_a_newer_http1_minor_version_is_served_as_http11(e, version):
    """RFC 9110 §2.5: a higher minor version of HTTP/1 is processed as HTTP/1.1, the
    highest the proxy implements (nginx does the same; llhttp alone refuses it, 400). It
    is answered `HTTP/1.1` and forwarded as HTTP/1.1, with the very target, Host and
    headers it was routed by; the connection persists as a 1.1 one does."""
    requests = [
        b"GET /svc/a?x=1 HTTP/%s\r\nHost: h\r\nX-Custom: 1\r\n\r\n" % version,
        b"GET /b HTTP/%s\r\nHost: other.example\r\n\r\n" % version,
        b"\r\nGET /c HTTP/%s\r\nHost: h\r\n\r\n" % version,  # after an empty line
        b"GET /d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    ]
    with Wire(e.port) as w:
        w.send(b"".join(requests))
        answers = [w.response() for _ in requests]
        assert w.closed()
    assert [a.status for a in answers] == [200, 200, 200, 200], answers
    assert w.raw.count(b"HTTP/1.1 200 ") == 4, w.raw[:300]
    legacy, svc = e.legacy.assert_clean(), e.svc.assert_clean()
    assert [(r.target, r.http_version, r.header("host")) for r in svc] == [
        ("/svc/a?x=1", "1.1", ["h"]),
        ("/b", "1.1", ["other.example"]),
    ]
    assert svc[0].header("x-custom") == ["1"]
    assert [(r.target, r.http_version) for r in legacy] == [("/c", "1.1"), ("/d", "1.1")]


def test_a_newer_http1_minor_version_with_a_chunked_body_is_served_as_http11(e):
    """The same with a chunked body (the aiohttp lane's), and a request behind it."""
    with Wire(e.port) as w:
        w.send(
            b"POST /svc/p HTTP/1.2\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
            b"GET /svc/q HTTP/1.2\r\nHost: h\r\n\r\n"
        )
        first, second = w.response("POST"), w.response()
    assert (first.status, second.status) == (200, 200)
    got = e.svc.assert_clean()
    assert [(r.method, r.target, r.http_version, r.body) for r in got] == [
        ("POST", "/svc/p", "1.1", b"hello"),
        ("GET", "/svc/q", "1.1", b""),
    ]


def test_a_newer_http1_minor_version_sent_a_byte_at_a_time_is_served(e):
    """llhttp refuses the version at its digit, before the line's end has arrived."""
    request = b"GET /a HTTP/1.2\r\nHost: h\r\nConnection: close\r\n\r\n"
    with Wire(e.port) as w:
        w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(request)):
            w.send(request[i : i + 1])
        assert w.response().status == 200
    assert [r.target for r in e.legacy.assert_clean()] == ["/a"]


def test_long_but_legal_request_line_is_served(e):
    target = "/" + "a" * 7900
    _, got = forwarded_once(e, f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert got.target == target


def test_http10_request_is_answered_in_http11_and_closed(e):
    """The status line says the proxy's version (RFC 9110 §2.5), so the close is said out
    loud: a 1.1 answer without `Connection: close` reads as persistent."""
    with Wire(e.port) as w:
        w.send(b"GET /a HTTP/1.0\r\nHost: h\r\n\r\n")
        assert w.closed(timeout=5)
    assert w.raw.startswith(b"HTTP/1.1 200 "), w.raw[:80]
    assert b"\r\nConnection: close\r\n" in w.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n", w.raw[:400]
    got = e.legacy.assert_clean()
    assert [(r.method, r.target, r.header("host")) for r in got] == [("GET", "/a", ["h"])]


def test_connection_close_is_honoured(e):
    with Wire(e.port) as w:
        resp = w.send(b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").response()
        assert resp.status == 200
        assert w.closed()
    assert e.legacy.assert_clean()[0].header("connection") == []


def test_head_response_has_no_body(e):
    with Wire(e.port) as w:
        resp = w.send(b"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n").response("HEAD")
        assert resp.status == 200 and resp.body == b""
        # the connection is still in sync: a GET right after gets its own answer
        resp = w.send(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n").response()
        assert b'"target": "/after"' in resp.body


def test_absolute_form_never_routes_by_another_host_than_it_forwards(e):
    """RFC 9112 §3.2.2: the target's authority replaces Host. Whatever the proxy does with
    absolute-form (serve it or refuse it), the route must be chosen by the very host the
    upstream receives: `other.example` is served by `svc`, `h` by legacy."""
    with Wire(e.port) as w:
        resp = w.send(b"GET http://other.example/a HTTP/1.1\r\nHost: h\r\n\r\n").response()
        if resp.status == 400:
            assert w.closed()
    legacy, svc = e.legacy.assert_clean(), e.svc.assert_clean()
    if resp.status == 400:
        assert legacy == [] and svc == []
        return
    assert resp.status == 200 and legacy == []
    assert [(r.target, r.header("host")) for r in svc] == [("/a", ["other.example"])]


@pytest.mark.parametrize(
    "target",
    [b"/q?", b"/q??x", b"/q?&&a=1&a=2&b", b"/svc/q?", b"/svc/q?a=%2F%zz+b;c", b"/q"],
)
def test_query_is_forwarded_byte_for_byte(e, target):
    """The query, an empty one after a bare `?` included, reaches the upstream as sent
    (signed URLs and caches can tell `/q?` from `/q`)."""
    with Wire(e.port) as w:
        resp = w.send(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n").response()
        assert resp.status == 200
    seen = e.svc.assert_clean() if target.startswith(b"/svc") else e.legacy.assert_clean()
    assert [r.target for r in seen] == [target.decode()]


def test_host_header_routes_and_is_forwarded_unchanged(e):
    with Wire(e.port) as w:
        resp = w.send(b"GET /a HTTP/1.1\r\nHost: OTHER.example:8080\r\n\r\n").response()
        assert resp.status == 200
    assert e.legacy.requests() == []
    assert [r.header("host") for r in e.svc.assert_clean()] == [["OTHER.example:8080"]]


_RNG = random.Random(42)
MALFORMED = {
    "binary-garbage": bytes(_RNG.randrange(256) for _ in range(256)),
    "url-100k": b"GET /" + b"A" * 100_000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
    "header-value-100k": b"GET /a HTTP/1.1\r\nHost: h\r\nX-Big: " + b"B" * 100_000 + b"\r\n\r\n",
    "header-name-100k": b"GET /a HTTP/1.1\r\nHost: h\r\n" + b"A" * 100_000 + b": v\r\n\r\n",
    "10k-headers": b"GET /a HTTP/1.1\r\nHost: h\r\n"
    + b"".join(b"X-H-%d: value\r\n" % i for i in range(10_000))
    + b"\r\n",
    "method-100k": b"A" * 100_000 + b" / HTTP/1.1\r\nHost: h\r\n\r\n",
    "nul-in-url": b"GET /\x00test HTTP/1.1\r\nHost: h\r\n\r\n",
    "control-chars-in-value": b"GET /a HTTP/1.1\r\nHost: h\r\nX-Test: abc\x07\x08\x0bdef\r\n\r\n",
    "non-ascii-header-name": b"GET /a HTTP/1.1\r\nHost: h\r\nX-T\xc3\xabst: value\r\n\r\n",
    "non-ascii-url": b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
    "whitespace-only-line": b"   \r\n\r\n",
    "incomplete-head": b"GET /a HTTP/1.1\r\nHost: h\r\nX-Test: value",
    "nothing": b"",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_is_refused_and_never_forwarded(e, data):
    assert_refused(e, data)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /" + b"A" * 10_000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
        (MALFORMED["url-100k"], 414),
        (b"GET /a HTTP/1.1\r\nHost: h\r\nX-Big: " + b"B" * 10_000 + b"\r\n\r\n", 431),
        (MALFORMED["header-value-100k"], 431),
        (MALFORMED["header-name-100k"], 431),
        (MALFORMED["10k-headers"], 431),
    ],
    ids=["url-10k", "url-100k", "value-10k", "value-100k", "name-100k", "10k-headers"],
)
def test_a_long_url_is_414_and_too_much_header_431(e, data, status):
    """RFC 9110 §15.5.15 and RFC 6585 §5: the client learns which limit it hit."""
    assert_refused(e, data, (status,))


def test_http10_keep_alive_is_honoured_when_the_length_is_known(e):
    with Wire(e.port) as w:
        req = b"GET /k HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"
        first = w.send(req).response()
        second = w.send(req).response()
    assert first.status == second.status == 200
    assert [r.target for r in e.legacy.assert_clean()] == ["/k", "/k"]


@pytest.mark.parametrize(("count", "status"), [(7, 200), (9, 431)])
def test_header_fields_are_bounded_together_not_only_one_by_one(e, count, status):
    """100 fields of 8 KiB each would pass the per-field and count limits: 800 KiB a
    request. The default total is 64 KiB (Envoy: 60 KiB, nginx: 32 KiB)."""
    fields = b"".join(b"X-Big-%d: %s\r\n" % (i, b"v" * 8000) for i in range(count))
    with Wire(e.port) as w:
        resp = w.send(b"GET /big HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n").response()
    assert resp.status == status, resp.body[:200]
    if status == 431:
        assert e.legacy.requests() == []


@pytest.mark.parametrize(
    ("body", "after", "status"),
    [
        (b"a" * 100_000, b"GET /a HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"line\n" * 20_000, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
    ],
    ids=["header-after-a-body-without-line-breaks", "url-after-a-body-of-lines"],
)
def test_a_body_before_on_the_connection_does_not_change_414_or_431(e, body, after, status):
    """Body bytes are not a head: what the connection carried before does not decide which
    limit the next request hit."""
    head = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body)
    with Wire(e.port) as w:
        first = w.send(head).send(body).response("POST")
        second = w.send(after).response()
    assert (first.status, second.status) == (200, status)


@pytest.mark.parametrize(
    "data",
    [
        b"HEAD / HTTP/1.1\r\nX-A : b\r\nHost: h\r\n\r\n",
        b"HEAD /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
    ],
    ids=["bad-field-name", "url-too-long", "field-too-long"],
)
def test_a_refused_head_request_gets_no_body(e, data):
    """The answer to HEAD has no body (RFC 9110 §9.3.2), refusals of the parser included:
    aiohttp answered the request it could not parse as a GET, body and all."""
    with Wire(e.port) as w:
        resp = w.send(data).response("HEAD")
        assert resp.status in (400, 414, 431)
        assert w.closed()
    assert w.raw.endswith(b"\r\n\r\n"), w.raw[-120:]
    assert e.legacy.requests() == []


_REFUSED_HEAD = b"HEAD / HTTP/1.1\r\nX-A : b\r\nHost: h\r\n\r\n"


@pytest.mark.parametrize(
    "refused",
    [_REFUSED_HEAD, b"HEAD / HTTP/1.0\r\nHost: h\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n"],
    ids=["bad-field-name", "http10-repeated-field"],
)
@pytest.mark.parametrize(
    "behind",
    [
        b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n",
        b"1\r\nx\r\n0\r\n\r\n",
        b"\r\n\r\nGET /next HTTP/1.1\r\n",
    ],
    ids=["pipelined-request", "stray-body", "empty-lines"],
)
def test_a_refused_head_request_with_bytes_behind_it_gets_no_body(e, refused, behind):
    """What follows a head the parser refused, in the same read, is no request: the edge
    measured it as the next request line, and the refusal of the HEAD request in front
    of it went out with a body (a client takes it for the next response)."""
    with Wire(e.port) as w:
        assert w.send(refused + behind).response("HEAD").status == 400
        assert w.closed()
    assert w.raw.endswith(b"\r\n\r\n"), w.raw[-120:]
    assert e.legacy.requests() == []


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"\r\n" + _REFUSED_HEAD, 400),
        (b"\n" + _REFUSED_HEAD, 400),
        (b"\r\n\r\n\n" + _REFUSED_HEAD, 400),
        (b"\r\nHEAD /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
        (b"\r\nGET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
    ],
    ids=["crlf", "lf", "three-empty-lines", "head-url-too-long", "get-url-too-long"],
)
def test_empty_lines_before_a_refused_request_line_are_no_part_of_it(e, data, status):
    """RFC 9112 §2.2: empty lines before a request line are ignored, and llhttp does: a
    refused HEAD behind one is still a HEAD (no body in its answer), and a long request
    line behind one is still a request line (414, not 431). The edge took the empty line
    for the request line: its HEAD check saw `\r\nHEA`, and the line was measured done."""
    with Wire(e.port) as w:
        method = "HEAD" if b"HEAD" in data[:9] else "GET"
        resp = w.send(data).response(method)
        assert resp.status == status
        assert w.closed()
    if method == "HEAD":
        assert w.raw.endswith(b"\r\n\r\n"), w.raw[-120:]
    assert e.legacy.requests() == []


@pytest.mark.parametrize(
    "first",
    [
        b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70000,
    ],
    ids=["small-body", "chunked-body", "large-body"],
)
def test_a_refused_head_request_after_a_body_and_an_empty_line_gets_no_body(e, first):
    """A client that ends a body with a stray CRLF (as old browsers did after a POST) and
    pipelines a HEAD the parser refuses: the refusal has no body."""
    with Wire(e.port) as w:
        assert w.send(first + b"\r\n" + _REFUSED_HEAD).response("POST").status == 200
        assert w.response("HEAD").status == 400
        assert w.closed()
    assert w.raw.endswith(b"\r\n\r\n"), w.raw[-120:]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"HTTP/2 connection preface: this listener speaks"),
        (b"GET /a HTTP/3.0\r\nHost: h\r\n\r\n", b"bad request line: Invalid HTTP version"),
        (b"GET /a HTTP/1.1 x\r\nHost: h\r\n\r\n", b"bad request line: Expected CRLF after"),
    ],
    ids=["http2-preface", "version-3.0", "junk-after-version"],
)
def test_a_refused_request_line_says_what_is_wrong(e, data, says):
    """llhttp's words for these ("Pause on PRI/Upgrade", "Bad status line") tell a client
    nothing; the answer says what was wrong, and still quotes none of the client's bytes."""
    resp = assert_rejected(e, data)
    assert says in resp.body, resp.body
    assert b"HTTP/3.0" not in resp.body and b"SM" not in resp.body
