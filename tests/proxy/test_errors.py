"""Errors as clients expect them, and RFC 9112's rules for intermediaries, on raw sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.support.procs import free_port, wait_until
from tests.support.rawhttp import count_responses, exchange, status_of


@contextmanager
def raw_upstream(reply: bytes) -> Iterator[int]:
    """A TCP server that answers every connection with `reply`, whatever was asked."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.1)  # so the accept loop notices `stopping`
    port = srv.getsockname()[1]
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(reply)
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield port
    finally:
        stopping.set()
        srv.close()
        t.join(5)


BROKEN_ROUTE = """\
- name: broken
  match: {prefix: "/broken"}
  mode: extracted
  target: svc
"""


def point_svc_at(p, upstreams, url: str) -> None:
    """Rewrite the running proxy's config so `svc` points at `url`; wait for the reload."""
    before = httpx.get(p.admin + "/-/config").json()["generation"]
    p.write_config(p.config.read_text().replace(upstreams.svc, url))
    wait_until(
        lambda: httpx.get(p.admin + "/-/config").json()["generation"] > before,
        what="the proxy to reload its config",
    )


def test_upstream_refused_is_502_with_json_naming_route_and_request_id(start_proxy, upstreams):
    p = start_proxy(routes=BROKEN_ROUTE)
    point_svc_at(p, upstreams, f"http://127.0.0.1:{free_port()}")
    resp = httpx.get(p.url + "/broken/x", headers={"X-Request-ID": "r-502"})
    assert resp.status_code == 502
    body = resp.json()
    assert body == {
        "error": "bad_gateway",
        "message": body["message"],
        "route": "broken",
        "request_id": "r-502",
    }
    assert "svc" in body["message"]


def test_upstream_timeout_is_504(proxy, client):
    resp = client.get(proxy.url + "/svc/slow?s=4", headers={"X-Request-ID": "r-504"})
    assert resp.status_code == 504
    body = resp.json()
    assert body["route"] == "svc-prefix" and body["request_id"] == "r-504"
    assert body["error"] == "gateway_timeout"


def test_browsers_get_html_errors(proxy, client):
    resp = client.get(proxy.url + "/svc/slow?s=4", headers={"Accept": "text/html,*/*"})
    assert resp.status_code == 504
    assert resp.headers["content-type"].startswith("text/html")
    assert "svc-prefix" in resp.text


@pytest.mark.parametrize(
    "request_bytes",
    [
        # Content-Length together with Transfer-Encoding
        b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        # differing Content-Lengths
        b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        # invalid Content-Length
        b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 4x\r\n\r\nabcd",
        b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
        # Transfer-Encoding whose last coding is not chunked
        b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n",
        # invalid chunk size
        b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        # whitespace before the colon
        b"GET /x HTTP/1.1\r\nHost: h\r\nX-Foo : bar\r\n\r\n",
        # obs-fold
        b"GET /x HTTP/1.1\r\nHost: h\r\nX-Foo: bar\r\n  baz\r\n\r\n",
        # bare CR
        b"GET /x HTTP/1.1\r\nHost: h\r\nX-Foo: a\rb\r\n\r\n",
        # missing Host (HTTP/1.1)
        b"GET /x HTTP/1.1\r\nX-Foo: bar\r\n\r\n",
        # duplicate Host
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        # garbage request line
        b"GET\r\n\r\n",
    ],
)
def test_malformed_requests_get_400_and_are_never_forwarded(proxy, request_bytes):
    raw = exchange(proxy.port, request_bytes)
    assert status_of(raw) == 400, raw[:300]
    assert count_responses(raw) == 1  # the connection is closed: nothing smuggled behind it
    assert b'"server"' not in raw  # never reached the upstream


def test_smuggled_second_request_is_not_executed(proxy):
    attack = (
        b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    raw = exchange(proxy.port, attack)
    assert b"/smuggled" not in raw
    assert status_of(raw) == 400


def test_oversized_request_line_and_headers(proxy):
    long_line = exchange(proxy.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status_of(long_line) in (400, 414)
    big_header = exchange(
        proxy.port, b"GET /x HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"
    )
    assert status_of(big_header) in (400, 431)
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    too_many = exchange(proxy.port, b"GET /x HTTP/1.1\r\nHost: h\r\n" + many + b"\r\n")
    assert status_of(too_many) in (400, 431)


def test_proxy_keeps_serving_after_bad_input(proxy, client):
    for _ in range(20):
        exchange(proxy.port, b"\x00\x01\x02 garbage\r\n\r\n")
    assert client.get(proxy.url + "/x").status_code == 200


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nX-Foo : bar\r\nContent-Length: 0\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"",
    ],
)
def test_malformed_upstream_response_is_502(start_proxy, upstreams, reply):
    with raw_upstream(reply) as port:
        p = start_proxy(routes=BROKEN_ROUTE)
        point_svc_at(p, upstreams, f"http://127.0.0.1:{port}")
        resp = httpx.get(p.url + "/broken/x", timeout=10)
        assert resp.status_code == 502, resp.text
        assert resp.json()["route"] == "broken"


def test_slowloris_connection_is_closed_after_idle_timeout(start_proxy):
    """A client that trickles its headers is cut at `limits.idle_timeout`, while a complete
    request on another connection is served meanwhile."""
    p = start_proxy(extra="limits: {idle_timeout: 1.0}\n")
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as slow:
        slow.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\n")
        started = time.monotonic()
        assert httpx.get(p.url + "/x").status_code == 200
        slow.sendall(b"X-A: 1\r\n")  # still trickling: not a complete request
        data = slow.recv(1024)  # returns b"" once the proxy closes the connection
        waited = time.monotonic() - started
    assert data == b""
    assert 0.5 < waited < 5.0


def test_a_kept_alive_connection_in_use_stays_open_and_closes_once_idle(start_proxy):
    """The idle clock restarts with every request: requests 0.6 s apart on one connection
    outlive a 2 s idle timeout (3.6 s in all), and the connection closes about 2 s after
    the last. (Each pause leaves 1.4 s to spare: with a 1 s timeout a slow machine could
    close the connection between two requests.)"""
    p = start_proxy(extra="limits: {idle_timeout: 2.0}\n")
    request = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    with socket.create_connection(("127.0.0.1", p.port), timeout=20) as conn:
        for _ in range(6):
            conn.sendall(request)
            assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
            last = time.monotonic()
            time.sleep(0.6)  # the scenario: a client pausing between requests
        data = conn.recv(1024)  # b"" once the proxy closes the idle connection
        idle = time.monotonic() - last
    assert data == b""
    assert 1.0 < idle < 10.0


def test_early_hints_are_relayed_before_the_final_response(start_proxy, upstreams):
    reply = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    with raw_upstream(reply) as port:
        p = start_proxy(routes=BROKEN_ROUTE)
        point_svc_at(p, upstreams, f"http://127.0.0.1:{port}")
        raw = exchange(p.port, b"GET /broken/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        old = exchange(p.port, b"GET /broken/x HTTP/1.0\r\nHost: h\r\n\r\n")
    assert old.startswith(b"HTTP/1.1 200 ")  # no 1xx to 1.0
    assert raw.startswith(b"HTTP/1.1 103 Early Hints\r\n")
    hints, final = raw.split(b"\r\n\r\n", 1)
    assert b"Link: </style.css>; rel=preload" in hints
    assert final.startswith(b"HTTP/1.1 200 ") and final.endswith(b"\r\n\r\nok")
