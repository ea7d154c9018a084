"""The admin API shows the running proxy without what may be a secret, and says so when
something is off rather than answering empty."""

from __future__ import annotations

import socket

import httpx

from tests.proxy.conftest import base_config
from tests.support.rawhttp import exchange, status_of

ROUTES = """\
- name: partner
  match: {prefix: /partner, headers: {X-Api-Key: MATCHSECRET}}
  mode: extracted
  target: svc
"""
AUTH = """\
auth: {upstream: legacy, path: "/auth/check?client_secret=CHECKSECRET&realm=shop"}
"""


def test_config_view_masks_secret_values(start_proxy, upstreams):
    p = start_proxy(routes=ROUTES, extra=AUTH)
    view = httpx.get(p.admin + "/-/config").json()
    text = str(view)
    assert "MATCHSECRET" not in text and "CHECKSECRET" not in text
    assert view["config"]["auth"]["path"] == "/auth/check?client_secret=[REDACTED]&realm=shop"
    # A reload that fails on a secret-bearing value shows the error without the secret.
    broken = base_config(upstreams, p.port, p.admin_port, ROUTES, AUTH)
    broken = broken.replace('"/auth/check?', '"auth/check?api_key=RELOADSECRET&')
    p.write_config(broken)
    answer = httpx.post(p.admin + "/-/reload")
    assert answer.status_code == 422 and "auth.path" in answer.text
    assert "RELOADSECRET" not in answer.text
    view = httpx.get(p.admin + "/-/config").json()
    assert "auth.path" in view["last_reload_error"] and "RELOADSECRET" not in str(view)
    assert "RELOADSECRET" not in p.log.read_text()


def test_metrics_switched_off_is_a_404_not_an_empty_scrape(start_proxy, upstreams):
    p = start_proxy(extra="telemetry: {metrics: false}\n")
    off = httpx.get(p.admin + "/metrics")
    assert off.status_code == 404 and "telemetry.metrics" in off.text
    p.write_config(
        base_config(upstreams, p.port, p.admin_port, extra="telemetry: {metrics: true}\n")
    )
    assert httpx.post(p.admin + "/-/reload").status_code == 200
    on = httpx.get(p.admin + "/metrics")
    assert on.status_code == 200 and "strangler_requests_total" in on.text


def test_admin_port_refuses_malformed_requests_without_echoing_them(start_proxy):
    # The admin port's parser refusals are the proxy port's: 414/431 for the limits, no
    # quoted bytes (an oversized token is a secret), HTTP/1.1 and a close, no body to HEAD.
    p = start_proxy()
    token = b"Bearer ADMINSECRET" + b"x" * 9000
    cases = [
        (b"GET /-/health HTTP/1.1\r\nHost: localhost\r\nAuthorization: " + token, 431),
        (b"GET /-/health?k=ADMINSECRET" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost", 414),
        (b"GET /-/health HTTP/1.1\r\nHost: localhost\r\nX-Key\x01: ADMINSECRET", 400),
        (b"ADMINSECRET\x01 / HTTP/1.1\r\nHost: localhost", 400),
    ]
    for request, status in cases:
        answer = exchange(p.admin_port, request + b"\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert status_of(answer) == status, (request[:40], answer[:200])
        assert answer.startswith(b"HTTP/1.1 ") and b"\r\nConnection: close" in head, answer
        assert b"ADMINSECRET" not in answer, answer
        assert body.startswith(b"%d " % status), body
    answer = exchange(
        p.admin_port, b"HEAD /-/health HTTP/1.1\r\nHost: localhost\r\nX\x01: y\r\n\r\n"
    )
    assert status_of(answer) == 400 and answer.endswith(b"\r\n\r\n"), answer  # the head alone
    # The port keeps serving, and an HTTP/1.0 client gets a 1.1 answer it can read.
    answer = exchange(p.admin_port, b"GET /-/health HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in answer
    assert httpx.get(p.admin + "/-/health").status_code == 200


def test_admin_answer_after_trailer_fields_closes_the_connection(start_proxy):
    # Nothing after a chunked body's trailer fields is parsed (`EdgeRequestHandler`), so
    # that request's answer must be the connection's last. The admin API knows nothing of
    # `answers_last`: it answered keep-alive and the pipelined GET sat unread until the
    # keep-alive timeout (75 s), the client waiting on an open connection.
    p = start_proxy()
    request = (
        b"POST /-/reload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\nX-Trailer: 1\r\n\r\n"
        b"GET /-/health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", p.admin_port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while piece := sock.recv(65536):  # until the proxy closes (a timeout fails the test)
            answer += piece
    head = answer.partition(b"\r\n\r\n")[0]
    assert status_of(answer) == 200 and b"\r\nConnection: close" in head, answer
