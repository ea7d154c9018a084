"""Request framing on raw sockets: what the proxy reads is what the upstream reads.

Every ambiguous or malformed framing must be answered 400 with the connection closed and
nothing forwarded; every valid but unusual framing must reach the upstream re-framed as a
single request that a strict parser (h11) reads with the same body.
"""

from __future__ import annotations

import socket

import pytest

from tests.conformance.checks import (
    assert_rejected,
    assert_serving,
    forwarded_once,
    wait_upstream_quiet,
)
from tests.conformance.wire import Wire
from tests.support.procs import wait_until

H = b"POST /a HTTP/1.1\r\nHost: h\r\n"
CHUNKED = H + b"Transfer-Encoding: chunked\r\n\r\n"
# Bigger than any body the proxy may buffer, so forwarding starts before the body ends.
BIG_CHUNK = b"%x\r\n" % (2 * 1024 * 1024) + b"x" * (2 * 1024 * 1024) + b"\r\n"

REJECTED = {
    # CL.TE and TE.CL: both framings in one request
    "cl-te": H + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-cl": H + b"Transfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\n",
    "cl-te-smuggle": H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
    # TE.TE: obfuscated or repeated codings
    "te-xchunked": H + b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\nhello",
    "te-xchunked-alone": H + b"Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-trailing-tab": H + b"Transfer-Encoding: chunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-trailing-space-cl": H + b"Transfer-Encoding: chunked \r\nContent-Length: 5\r\n\r\nhello",
    "te-vtab": H + b"Transfer-Encoding:\x0bchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-formfeed": H + b"Transfer-Encoding: \x0cchunked\r\nContent-Length: 5\r\n\r\nhello",
    "te-nul": H + b"Transfer-Encoding: chunked\x00\r\nContent-Length: 5\r\n\r\nhello",
    "te-twice": H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    "te-chunked-chunked": H + b"Transfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-gzip-then-chunked-headers": H + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked"
    b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-chunked-then-identity": H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity"
    b"\r\nContent-Length: 5\r\n\r\nhello",
    "te-not-last": H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te-identity-cl": H + b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello",
    "te-params": H + b"Transfer-Encoding: chunked;ext=val\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-space-before-colon": H + b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello",
    "te-http10-with-cl": b"POST /a HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 5\r\n\r\nhello",
    "te-trailing-comma-cl": H + b"Transfer-Encoding: chunked,\r\nContent-Length: 5\r\n\r\nhello",
    "te-tab-cl": H + b"Transfer-Encoding:\tchunked\r\nContent-Length: 5\r\n\r\nhello",
    "te-obs-fold-cl": H + b"Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\nhello",
    "cl-te-desync-byte": H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
    # Content-Length that is not one plain decimal number
    "cl-underscore": H + b"Content-Length: 1_0\r\n\r\nhelloworld",
    "cl-minus-zero": H + b"Content-Length: -0\r\n\r\n",
    "cl-plus": H + b"Content-Length: +5\r\n\r\nhello",
    "cl-minus": H + b"Content-Length: -1\r\n\r\n",
    "cl-list-same": H + b"Content-Length: 5, 5\r\n\r\nhello",
    "cl-list-differ": H + b"Content-Length: 5, 10\r\n\r\nhelloworld",
    "cl-list-triple": H + b"Content-Length: 5, 5, 5\r\n\r\nhello",
    "cl-twice-same": H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "cl-twice-differ": H + b"Content-Length: 5\r\nContent-Length: 10\r\n\r\nhelloworld",
    "cl-internal-space": H + b"Content-Length: 1 0\r\n\r\nhello12345",
    "cl-hex": H + b"Content-Length: 0x5\r\n\r\nhello",
    "cl-octal": H + b"Content-Length: 0o5\r\n\r\nhello",
    "cl-letters": H + b"Content-Length: abc\r\n\r\n",
    "cl-overflow": H + b"Content-Length: 99999999999999999999999\r\n\r\nhello",
    # chunk sizes
    "chunk-overflow": CHUNKED + b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "chunk-overflow-wrap": CHUNKED + b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    "chunk-negative": CHUNKED + b"-1\r\nhello\r\n0\r\n\r\n",
    "chunk-plus": CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n",
    "chunk-leading-space": CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n",
    "chunk-trailing-space": CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n",
    "chunk-underscore": CHUNKED + b"1_0\r\nhello world!!!!!\r\n0\r\n\r\n",
    "chunk-hex-prefix": CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n",
    "chunk-not-hex": CHUNKED + b"zz\r\nabc\r\n0\r\n\r\n",
    # framing fields in a trailer section
    "trailer-content-length": CHUNKED + b"5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n",
    "trailer-transfer-encoding": CHUNKED + b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
    "chunk-size-bare-cr": CHUNKED + b"5\rhello\r\n0\r\n\r\n",
    # chunk extensions that are not `;token[=value]`
    "ext-bare-semicolon": CHUNKED + b"5;\r\nhello\r\n0\r\n\r\n",
    "ext-bad-token": CHUNKED + b"5;bad[=x\r\nhello\r\n0\r\n\r\n",
    "ext-nul": CHUNKED + b"5;\x00ext\r\nhello\r\n0\r\n\r\n",
    "ext-bare-cr": CHUNKED + b"5;a\rX\r\nhello\r\n0\r\n\r\n",
    "ext-bare-lf": CHUNKED + b"5;\nhello\r\n0\r\n\r\n",
    "ext-space-before": CHUNKED + b"5 ;x\r\nhello\r\n0\r\n\r\n",
    # chunk data and line endings
    "chunk-spill": CHUNKED + b"5\r\nhello!!\r\n0\r\n\r\n",
    "chunk-missing-crlf": CHUNKED + b"5\r\nhelloXX0\r\n\r\n",
    "chunk-lf-after-data": CHUNKED + b"5\r\nhello\n0\r\n\r\n",
    "chunk-lf-only": CHUNKED + b"5\nhello\n0\n\n",
    "chunk-lf-trailer-end": CHUNKED + b"5\r\nhello\r\n0\r\n\n",
    # header block
    "bare-lf-everywhere": b"GET /a HTTP/1.1\nHost: h\n\n",
    "bare-lf-header": b"GET /a HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
    "bare-cr-header": b"GET /a HTTP/1.1\r\nHost: h\r\nX: val\rue\r\n\r\n",
    "cr-only-request-line": b"GET / HTTP/1.1\rHost: h\r\n\r\n",
    "nul-in-value": b"GET /a HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
    "nul-in-name": b"GET /a HTTP/1.1\r\nHost: h\r\nX\x00: ab\r\n\r\n",
    "name-parens": b"GET /a HTTP/1.1\r\nHost: h\r\nX(y): ab\r\n\r\n",
    "name-space": b"GET /a HTTP/1.1\r\nHost: h\r\nX y: ab\r\n\r\n",
    "name-bracket": b"GET /a HTTP/1.1\r\nHost: h\r\nBad[Name: value\r\n\r\n",
    "name-empty": b"GET /a HTTP/1.1\r\nHost: h\r\n: ab\r\n\r\n",
    "no-colon": b"GET /a HTTP/1.1\r\nHost: h\r\nNoColonHere\r\n\r\n",
    "space-before-colon": b"GET /a HTTP/1.1\r\nHost: h\r\nX-Foo : bar\r\n\r\n",
    "obs-fold": b"GET /a HTTP/1.1\r\nHost: h\r\nX-Foo: bar\r\n  baz\r\n\r\n",
    "whitespace-line-before-headers": b"GET /a HTTP/1.1\r\n \r\nHost: h\r\n\r\n",
    "host-missing": b"GET /a HTTP/1.1\r\nX: y\r\n\r\n",
    "host-twice-same": b"GET /a HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",
    "host-twice-differ": b"GET /a HTTP/1.1\r\nHost: h\r\nHost: other.example\r\n\r\n",
}


