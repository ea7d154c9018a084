"""The fault-injecting upstream itself: each fault looks to a client as it should."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.faulty import faulty


@pytest.fixture(scope="module")
def server():
    with faulty("extracted") as f:
        yield f


@pytest.fixture(autouse=True)
def clean(server):
    server.reset()
    yield


def test_ok_reports_what_arrived(server) -> None:
    r = httpx.post(f"{server.url}/v1/x?a=1", content=b"12345", headers={"X-Tenant-ID": "acme"})
    assert r.status_code == 200
    assert r.json() == {
        "server": "extracted",
        "attempt": 1,
        "method": "POST",
        "path": "/v1/x?a=1",
        "body_bytes": 5,
        "tenant": "acme",
    }
    stats = server.stats()
    assert stats["attempts"] == 1 and stats["body_bytes"] == 5
    assert stats["by_method"] == {"POST": 1} and stats["by_path"] == {"/v1/x": 1}


def test_status_burst_then_back_to_ok(server) -> None:
    server.set("status", status=503, count=3)
    codes = [httpx.get(f"{server.url}/a").status_code for _ in range(5)]
    assert codes == [503, 503, 503, 200, 200]
    assert server.attempts() == 5


def test_refuse_closes_without_answer(server) -> None:
    server.set("refuse", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{server.url}/a")
    assert httpx.get(f"{server.url}/a").status_code == 200
    assert server.attempts() == 2


def test_reset_mid_body(server) -> None:
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(f"{server.url}/a", headers={"X-Fault": "reset"})


def test_hang_and_slow(server) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{server.url}/a", headers={"X-Fault": "hang"}, timeout=0.3)
    started = time.monotonic()
    r = httpx.get(f"{server.url}/a", headers={"X-Fault": "slow=0.3"}, timeout=5)
    assert r.status_code == 200 and time.monotonic() - started >= 0.3
    assert server.attempts() == 2


def test_bad_fault_is_refused_with_the_fix(server) -> None:
    r = httpx.post(f"{server.url}/-/faults", json={"mode": "explode"})
    assert r.status_code == 400 and "use one of ok, status" in r.json()["error"]
