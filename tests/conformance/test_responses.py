"""The response side: an upstream that lies about framing must not poison the client side.

The legacy upstream answers `/first` with scripted raw bytes and closes; the same client
connection then asks for `/second`, which a fresh upstream connection answers normally.
Every faulty response becomes a clean 502 (or is relayed correctly where RFC 9112 allows
it), and the second answer on the connection must be the right one.
"""

from __future__ import annotations

import pytest

from tests.conformance.checks import assert_serving
from tests.conformance.wire import ProtocolViolation, Wire

OK3 = b"Content-Length: 3\r\n\r\nabc"

BAD_GATEWAY = {
    "cl-and-te": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    "two-different-cls": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "cl-list": b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd",
    "cl-negative": b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc",
    "cl-plus": b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "cr-injection": b"HTTP/1.1 200 OK\r\nX-Bad: a\rSet-Cookie: evil=1\r\n" + OK3,
    "nul-in-value": b"HTTP/1.1 200 OK\r\nX-Nul: a\x00b\r\n" + OK3,
    "space-in-name": b"HTTP/1.1 200 OK\r\nBad Name: x\r\n" + OK3,
    "space-before-colon": b"HTTP/1.1 200 OK\r\nX-Foo : bar\r\n" + OK3,
    "space-before-colon-cl": b"HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\nabc",
    "tab-before-colon-te": b"HTTP/1.1 200 OK\r\nTransfer-Encoding\t: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\n\r\n",
    "oversized-header": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 20000 + b"\r\n" + OK3,
    "too-many-headers": b"HTTP/1.1 200 OK\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(300))
    + OK3,
    "two-digit-status": b"HTTP/1.1 20 OK\r\n" + OK3,
    "not-http": b"NOT HTTP AT ALL\r\n\r\n",
    "unsolicited-101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n\r\n\x81\x05hello",
    "status-999": b"HTTP/1.1 999 Weird\r\n" + OK3,
    "te-gzip-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\n\r\n",
    "te-gzip-until-close": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
}


