"""The listener's two lanes answer alike (proxy/listener.py).

Plain requests are served by the fast lane, everything else by aiohttp's server. The same
raw requests go to a proxy with the fast lane and to one without it (STRANGLER_FAST_LANE=0),
both in front of one scripted upstream; the answers must be byte for byte the same, but for
the values that differ on every request anyway (Date, generated request ids).
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.support.rawhttp import exchange, read_head
from tests.support.single import single_upstream_proxy

REPLIES: dict[str, bytes] = {
    "small": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nServer: up\r\n\r\n{}",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "until-close": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nread until close",
    "no-content": b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    "not-modified": b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 7\r\n\r\n',
    "hop-by-hop": b"HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\n"
    b"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nContent-Length: 2\r\n\r\nok",
    "request-id": b"HTTP/1.1 200 OK\r\nX-Request-ID: made-upstream\r\nA: 1\r\n"
    b"x-request-id: again\r\nContent-Length: 2\r\n\r\nok",
    "no-type": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    "empty": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "big": b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000,
    "big-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"2710\r\n" + bytes([65 + i]) * 10_000 + b"\r\n" for i in range(10))
    + b"0\r\n\r\n",
    "early-hints": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "custom-reason": b"HTTP/1.1 299 Custom Thing\r\nContent-Length: 0\r\n\r\n",
    "not-found": b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 4\r\n\r\nnope",
    "smuggle": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok",
    "gzip-coded": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "utf8-header": "HTTP/1.1 200 OK\r\nX-Name: Zoë\r\nContent-Length: 2\r\n\r\nok".encode(),
}


class _Scripted(socketserver.BaseRequestHandler):
    """Keep-alive: answers each `METHOD /r/NAME` with REPLIES[NAME] (its head only to HEAD),
    and `/echo...` with the request it was sent."""

    def handle(self) -> None:
        conn = self.request
        conn.settimeout(10)
        buf = b""
        while True:
            got = read_head(conn, buf)
            if got is None:
                return
            head, buf = got
            length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
            need = int(length.group(1)) if length else 0
            while len(buf) < need:
                buf += conn.recv(65536)
            body, buf = buf[:need], buf[need:]
            if re.match(rb"[A-Z]+ /echo", head):  # what the upstream was sent, as the body
                seen = head + b"\r\n\r\n" + body
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(seen) + seen)
                continue
            match = re.match(rb"([A-Z]+) /r/([\w-]+)", head)
            if not match:
                return
            reply = REPLIES[match.group(2).decode()]
            if match.group(1) == b"HEAD":
                final = reply.rfind(b"HTTP/1.1 ")
                reply = reply[: reply.index(b"\r\n\r\n", final) + 4]
            conn.sendall(reply)
            if b"Content-Length" not in reply and b"chunked" not in reply.split(b"\r\n\r\n")[0]:
                return  # a body that ends when the connection does


@contextmanager
def scripted_upstream() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Scripted)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def proxy(tmp_path, name: str, upstream_port: int, *, fast_lane: bool) -> Iterator[int]:
    env = {"STRANGLER_FAST_LANE": "1" if fast_lane else "0"}
    with single_upstream_proxy(tmp_path, upstream_port, name=name, env=env) as (port, admin, _):
        yield port, admin


_VARYING = [
    (re.compile(rb"\r\nDate: [^\r]*"), b"\r\nDate: *"),
    (re.compile(rb"[0-9a-f]{32}"), b"<request-id>"),
]


def dechunked(raw: bytes) -> bytes:
    """A chunked body's data in one chunk: where reads split it is timing, not meaning."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or b"\r\nTransfer-Encoding: chunked" not in head:
        return raw
    data, pos = [], 0
    while True:
        line_end = body.index(b"\r\n", pos)
        size = int(body[pos:line_end], 16)
        if size == 0:
            return head + sep + b"%x\r\n" % len(b"".join(data)) + b"".join(data) + body[pos:]
        data.append(body[line_end + 2 : line_end + 2 + size])
        pos = line_end + 2 + size + 2


def normalized(raw: bytes) -> bytes:
    for pattern, replacement in _VARYING:
        raw = pattern.sub(replacement, raw)
    return dechunked(raw)


REQUESTS = [
    b"GET /r/%s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"GET /r/%s HTTP/1.0\r\nHost: h\r\n\r\n",
    b"HEAD /r/%s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"GET /r/%s HTTP/1.1\r\nHost: h\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
]


