"""Assertions shared by the probes: rejected cleanly, or forwarded as exactly one request."""

from __future__ import annotations

import httpx

from tests.conformance.conftest import Edge
from tests.conformance.recorder import Received
from tests.conformance.wire import ProtocolViolation, Response, Wire
from tests.support.procs import wait_until

SANE = b"GET /sane HTTP/1.1\r\nHost: h\r\n\r\n"


def assert_rejected(e: Edge, data: bytes, status: int | tuple[int, ...] = 400) -> Response:
    """`data` gets `status`, the connection is closed, and no byte of it reached upstream."""
    statuses = (status,) if isinstance(status, int) else status
    with Wire(e.port) as w:
        w.send(data)
        resp = w.response()
        assert resp.status in statuses, (resp.status, resp.body[:300])
        assert w.closed(), f"connection left open after {resp.status}"
        assert w.buf == b"", f"more bytes after the {resp.status}: {w.buf!r}"
    assert e.legacy.requests() == [] and e.svc.requests() == [], "a rejected request was forwarded"
    assert_serving(e)
    return resp


def assert_serving(e: Edge) -> None:
    """The proxy still answers an ordinary request on a new connection."""
    with Wire(e.port) as w:
        resp = w.send(SANE).response()
        assert resp.status == 200, resp.body[:300]


def forwarded_once(e: Edge, data: bytes, method: str = "GET") -> tuple[Response, Received]:
    """`data` is answered 200 and reached legacy as one request h11 parses cleanly."""
    with Wire(e.port) as w:
        resp = w.send(data).response(method)
        assert resp.status == 200, resp.body[:300]
    received = e.legacy.assert_clean()
    assert len(received) == 1, f"expected one upstream request, got {received!r}"
    return resp, received[0]


def wait_upstream_quiet(e: Edge) -> None:
    """Wait until the proxy has no request in flight, every upstream connection that saw
    bytes has been closed, and the upstream has read everything it was sent (a request
    the proxy cut may reach the upstream after the client saw its connection close)."""
    wait_until(
        lambda: in_flight(e) == 0,
        timeout=10,
        what="the proxy to finish the request",
    )
    wait_until(
        lambda: all(c.done for c in e.legacy.conns if c.raw) and e.legacy.settled(),
        timeout=10,
        what="the proxy to close its upstream connection",
    )


def in_flight(e: Edge) -> float:
    """The proxy's own count of requests in flight (its metrics)."""
    text = httpx.get(f"http://127.0.0.1:{e.admin_port}/metrics", timeout=5).text
    line = next(x for x in text.splitlines() if x.startswith("strangler_requests_in_flight "))
    return float(line.split()[1])


def assert_refused(e: Edge, data: bytes, statuses: tuple[int, ...] = (400, 414, 431)) -> None:
    """Garbage in: an error status or a plain close (never a success), nothing forwarded."""
    with Wire(e.port, timeout=1.5) as w:  # waiting forever for more is also a refusal
        w.send(data)
        try:
            resp = w.response()
        except ProtocolViolation:
            assert not w.raw.startswith(b"HTTP/1.1 2"), w.raw[:200]
        else:
            assert resp.status in statuses, (resp.status, resp.body[:200])
            # In the version this server speaks (aiohttp wrote its parser's refusals as
            # HTTP/1.0), saying it closes the connection.
            assert w.raw.startswith(b"HTTP/1.1 "), w.raw[:80]
            assert resp.header("connection") == ["close"], resp.headers
            assert w.closed(), f"connection left open after {resp.status}"
    assert e.legacy.requests() == [] and e.svc.requests() == [], "garbage was forwarded"
    assert_serving(e)