@pytest.mark.parametrize("data", REJECTED.values(), ids=REJECTED.keys())
def test_ambiguous_framing_is_rejected_and_never_forwarded(e, data):
    assert_rejected(e, data)


def test_smuggled_request_behind_a_rejected_one_is_never_answered(e):
    with Wire(e.port) as w:
        w.send(REJECTED["cl-te-smuggle"])
        assert w.response().status == 400
        assert w.closed()
    assert b"/smuggled" not in w.raw
    assert e.legacy.requests() == []


ACCEPTED = {
    # (request, method, body the upstream must receive)
    "te-extra-ows": (H + b"Transfer-Encoding:  chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", b"hello"),
    "te-capitalized": (H + b"Transfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", b"hello"),
    "cl-ows": (H + b"Content-Length:  5 \r\n\r\nhello", b"hello"),
    "cl-leading-zeros": (H + b"Content-Length: 005\r\n\r\nhello", b"hello"),
    "cl-zero": (H + b"Content-Length: 0\r\n\r\n", b""),
    "cl-double-zero": (H + b"Content-Length: 00\r\n\r\n", b""),
    "cl-0200-is-decimal": (H + b"Content-Length: 0200\r\n\r\n" + b"A" * 200, b"A" * 200),
    "no-cl-no-te": (H + b"\r\n", b""),
    "chunk-ext": (CHUNKED + b"5;ext=value\r\nhello\r\n0\r\n\r\n", b"hello"),
    "chunk-ext-quoted": (CHUNKED + b'5;a="b\\"c"\r\nhello\r\n0\r\n\r\n', b"hello"),
    "chunk-leading-zeros": (CHUNKED + b"0005\r\nhello\r\n0\r\n\r\n", b"hello"),
    "chunk-uppercase-hex": (CHUNKED + b"A\r\nhelloworld\r\n0\r\n\r\n", b"helloworld"),
    "chunk-multi": (CHUNKED + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    "chunk-empty": (CHUNKED + b"0\r\n\r\n", b""),
    "chunk-trailer": (CHUNKED + b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n", b"hello"),
}


@pytest.mark.parametrize(("data", "body"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_valid_framing_reaches_upstream_as_one_clean_request(e, data, body):
    _, got = forwarded_once(e, data)
    assert got.method == "POST" and got.target == "/a"
    assert got.body == body
    lengths = got.header("content-length")
    codings = got.header("transfer-encoding")
    # Exactly one framing, in canonical form: the upstream cannot frame it differently.
    assert len(lengths) + len(codings) <= 1, got.headers
    assert all(v == str(len(body)) for v in lengths), lengths
    assert all(v == "chunked" for v in codings), codings


def test_content_length_is_forwarded_in_canonical_form(e):
    _, got = forwarded_once(e, H + b"Content-Length: 0005\r\n\r\nhello")
    assert got.header("content-length") == ["5"]


def test_underscore_header_twins_are_not_forwarded(e):
    # Django/WSGI reads X_Forwarded_For as X-Forwarded-For; it must not get past the proxy.
    _, got = forwarded_once(
        e,
        b"GET /a HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nTransfer_Encoding: chunked"
        b"\r\nX-Fine: ok\r\n\r\n",
    )
    names = [k for k, _ in got.headers]
    assert not any("_" in n for n in names), names
    assert got.header("x-forwarded-for") == ["127.0.0.1"]
    assert got.header("x-fine") == ["ok"]


def test_get_with_a_body_keeps_its_body(e):
    _, got = forwarded_once(e, b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
    assert (got.method, got.body) == ("GET", b"hello")


def test_leading_empty_lines_before_the_request_line_are_ignored(e):
    _, got = forwarded_once(e, b"\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n")
    assert got.target == "/a"


def test_pipelined_requests_are_answered_in_order(e):
    with Wire(e.port) as w:
        w.send(
            b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
            b"POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /three HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        targets = [w.response().body for _ in range(3)]
    assert [b'"target": "/one"' in targets[0], b'"target": "/two"' in targets[1]] == [True, True]
    assert b'"target": "/three"' in targets[2]
    got = e.legacy.assert_clean()
    assert [(r.method, r.target, r.body) for r in got] == [
        ("GET", "/one", b""),
        ("POST", "/two", b"hello"),
        ("GET", "/three", b""),
    ]


def test_pipelined_request_after_a_rejected_one_is_not_answered(e):
    with Wire(e.port) as w:
        w.send(
            b"GET /a HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        assert w.response().status == 400
        assert w.closed()
    assert e.legacy.requests() == []


@pytest.mark.parametrize(
    "partial",
    [
        CHUNKED + BIG_CHUNK,  # no last chunk
        CHUNKED + BIG_CHUNK + b"0\r\n",  # last chunk without the final CRLF
        # short body, longer than the listener buffers whole: streamed, so cut mid-way
        H + b"Content-Length: %d\r\n\r\n" % (4 * 1024 * 1024) + b"x" * (2 * 1024 * 1024),
    ],
    ids=["no-last-chunk", "no-final-crlf", "short-content-length"],
)
def test_incomplete_body_never_becomes_a_complete_upstream_request(e, partial):
    """The client gives up mid-body: the upstream must see a cut, not a shorter request."""
    sock = socket.create_connection(("127.0.0.1", e.port), timeout=5)
    sock.sendall(partial)
    # Wait until the proxy has started forwarding (the head reached the upstream).
    wait_until(lambda: any(c.raw for c in e.legacy.conns), timeout=5, what="forwarding")
    sock.close()
    wait_upstream_quiet(e)
    assert e.legacy.requests() == [], "the upstream saw a complete request the client never sent"
    assert_serving(e)


def test_a_small_short_body_never_reaches_the_upstream(e):
    """A small body is read whole before anything goes upstream (the fast lane): a client
    that stops short leaves the upstream without even a head."""
    with socket.create_connection(("127.0.0.1", e.port), timeout=5) as sock:
        sock.sendall(H + b"Content-Length: 10\r\n\r\nhello")
        # A complete request behind it on another connection is served meanwhile.
        assert_serving(e)
    assert_serving(e)  # one more round trip: the close has been seen by now
    assert not any(b"POST /a" in c.raw for c in e.legacy.conns)


@pytest.mark.parametrize(
    "trailer",
    [
        b"Host: evil.example",
        b"Authorization: Bearer evil",
        b"Content-Type: text/evil",
    ],
    ids=["host", "authorization", "content-type"],
)
def test_trailer_fields_never_reach_the_upstream(e, trailer):
    """Trailers may not carry framing, routing or credentials (RFC 9110 §6.5.1); the proxy
    re-chunks the body and drops them."""
    _, got = forwarded_once(e, CHUNKED + b"5\r\nhello\r\n0\r\n" + trailer + b"\r\n\r\n")
    assert got.body == b"hello"
    assert all(b"evil" not in c.raw for c in e.legacy.conns)


@pytest.mark.parametrize(
    "trailer",
    [b"Host: other.example", b"Authorization: Bearer evil"],
    ids=["host", "authorization"],
)
@pytest.mark.parametrize("when", ["same-packet", "later", "trailer-split"])
def test_a_trailer_field_never_reaches_the_next_request_on_the_connection(e, trailer, when):
    """aiohttp's C parser (3.14) keeps a chunked body's last trailer field pending past the
    end of the message and adds it to the next request it parses on the connection (a
    `Host` that reroutes it, another user's credentials behind a load balancer). So after
    trailer fields nothing more is parsed: the request is answered with
    `Connection: close`, whether the next request came in the same packet or later, and
    whether the trailer section came in one piece or two."""
    head = CHUNKED + BIG_CHUNK + b"5\r\nhello\r\n0\r\n"  # streamed upstream as it comes
    after = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
    with Wire(e.port) as w:
        if when == "same-packet":
            w.send(head + trailer + b"\r\n\r\n" + after)
        elif when == "later":
            w.send(head + trailer + b"\r\n\r\n")
        else:
            w.send(head + trailer[:3])
            # Once "hello" is upstream, the proxy has read up to the cut in the trailer.
            wait_until(lambda: any(c.raw.endswith(b"hello\r\n") for c in e.legacy.conns))
            w.send(trailer[3:] + b"\r\n\r\n" + after)
        first = w.response("POST")
        assert first.status == 200
        if when != "later":
            w.send(after)
        assert w.closed()
    got = e.legacy.assert_clean() + e.svc.assert_clean()
    assert [(r.method, r.target, r.body) for r in got] == [("POST", "/a", b"x" * 2**21 + b"hello")]
    assert all(b"evil" not in c.raw for c in e.legacy.conns + e.svc.conns)
    assert_serving(e)


def test_a_trailer_field_behind_a_declined_upgrade_never_reaches_the_next_request(e):
    """aiohttp parses what follows a WebSocket handshake only once the handler declined it
    (here the upstream answers 200, not 101), and then all at once, past the lane's check
    for trailer fields: a trailer `Authorization` reached the request after it."""
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    evil = CHUNKED + b"5\r\nhello\r\n0\r\nAuthorization: Bearer evil\r\n\r\n"
    with Wire(e.port) as w:
        w.send(upgrade + evil + b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        assert w.response().status == 502  # the upstream refused the upgrade
        second = w.response("POST")
        assert second.status == 200 and second.header("connection") == ["close"]
        assert w.closed()
    assert all(b"evil" not in c.raw and b"/next" not in c.raw for c in e.legacy.conns)
    assert_serving(e)


def test_a_trailer_after_an_early_answer_still_ends_the_connection(e):
    """The upstream refuses before it reads the body; the body, with trailer fields,
    comes anyway (and is read to be dropped, if the answer went first): the connection
    must close after the answer, and the request behind it must not be parsed."""
    e.legacy.script(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n", early=True)
    with Wire(e.port) as w:
        w.send(CHUNKED.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
        w.wait_for(b"\r\n\r\n")  # 100 Continue (or the final answer)
        w.send(
            b"5\r\nhello\r\n0\r\nAuthorization: Bearer evil\r\n\r\n"
            b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        assert w.response("POST").status in (413, 502)
        assert w.closed()
    assert all(b"evil" not in c.raw and b"/next" not in c.raw for c in e.legacy.conns)
    assert_serving(e)


# A multipart form ends its data with CRLF, so its last chunk's data and the chunk's own
# CRLF make an empty line just before the last chunk.
MULTIPART = b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--b--\r\n"
CRLF_ENDED = [
    b"%x\r\n" % len(MULTIPART) + MULTIPART + b"\r\n0\r\n\r\n",
    b"3\r\na\r\n\r\n0;x=y\r\n\r\n",
]


@pytest.mark.parametrize(
    "body",
    [b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n", b"5;ext=1\r\nhello\r\n00;x\r\n\r\n", *CRLF_ENDED],
    ids=["body", "empty", "extensions", "multipart", "crlf-data"],
)
def test_a_chunked_body_without_trailers_keeps_the_connection(e, body):
    with Wire(e.port) as w:
        first = w.send(CHUNKED + body).response("POST")
        assert first.status == 200 and first.header("connection") == []
        second = w.send(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n").response()
        assert second.status == 200 and b'"target": "/next"' in second.body
    got = e.legacy.assert_clean()
    assert [(r.method, r.target) for r in got] == [("POST", "/a"), ("GET", "/next")]


# Chunk extensions are skipped by llhttp without any bound: a client could send gigabytes
# of `;x=...` that no size limit counts. RFC 9112 §7.1.1: a server ought to limit their
# total length as it limits header fields; past 16 KiB in a body (Node.js and hyper's
# figure too) the body is refused.
LONG_EXTENSIONS = {
    # Http11Probe's MAL-CHUNK-EXTENSION-LONG: one 100 KB extension
    "one-long": CHUNKED + b"5;ext=" + b"A" * 100_000 + b"\r\nhello\r\n0\r\n\r\n",
    # 400 chunks of 67 extension bytes: none long, too many together
    "many-short": CHUNKED
    + b"".join(b"1;name=" + b"v" * 60 + b"\r\nx\r\n" for _ in range(400))
    + b"0\r\n\r\n",
    "on-last-chunk": CHUNKED + b"5\r\nhello\r\n0;ext=" + b"A" * 20_000 + b"\r\n\r\n",
    # llhttp reads any number of leading zeros; the count gave up after 32 bytes of a size
    "after-a-zero-padded-size": CHUNKED
    + b"0" * 40
    + b"5\r\nhello\r\n5;ext="
    + b"A" * 20_000
    + b"\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("data", LONG_EXTENSIONS.values(), ids=LONG_EXTENSIONS.keys())
def test_chunk_extensions_over_16_kib_are_refused_and_never_forwarded(e, data):
    resp = assert_rejected(e, data)
    assert b"chunk extensions over 16384 bytes" in resp.body, resp.body


def test_chunk_extensions_up_to_16_kib_in_all_are_accepted(e):
    # 150 chunks of 107 extension bytes: 16050 in all
    body = b"".join(b"1;name=" + b"v" * 100 + b"\r\nx\r\n" for _ in range(150)) + b"0\r\n\r\n"
    _, got = forwarded_once(e, CHUNKED + body, "POST")
    assert got.body == b"x" * 150


@pytest.mark.parametrize("size", [b"-6", b"-8;x", b"-FF"], ids=["minus-6", "extension", "minus-ff"])
def test_a_negative_chunk_size_is_refused(e, size):
    """The extension count read sizes with `int(_, 16)`, which takes a sign: `-6` moved it
    back onto its own line, and the worker spun there for ever, before llhttp saw the
    bytes (which it refuses)."""
    assert_rejected(e, CHUNKED + size + b"\r\nabcdefgh\r\n0\r\n\r\n")


def test_a_long_chunk_extension_cuts_a_body_already_streaming(e):
    """A body past what the proxy buffers is streamed: the long extension arrives after
    forwarding began, and the upstream sees a cut request, never a complete one."""
    with Wire(e.port) as w:
        w.send(CHUNKED + BIG_CHUNK)
        wait_until(lambda: any(c.raw for c in e.legacy.conns), timeout=5, what="forwarding")
        w.send(b"5;ext=" + b"A" * 100_000 + b"\r\nhello\r\n0\r\n\r\n")
        resp = w.response("POST")
        assert resp.status == 400 and w.closed(), resp
    wait_upstream_quiet(e)
    assert e.legacy.requests() == [], "the upstream saw a complete request"
    assert_serving(e)


@pytest.mark.parametrize("broken", [b"5\r\nhello\r\nzz\r\n", b"5\r\nhelloXX"])
def test_a_body_that_breaks_after_its_answer_gets_no_second_answer(e, broken):
    """`OPTIONS *` is answered by the proxy, which reads none of its body; the body then
    breaks its framing. That answer is the request's only one, saying the connection
    closes (nothing after the body can be read as a request): the 400 aiohttp's parser
    queued for the broken body must not follow it as the answer to a request never sent."""
    head = b"OPTIONS * HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    with Wire(e.port) as w:
        resp = w.send(head + broken).response("OPTIONS")
        closed = w.closed()
        assert w.buf == b"", f"a second answer: {w.buf[:200]!r}"
        assert resp.status == 200 and closed, resp
        assert resp.header("connection") == ["close"], resp.headers
    assert_serving(e)


@pytest.mark.parametrize("body", CRLF_ENDED, ids=["multipart", "crlf-data"])
def test_a_request_pipelined_after_a_crlf_ended_chunked_body_is_answered(e, body):
    """The aiohttp lane parses a read a head at a time, cutting it at each empty line: a
    chunked body whose data ends with CRLF put its last chunk alone at the start of a cut,
    where it was taken for a trailer section the proxy could not see whole. The request
    was answered with `Connection: close` and the one pipelined behind it dropped; nginx
    answers both."""
    with Wire(e.port) as w:
        w.send(CHUNKED + body + b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        first = w.response("POST")
        assert first.status == 200 and first.header("connection") == []
        second = w.response()
        assert second.status == 200 and b'"target": "/next"' in second.body
    got = e.legacy.assert_clean()
    assert [(r.method, r.target) for r in got] == [("POST", "/a"), ("GET", "/next")]


@pytest.mark.parametrize("cut", [b"0\r\n\r", b"0\r\n", b"0\r"], ids=["cr", "crlf", "zero-cr"])
def test_a_chunked_body_whose_end_is_cut_between_reads_keeps_the_connection(e, cut):
    """The last chunk's empty line split between two reads, the next request in the second:
    the body ended without trailer fields, so both requests are answered (as nginx does)."""
    with Wire(e.port) as w:
        w.send(CHUNKED + BIG_CHUNK + b"5\r\nhello\r\n" + cut)
        # Once "hello" is upstream, the proxy has read up to the cut.
        wait_until(lambda: any(c.raw.endswith(b"hello\r\n") for c in e.legacy.conns))
        rest = b"0\r\n\r\n"[len(cut) :]
        w.send(rest + b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        first = w.response("POST")
        assert first.status == 200 and first.header("connection") == []
        second = w.response()
        assert second.status == 200 and b'"target": "/next"' in second.body
    got = e.legacy.assert_clean()
    assert [(r.method, r.target) for r in got] == [("POST", "/a"), ("GET", "/next")]


@pytest.mark.parametrize(
    "trailer", [b"Authorization: Bearer evil", b"0: evil"], ids=["field", "zero"]
)
def test_trailers_after_crlf_ended_chunk_data_still_end_the_connection(e, trailer):
    """The check that sees a body's end across cuts must not take trailer fields for the
    empty line after the last chunk."""
    with Wire(e.port) as w:
        w.send(
            CHUNKED
            + b"3\r\na\r\n\r\n0\r\n"
            + trailer
            + b"\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        assert w.response("POST").status == 200
        assert w.closed()
    got = e.legacy.assert_clean()
    assert [(r.method, r.target) for r in got] == [("POST", "/a")]
    assert all(b"evil" not in c.raw for c in e.legacy.conns)


# Bigger than the fast lane reads whole: such a request is served by the aiohttp lane.
STREAMED = H + b"Content-Length: %d\r\n\r\n" % (70 * 1024) + b"x" * (70 * 1024)


def test_trailers_behind_a_full_queue_of_pipelined_requests_still_end_the_connection(e):
    """32 queued requests pause aiohttp's parser between two of them, and it then keeps
    what it is fed to parse later: a Content-Length body and the request behind it in one
    piece put it a request behind, so a chunked request's head and end were parsed in one
    go and never checked for trailer fields. The next request got the trailer's
    `Authorization` (the aiohttp bug in the class docstring of `EdgeRequestHandler`)."""
    get = b"GET /g HTTP/1.1\r\nHost: h\r\n\r\n"
    data = CHUNKED + b"0\r\n\r\n" + get * 31
    data += b"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx" + get
    data += CHUNKED + b"5\r\nhello\r\n0\r\nAuthorization: Bearer evil\r\n\r\n"
    data += b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
    with Wire(e.port) as w:
        w.send(data)
        for _ in range(34):
            assert w.response().status == 200
        last = w.response("POST")
        assert last.status == 200 and last.header("connection") == ["close"]
        assert w.closed()
    got = e.legacy.assert_clean()
    assert [r.target for r in got][-1] == "/a" and len(got) == 35
    assert all(b"evil" not in c.raw for c in e.legacy.conns)


def test_a_request_pipelined_before_a_malformed_one_is_answered_first(e):
    """llhttp drops every message it parsed in a read when it meets an error later in that
    read: the valid request must still get its own answer, then the 400 (RFC 9112 §9.3.2),
    on the aiohttp lane as on the fast lane."""
    with Wire(e.port) as w:
        w.send(STREAMED + b"GET /bad HTTP/1.1\r\nHost: h\r\nX-A : a\r\n\r\n")
        first = w.response("POST")
        second = w.response()
        assert (first.status, second.status) == (200, 400)
        assert w.closed()
    got = e.legacy.assert_clean()
    assert [(r.method, r.target, len(r.body)) for r in got] == [("POST", "/a", 70 * 1024)]


def test_bytes_after_connection_close_do_not_cost_the_request_its_answer(e):
    """RFC 9112 §9.6: after `Connection: close` the server stops processing further
    requests; the request that said it is still answered."""
    with Wire(e.port) as w:
        w.send(
            STREAMED.replace(b"Host: h\r\n", b"Host: h\r\nConnection: close\r\n")
            + b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        first = w.response("POST")
        assert first.status == 200 and first.header("connection") == ["close"]
        assert w.closed()
    got = e.legacy.assert_clean()
    assert [(r.method, r.target) for r in got] == [("POST", "/a")]


def test_a_half_close_mid_body_never_completes_the_upstream_request(e):
    """A client that shuts down its sending side counts as gone (as with nginx and Envoy):
    a body it left unfinished is cut upstream, never passed on as a shorter request."""
    with Wire(e.port) as w:
        w.send(STREAMED[:-100])
        w.sock.shutdown(socket.SHUT_WR)
        assert w.closed()
    wait_upstream_quiet(e)
    assert e.legacy.requests() == [], "the upstream saw a complete request the client never sent"
    assert_serving(e)


@pytest.mark.parametrize("size", [5, 70 * 1024], ids=["fast-lane", "aiohttp-lane"])
def test_content_length_named_in_connection_still_frames_the_body(e, size):
    """`Connection: Content-Length` must not turn a known-length body into a chunked one
    (a WSGI app such as Django reads CONTENT_LENGTH and would see it empty)."""
    request = H + b"Connection: Content-Length\r\nContent-Length: %d\r\n\r\n" % size
    _, got = forwarded_once(e, request + b"x" * size)
    assert got.header("content-length") == [str(size)]
    assert got.header("transfer-encoding") == []
    assert got.body == b"x" * size


@pytest.mark.parametrize(
    "target", [b"/svc;jsessionid=1/a", b"/public/..;/svc/a", b"/SVC;x/..;/svc"]
)
def test_path_parameters_cannot_route_around_a_route(e, target):
    """`;` parameters: Tomcat-style upstreams drop them (and read `..;` as `..`), so a path
    they would send to another route's owner is refused, never forwarded."""
    with Wire(e.port) as w:
        resp = w.send(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n").response()
        assert resp.status == 400, resp.body
        assert w.closed()
    assert e.legacy.requests() == [] and e.svc.requests() == []


def test_path_parameters_that_keep_the_route_are_forwarded_as_sent(e):
    _, got = forwarded_once(e, b"GET /shop;jsessionid=1/cart HTTP/1.1\r\nHost: h\r\n\r\n")
    assert got.target == "/shop;jsessionid=1/cart"


def test_a_malformed_request_is_one_log_line_not_a_traceback(e):
    """Anyone can send garbage: each bad request must not cost an ERROR and two tracebacks
    in the log (flooding, alert noise, client bytes in unprefixed lines)."""
    start = e.log.stat().st_size
    for bad in (
        b"GET /a HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n",
    ):
        with Wire(e.port) as w:
            assert w.send(bad).response().status == 400
    wait_until(lambda: e.log.read_bytes()[start:].count(b"refused a malformed request") == 2)
    written = e.log.read_bytes()[start:]
    assert b"Traceback" not in written and b"Error handling request" not in written
    assert all(line.startswith(b"{") for line in written.splitlines()), written


@pytest.mark.parametrize(
    "bad",
    [
        b"GET /a HTTP/1.1\r\nHost: h\r\nX-Api-Token: SEKRIT" + b"a" * 9000 + b"\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: h\r\nX-Custom-Auth: SEKRIT\x01\r\n\r\n",
        b"GET /a?sig=SEKRIT HTTP/1.1 x\r\nHost: h\r\n\r\n",
    ],
)
def test_bytes_of_a_refused_request_are_neither_logged_nor_echoed(e, bad):
    """The parser quotes the bytes it choked on; they can be a credential (a token over
    the header size limit). Neither the log line nor the answer repeats them."""
    start = e.log.stat().st_size
    with Wire(e.port) as w:
        resp = w.send(bad).response()
    assert 400 <= resp.status < 500 and b"SEKRIT" not in resp.body, resp.body
    wait_until(lambda: b"refused a malformed request" in e.log.read_bytes()[start:])
    assert b"SEKRIT" not in e.log.read_bytes()[start:]


@pytest.mark.parametrize(
    "body",
    [b"5\r\nSEKRIT!!\r\n0\r\n\r\n", b"5;bad[=SEKRIT\r\nhello\r\n0\r\n\r\n", b"SEKRIT\r\n"],
    ids=["chunk-overrun", "extension", "chunk-size"],
)
def test_bytes_of_a_refused_body_are_neither_logged_nor_echoed(e, body):
    """The same for a body that breaks its framing: llhttp quotes the body bytes it choked
    on (a form's password), and the 400 and its access-log line said them again."""
    start = e.log.stat().st_size
    with Wire(e.port) as w:
        resp = w.send(CHUNKED + body).response("POST")
    assert resp.status == 400 and b"SEKRIT" not in resp.body, resp.body
    assert b"malformed request body" in resp.body, resp.body  # still says what was wrong
    wait_until(lambda: b"malformed request body" in e.log.read_bytes()[start:])
    assert b"SEKRIT" not in e.log.read_bytes()[start:]


@pytest.mark.parametrize("method", [b"HEAD", b"OPTIONS", b"DELETE"])
def test_body_on_a_bodiless_method_does_not_desync_the_connection(e, method):
    with Wire(e.port) as w:
        w.send(method + b" /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
        w.send(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
        first = w.response(method.decode())
        second = w.response()
    assert first.status == 200 and second.status == 200
    got = e.legacy.assert_clean()
    assert [(r.method, r.target, r.body) for r in got] == [
        (method.decode(), "/a", b"hello"),
        ("GET", "/after", b""),
    ]