@pytest.fixture(scope="module")
def lanes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lanes")
    with (
        scripted_upstream() as up,
        proxy(tmp, "fast", up, fast_lane=True) as fast,
        proxy(tmp, "aiohttp", up, fast_lane=False) as slow,
    ):
        yield fast, slow


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_both_lanes_send_the_same_bytes(lanes, name):
    (fast, fast_admin), (slow, _) = lanes
    before = httpx.get(f"http://127.0.0.1:{fast_admin}/-/ready").json()["lanes"]
    for template in REQUESTS:
        request = template % name.encode()
        via_fast = exchange(fast, request)
        via_slow = exchange(slow, request)
        assert via_fast.startswith(b"HTTP/1.1 "), (request, via_fast)  # 1.0 clients too
        assert normalized(via_fast) == normalized(via_slow), request
    after = httpx.get(f"http://127.0.0.1:{fast_admin}/-/ready").json()["lanes"]
    # Every one of these requests took the fast lane (none was handed over).
    assert after["fast_requests"] - before["fast_requests"] == len(REQUESTS)
    assert after["handed_off_connections"] == before["handed_off_connections"]


def test_faulty_upstream_answers_are_502_on_the_fast_lane(lanes):
    (fast, _), _ = lanes
    for name in ("smuggle", "gzip-coded"):
        request = b"GET /r/%s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        raw = exchange(fast, request % name.encode())
        assert raw.startswith(b"HTTP/1.1 502 "), raw