def first_then_second(e, reply: bytes, early: bool = False):
    """GET /first (answered by `reply`), then GET /second on the same client connection."""
    e.legacy.script(reply, close=True, early=early)
    with Wire(e.port) as w:
        first = w.send(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n").response()
        second = w.send(b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n").response()
    return first, second


@pytest.mark.parametrize("reply", BAD_GATEWAY.values(), ids=BAD_GATEWAY.keys())
def test_faulty_upstream_response_is_a_clean_502_and_the_connection_stays_in_sync(e, reply):
    first, second = first_then_second(e, reply)
    assert first.status == 502, (first.status, first.body[:200])
    assert first.header("content-type") == ["application/json"]
    assert b"evil" not in b"".join(v.encode() for _, v in first.headers)
    assert second.status == 200 and b'"target": "/second"' in second.body


RELAYED = {
    # (reply, status, body): faults RFC 9112 lets a recipient repair, and plain oddities
    "bare-lf": (b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc", 200, b"abc"),
    "bare-lf-one-header": (b"HTTP/1.1 200 OK\r\nX-A: 1\n" + OK3, 200, b"abc"),
    "until-close": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody-until-close",
        200,
        b"body-until-close",
    ),
    "http10-until-close": (b"HTTP/1.0 200 OK\r\n\r\nhttp10-body", 200, b"http10-body"),
    "100-first": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n" + OK3, 200, b"abc"),
    "103-first": (
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n" + OK3,
        200,
        b"abc",
    ),
    "chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        200,
        b"abc",
    ),
    "chunked-with-ext-and-trailer": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
        200,
        b"abc",
    ),
    "404": (b"HTTP/1.1 404 Not Found\r\n" + OK3, 404, b"abc"),
    "304": (b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n', 304, b""),
    # RFC 9112 §6.3: a 204 or 304 ends at its head; bytes after it are not its body (the
    # answer is relayed, as nginx does, and that upstream connection closed)
    "204-with-body": (b"HTTP/1.1 204 No Content\r\n" + OK3, 204, b""),
    "304-with-body": (b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n' + OK3, 304, b""),
    # a Content-Length too small for what follows (an application bug): its bytes are the
    # answer, the rest is dropped with the connection
    "cl-too-small": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello world", 200, b"hello"),
    "junk-after-answer": (b"HTTP/1.1 200 OK\r\n" + OK3 + b"GARBAGE\r\n\r\n", 200, b"abc"),
    "100-then-answer-then-junk": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n" + OK3 + b"\x00\x01junk",
        200,
        b"abc",
    ),
}


@pytest.mark.parametrize(("reply", "status", "body"), RELAYED.values(), ids=RELAYED.keys())
def test_repairable_upstream_response_is_relayed_with_clean_framing(e, reply, status, body):
    first, second = first_then_second(e, reply)
    assert (first.status, first.body) == (status, body)
    # 103 Early Hints is relayed (RFC 9110 §15.2); 100 Continue is the proxy's own business
    assert first.informational == ([103] if reply.startswith(b"HTTP/1.1 103") else [])
    assert second.status == 200 and b'"target": "/second"' in second.body


def test_obs_fold_in_a_response_is_replaced_by_spaces(e):
    first, _ = first_then_second(e, b"HTTP/1.1 200 OK\r\nX-Foo: bar\r\n  folded\r\n" + OK3)
    assert first.status == 200
    (value,) = first.header("x-foo")
    assert value.split() == ["bar", "folded"]  # RFC 9112 §5.2: SP, never a raw fold


def test_hop_by_hop_and_connection_listed_response_headers_are_dropped(e):
    first, _ = first_then_second(
        e,
        b"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\n"
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n" + OK3,
    )
    names = [k for k, _ in first.headers]
    assert "x-secret" not in names and "keep-alive" not in names
    assert first.header("set-cookie") == ["a=1", "b=2"]


def test_short_body_of_known_length_becomes_a_502_when_nothing_was_sent_yet(e):
    first, second = first_then_second(e, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert first.status == 502, (first.status, first.body)
    assert second.status == 200 and b'"target": "/second"' in second.body


def test_truncated_streamed_body_is_never_presented_as_complete(e):
    """Once headers are gone the only honest signal is a cut the client can see; before
    that, a 502. Never a complete-looking response with a short body."""
    e.legacy.script(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", close=True
    )
    assert_cut_or_502(e)


def assert_cut_or_502(e) -> None:
    """GET /first: the answer the legacy script gives is cut for the client (the connection
    closes before the answer is whole) or, when nothing was sent yet, a 502."""
    with Wire(e.port) as w:
        w.send(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
        try:
            resp = w.response()
        except ProtocolViolation:
            assert w.closed(), "a truncated response must end with a closed connection"
        else:
            assert resp.status == 502, (resp.status, len(resp.body))
    assert_serving(e)


def test_a_body_on_an_answer_to_head_is_dropped_not_a_502(e):
    e.legacy.script(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    with Wire(e.port) as w:
        first = w.send(b"HEAD /first HTTP/1.1\r\nHost: h\r\n\r\n").response("HEAD")
        second = w.send(b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n").response()
    assert (first.status, first.header("content-length"), first.body) == (200, ["5"], b"")
    assert second.status == 200 and b'"target": "/second"' in second.body


def test_a_502_for_an_invalid_answer_names_the_fault_without_echoing_the_upstreams_bytes(e):
    """The parser quotes what it choked on, up to a whole body: the client's 502 says what
    was wrong, in a few words, and repeats none of it."""
    e.legacy.script(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + b"SECRET-BODY " * 5000)
    with Wire(e.port) as w:
        resp = w.send(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n").response()
    if resp.status == 502:
        assert b"SECRET" not in resp.body and len(resp.body) < 1000, resp.body[:300]
    else:  # relaying the complete first answer (as nginx does) is fine too
        assert (resp.status, resp.body) == (200, b"ok")
    assert_serving(e)


@pytest.mark.parametrize("size", [12, 100_000])
def test_a_reset_during_a_body_read_until_close_is_never_presented_as_complete(e, size):
    """A body without a length ends at a clean close only (RFC 9112 §6.3): a reset means it
    was cut, and a final chunk would tell the client it had it all."""
    body = bytes(i % 251 for i in range(size))
    e.legacy.script(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body, reset=True)
    assert_cut_or_502(e)


def test_early_upstream_rejection_of_an_expect_100_request_keeps_the_connection_in_sync(e):
    """The upstream refuses before reading the body; the client sends it anyway."""
    e.legacy.script(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n", close=True, early=True
    )
    with Wire(e.port) as w:
        w.send(
            b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        # The client waits for 100 Continue (or a final answer) before sending the body.
        w.wait_for(b"\r\n\r\n")
        w.send(b"hello" + b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        first = w.response()
        assert first.status in (413, 502), first.status
        assert first.informational in ([], [100])
        # The proxy answers /next or closes without a word: waited for, not timed (a close
        # later than 0.5 s was read as an answer that never came).
        if w.more():
            second = w.response()
            assert second.status == 200 and b'"target": "/next"' in second.body
    # the body "hello" was never taken for the start of a request
    assert [r.target for r in e.legacy.requests()] in (["/big"], ["/big", "/next"])


def test_chunked_upstream_answer_reaches_an_http10_client_unchunked(e):
    """HTTP/1.0 has no chunked coding: the body must arrive raw, delimited by the close."""
    e.legacy.script(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
        close=True,
    )
    with Wire(e.port) as w:
        w.send(b"GET /first HTTP/1.0\r\nHost: h\r\n\r\n")
        assert w.closed(timeout=5)
    head, _, body = w.raw.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"200", head
    assert b"transfer-encoding" not in head.lower(), head
    assert body == b"abcdef"


def test_head_answer_with_a_body_does_not_leak_into_the_next_response(e):
    """An upstream that answers HEAD with a body: those bytes must never be read as the
    answer to the next request (on the client side or through the upstream pool)."""
    e.legacy.script(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + b"x" * 40, close=False)
    with Wire(e.port) as w:
        first = w.send(b"HEAD /first HTTP/1.1\r\nHost: h\r\n\r\n").response("HEAD")
        assert first.body == b""
        for _ in range(3):
            resp = w.send(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n").response()
            assert resp.status == 200 and b'"target": "/next"' in resp.body, resp.body[:100]


def test_a_trailer_never_reaches_the_next_response_on_a_reused_upstream_connection(e):
    """aiohttp's C parser (3.14) keeps a chunked answer's last trailer field pending past
    the end of the message: a parser used again adds it to the next answer on the upstream
    connection, for whichever client asks next (one user's `Set-Cookie` in another's)."""
    e.legacy.script(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nSet-Cookie: sid=user-a\r\n\r\n",
        close=False,
    )
    with Wire(e.port) as a:
        first = a.send(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n").response()
    assert first.body == b"hello"
    with Wire(e.port) as b:
        second = b.send(b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n").response()
    assert second.status == 200 and b'"target": "/second"' in second.body
    assert second.header("set-cookie") == []
    carried = [c for c in e.legacy.conns if [r.target for r in c.requests] == ["/first", "/second"]]
    assert carried, "both requests should have used one pooled upstream connection"


BIG = 100 * 1024  # more than the proxy reads whole: streamed to the client


@pytest.mark.parametrize(
    ("request_bytes", "reply"),
    [
        (b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", b"Content-Length: 3\r\n\r\nabc"),
        (
            b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70000,
            b"Content-Length: 3\r\n\r\nabc",
        ),
        (
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
            b"Content-Length: %d\r\n\r\n" % BIG + b"y" * BIG,
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70000,
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % BIG + b"y" * BIG + b"\r\n0\r\n\r\n",
        ),
    ],
    ids=["fast-lane", "aiohttp-lane", "fast-lane-streamed", "aiohttp-lane-streamed"],
)
def test_an_answer_without_a_content_type_gets_none(e, request_bytes, reply):
    """An origin's untyped answer stays untyped (a browser sniffs it; labelled
    `application/octet-stream` by the proxy, it would be downloaded instead)."""
    e.legacy.script(b"HTTP/1.1 200 OK\r\n" + reply, close=True)
    with Wire(e.port) as w:
        resp = w.send(request_bytes).response(request_bytes.split(b" ", 1)[0].decode())
    assert resp.status == 200 and resp.body[:3] in (b"abc", b"yyy")
    assert resp.header("content-type") == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",  # relayed; the upstream sends no Server
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70000,
        b"GET /a HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n",  # the parser's own 400
        b"GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n",  # the proxy's own 400
        b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    ],
    ids=["fast-lane", "aiohttp-lane", "parser-400", "edge-400", "options-star"],
)
def test_answers_name_strangler_not_its_python_and_aiohttp_versions(e, request_bytes):
    e.legacy.script(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", close=True)
    with Wire(e.port) as w:
        w.send(request_bytes)
        w.wait_for(b"\r\n\r\n")
    head = w.raw.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nserver: strangler\r\n" in head + b"\r\n", head
    assert b"aiohttp" not in head and b"python" not in head


@pytest.mark.parametrize("code", [204, 304])
def test_bodiless_status_is_relayed_without_a_body(e, code):
    """RFC 9110 §8.6: a 204 carries no Content-Length, even when the upstream sent
    `Content-Length: 0`; neither 204 nor 304 carries a body or chunking."""
    first, second = first_then_second(
        e, b'HTTP/1.1 %d X\r\nContent-Length: 0\r\nETag: "x"\r\n\r\n' % code
    )
    assert (first.status, first.body) == (code, b"")
    assert first.header("transfer-encoding") == []
    if code == 204:
        assert first.header("content-length") == []
    assert second.status == 200
