"""Requests the proxy refuses at the edge (its parser's 400s, its own 400/421/505) show in
the access log and in `strangler_requests_total{side="proxy"}`, like any answer, and their
targets' secrets (query tokens, an absolute form's password) do not."""

from __future__ import annotations

import json

import httpx

from proxy.telemetry.metrics import samples_from_text
from tests.support.procs import wait_until
from tests.support.rawhttp import exchange, status_of

REFUSED = [
    # aiohttp's parser refuses these
    b"GET /a?token=SECRET-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n",
    b"FOO123 /a?token=SECRET-2 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
    b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"k" * 70_000 + b"\r\n\r\n",
    # the proxy's edge refuses these
    b"GET /a?token=SECRET-3 HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET http://alice:SECRET-4@x/a?api_key=SECRET-5 HTTP/1.1\r\nHost: y\r\n\r\n",
    b"GET /a/%2e%2e/b?token=SECRET-6 HTTP/1.1\r\nHost: x\r\n\r\n",
]


def test_refused_requests_are_logged_and_counted_without_secrets(start_proxy):
    p = start_proxy(extra="telemetry: {log_format: json, metrics: true}\n")
    statuses = [status_of(exchange(p.port, raw)) for raw in REFUSED]
    assert all(400 <= s < 600 for s in statuses), statuses

    def refused_lines() -> list[dict]:
        lines = []
        for text in p.log.read_text().splitlines():
            if text.startswith("{"):
                line = json.loads(text)
                if line.get("msg") == "request" and line.get("side") == "proxy":
                    lines.append(line)
        return lines

    wait_until(lambda: len(refused_lines()) >= len(REFUSED), timeout=10, what="access lines")
    assert sorted(line["status"] for line in refused_lines()) == sorted(statuses)
    assert all(line["bytes_out"] > 0 for line in refused_lines())  # each got an explanation
    log = p.log.read_text()
    for n in range(1, 7):
        assert f"SECRET-{n}" not in log, n
    metrics = httpx.get(p.admin + "/metrics", timeout=5).text
    counted = sum(
        v
        for name, labels, v in samples_from_text(metrics)
        if name == "strangler_requests_total" and labels.get("side") == "proxy"
    )
    assert counted == len(REFUSED)
    assert httpx.get(p.url + "/ok").status_code == 200  # and it kept serving


def test_a_malformed_request_body_is_logged_with_its_client(start_proxy):
    """A chunked body that breaks its framing is refused (400) with a log line that says
    which client sent it, as the refusals of malformed heads do (it said `from None`)."""
    p = start_proxy(extra="telemetry: {log_format: json}\n")
    raw = exchange(
        p.port,
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
    )
    assert status_of(raw) == 400, raw[:200]

    def refusal_lines() -> list[str]:
        lines = [json.loads(t) for t in p.log.read_text().splitlines() if t.startswith("{")]
        return [
            line["msg"]
            for line in lines
            if line.get("msg", "").startswith("refused a malformed request")
        ]

    wait_until(lambda: refusal_lines(), timeout=10, what="the refusal's log line")
    assert all(" from 127.0.0.1: " in line for line in refusal_lines()), refusal_lines()