def test_pipelined_requests_cross_lanes_in_order(lanes):
    """A plain GET, a POST with a chunked body (handed to the aiohttp lane mid-connection),
    then a GET again: three answers, in order, on one connection."""
    (fast, fast_admin), _ = lanes
    before = httpx.get(f"http://127.0.0.1:{fast_admin}/-/ready").json()["lanes"]
    raw = exchange(
        fast,
        b"GET /r/small HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /r/no-type HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
        b"GET /r/empty HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)
    assert statuses == [b"200", b"200", b"200"], raw
    assert raw.index(b"\r\n\r\n{}") < raw.index(b"\r\n\r\nabc")  # small first, then no-type
    after = httpx.get(f"http://127.0.0.1:{fast_admin}/-/ready").json()["lanes"]
    assert after["fast_requests"] - before["fast_requests"] == 1
    assert after["handed_off_connections"] - before["handed_off_connections"] == 1


def test_a_refused_request_after_a_fast_one_gets_the_edge_answer(lanes):
    (fast, _), (slow, _) = lanes
    request = b"GET /r/small HTTP/1.1\r\nHost: h\r\n\r\nTRACE / HTTP/1.1\r\nHost: h\r\n\r\n"
    via_fast, via_slow = exchange(fast, request), exchange(slow, request)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", via_fast) == [b"200", b"405"]
    assert normalized(via_fast) == normalized(via_slow)


@pytest.mark.parametrize(
    "connection",
    [
        b"Connection: keep-alive, close",
        b"Connection: close, Keep-Alive",
        b"Connection: keep-alive\r\nConnection: close",
        b"Proxy-Connection: keep-alive\r\nConnection: close",
    ],
    ids=["one-field", "close-first", "two-fields", "proxy-connection"],
)
def test_an_http10_close_wins_over_its_keep_alive(lanes, connection):
    """llhttp keeps an HTTP/1.0 connection that lists `keep-alive` even when it lists
    `close` too; `close` wins (RFC 9112 §9.3), as with nginx. On both lanes: one answer,
    saying `Connection: close`, and nothing pipelined behind it is answered."""
    (fast, _), (slow, _) = lanes
    request = (
        b"GET /r/small HTTP/1.0\r\nHost: h\r\n" + connection + b"\r\n\r\n"
        b"GET /r/empty HTTP/1.0\r\nHost: h\r\n\r\n"
    )
    for port in (fast, slow):
        raw = exchange(port, request)
        assert raw.count(b"HTTP/1.1 ") == 1, (port, raw)
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close" in head, head


def test_malformed_heads_get_the_same_refusal_on_both(lanes):
    (fast, _), (slow, _) = lanes
    for request in (
        b"GET /r/small HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n",
        b"GET /r/small HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
        b"GET /r/small HTTP/1.1\nHost: h\n\n",
        b"GET /r/small HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /r/../../etc HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /r/small HTTP/1.1\r\n\r\n",
        b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
        # Refused before the head is complete: answered at once, not at the idle timeout.
        b"GARBAGE\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS on the HTTP port
        b"GET /r/small HTTP/1.1\r\nBad Header: x\r\n",
        # Versions: 505 for those llhttp reads, 400 for the rest (not HTTP/1.2 to 1.9).
        b"GET /r/small HTTP/2.0\r\nHost: h\r\n\r\n",
        b"GET /r/small HTTP/1.23\r\nHost: h\r\n\r\n",
        b"GET /r/small HTTP/1.2 x\r\nHost: h\r\n\r\n",
        b"GET /r/small HTTP/1.2\nHost: h\n\n",
        b"GET /r/small HTTP/1.2",  # refused (or not) before the line ends
    ):
        # A line cut at `HTTP/1.2` is waited on (its version is fine): both lanes say
        # nothing, and one second of quiet shows it (not the default five, twice).
        wait = 1.0 if request.endswith(b"HTTP/1.2") else 5.0
        via_fast, via_slow = exchange(fast, request, wait), exchange(slow, request, wait)
        assert via_fast[:12] == via_slow[:12], (request, via_fast[:200], via_slow[:200])
        assert normalized(via_fast) == normalized(via_slow), request


def test_a_long_pipeline_is_answered_in_full_and_in_order(lanes):
    """2,000 requests in one write: every answer comes back, in order (the listener reads
    pipelined requests from an offset into its buffer and pauses reading past 256 KiB)."""
    (fast, _), _ = lanes
    count = 2000
    names = [("small", "empty", "no-type")[i % 3] for i in range(count)]
    data = b"".join(b"GET /r/%s HTTP/1.1\r\nHost: h\r\n\r\n" % n.encode() for n in names)
    data += b"GET /r/empty HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    raw = exchange(fast, data, timeout=30)
    bodies = re.findall(rb"Content-Length: (\d+)\r\n", raw)
    expected = [{"small": b"2", "empty": b"0", "no-type": b"3"}[n] for n in names] + [b"0"]
    assert bodies == expected


def byte_at_a_time(port: int, request: bytes, version: bytes) -> bytes:
    """`request` sent a byte per segment, then a closing `GET /r/empty` in `version`;
    everything the proxy answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(request)):
            sock.sendall(request[i : i + 1])
        sock.sendall(b"GET /r/empty HTTP/%s\r\nHost: h\r\nConnection: close\r\n\r\n" % version)
        return b"".join(iter(lambda: sock.recv(65536), b""))


def test_a_head_sent_a_byte_at_a_time_is_served(lanes):
    """The parser is fed each byte once as it arrives (and the terminator searched only in
    new bytes), whatever the segmentation."""
    (fast, _), (slow, _) = lanes
    request = b"GET /r/small HTTP/1.1\r\nHost: h\r\nX-Pad: " + b"p" * 300 + b"\r\n\r\n"
    answers = [byte_at_a_time(port, request, b"1.1") for port in (fast, slow)]
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answers[0]) == [b"200", b"200"]
    assert normalized(answers[0]) == normalized(answers[1])


NEWER_MINOR = {
    "pipelined": b"GET /echo/a?x=1 HTTP/1.2\r\nHost: h\r\nX-Custom: 1\r\n\r\n"
    b"GET /r/small HTTP/1.9\r\nHost: h\r\n\r\n"
    b"GET /echo/b HTTP/1.2\r\nHost: h\r\nConnection: close\r\n\r\n",
    "chunked": b"POST /echo/c HTTP/1.2\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n"
    b"GET /echo/d HTTP/1.2\r\nHost: h\r\nConnection: close\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(NEWER_MINOR))
def test_a_newer_http1_minor_version_is_served_as_http11_on_both(lanes, name):
    """`HTTP/1.2` to `HTTP/1.9` are read as HTTP/1.1 (RFC 9110 §2.5): answered `HTTP/1.1`,
    forwarded as HTTP/1.1 with the same target and headers, pipelined requests behind
    them answered; by the fast lane itself (not handed over) when it is a plain request."""
    (fast, fast_admin), (slow, _) = lanes
    before = httpx.get(f"http://127.0.0.1:{fast_admin}/-/ready").json()["lanes"]
    via_fast, via_slow = exchange(fast, NEWER_MINOR[name]), exchange(slow, NEWER_MINOR[name])
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", via_fast)
    assert statuses == [b"200"] * NEWER_MINOR[name].count(b" HTTP/1."), via_fast
    assert normalized(via_fast) == normalized(via_slow)
    after = httpx.get(f"http://127.0.0.1:{fast_admin}/-/ready").json()["lanes"]
    if name == "pipelined":
        assert b"GET /echo/a?x=1 HTTP/1.1\r\nHost: h\r\nX-Custom: 1\r\n" in via_fast
        assert b"GET /echo/b HTTP/1.1\r\n" in via_fast
        assert after["fast_requests"] - before["fast_requests"] == 3
        assert after["handed_off_connections"] == before["handed_off_connections"]
    else:
        assert b"POST /echo/c HTTP/1.1\r\n" in via_fast and b"\r\n\r\nhello" in via_fast
        assert b"GET /echo/d HTTP/1.1\r\n" in via_fast


def test_a_newer_http1_minor_version_sent_a_byte_at_a_time_is_served_on_both(lanes):
    """llhttp refuses the version at its digit, before the line's end has arrived (and the
    aiohttp lane reads the version's bytes in reads of their own)."""
    (fast, _), (slow, _) = lanes
    request = b"GET /echo/v HTTP/1.2\r\nHost: h\r\n\r\n"
    answers = [byte_at_a_time(port, request, b"1.2") for port in (fast, slow)]
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answers[0]) == [b"200", b"200"], answers[0]
    assert b"GET /echo/v HTTP/1.1\r\n" in answers[0]
    assert normalized(answers[0]) == normalized(answers[1])


FORWARDED = [
    b"GET /echo/a?x=1&y=%41 HTTP/1.1\r\nHost: shop.example:8080\r\nUser-Agent: t\r\n"
    b"X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nConnection: close, X-Drop\r\n"
    b"X-Drop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX_Under: 1\r\nX-Request-ID: given-1\r\n"
    b"Cookie: a=1\r\nCookie: b=2\r\nVia: 1.0 other\r\nAccept-Encoding: gzip\r\n\r\n",
    b"HEAD /echo/b HTTP/1.0\r\nHost: h\r\nProxy-Authorization: x\r\n\r\n",
    b"GET http://abs.example/echo/c HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n",
    b"GET /echo/d/../e/./f HTTP/1.1\r\nHost: h\r\nTraceparent: 00-bad\r\nConnection: close\r\n\r\n",
]


@pytest.mark.parametrize(
    "request_bytes", FORWARDED, ids=["headers", "head-1.0", "absolute", "dots"]
)
def test_both_lanes_forward_the_same_request(lanes, request_bytes):
    """What the upstream receives (the echo's body) is the same from both lanes: hop-by-hop
    and forwarding headers, Host, target, request id."""
    (fast, _), (slow, _) = lanes
    via_fast, via_slow = exchange(fast, request_bytes), exchange(slow, request_bytes)
    assert via_fast.startswith(b"HTTP/1."), via_fast
    assert normalized(via_fast) == normalized(via_slow)
    if not request_bytes.startswith(b"HEAD"):
        assert b"X-Forwarded-For: 127.0.0.1\r\n" in via_fast  # the client's claim replaced


def _post(path: bytes, body: bytes, method: bytes = b"POST", extra: bytes = b"") -> bytes:
    return (
        method + b" " + path + b" HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n" % len(body) + extra + b"Connection: close\r\n\r\n" + body
    )


BODIES = {
    "post": _post(b"/echo/p", b"hello=world"),
    "put": _post(b"/echo/p", b"x" * 5000, b"PUT"),
    "patch": _post(b"/echo/p", b'{"a": 1}', b"PATCH"),
    "delete-with-body": _post(b"/echo/p", b"gone", b"DELETE"),
    "empty": _post(b"/echo/p", b""),
    "leading-zeros": b"POST /echo/p HTTP/1.1\r\nHost: h\r\nContent-Length: 005\r\n"
    b"Connection: close\r\n\r\nabcde",
    "over-the-fast-limit": _post(b"/echo/p", b"y" * 70_000),  # streamed by the aiohttp lane
    "expect": _post(b"/echo/p", b"z" * 10, extra=b"Expect: 100-continue\r\n"),
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_both_lanes_forward_request_bodies_alike(lanes, name):
    """Small bodies with a Content-Length are read whole by the fast lane; larger ones,
    chunked ones and `Expect` go to the aiohttp lane. The upstream sees the same bytes."""
    (fast, fast_admin), (slow, _) = lanes
    before = httpx.get(f"http://127.0.0.1:{fast_admin}/-/ready").json()["lanes"]
    via_fast, via_slow = exchange(fast, BODIES[name]), exchange(slow, BODIES[name])
    assert b"HTTP/1.1 200 " in via_fast, via_fast[:300]
    assert normalized(via_fast) == normalized(via_slow)
    after = httpx.get(f"http://127.0.0.1:{fast_admin}/-/ready").json()["lanes"]
    fast_lane = name not in ("over-the-fast-limit", "expect")
    assert after["fast_requests"] - before["fast_requests"] == (1 if fast_lane else 0)


def test_a_body_that_arrives_after_its_head_is_waited_for(lanes):
    (fast, _), (slow, _) = lanes
    head = b"POST /echo/p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n"
    answers = []
    for port in (fast, slow):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(head)
            for piece in (b"01234", b"5678", b"9"):
                sock.sendall(piece)
            sock.sendall(b"GET /r/empty HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            answers.append(b"".join(iter(lambda: sock.recv(65536), b"")))
    assert answers[0].count(b"HTTP/1.1 200 ") == 2 and b"\r\n\r\n0123456789" in answers[0]
    assert normalized(answers[0]) == normalized(answers[1])
