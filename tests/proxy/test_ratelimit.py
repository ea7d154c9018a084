"""Rate limits through the real proxy: 429 with Retry-After, per client, on every lane."""

from __future__ import annotations

import httpx
import pytest

ROUTES = """\
- name: limited
  match: {prefix: /limited}
  rate_limit: {requests: 1, per: 3600, burst: 3}
- name: by-key
  match: {prefix: /keyed}
  rate_limit: {requests: 1, per: 3600, burst: 2, key: "header:X-Api-Key"}
"""


@pytest.mark.parametrize("lane", ["express", "aiohttp"])
def test_past_the_burst_a_client_gets_429_and_the_upstream_is_spared(start_proxy, lane):
    proxy = start_proxy(routes=ROUTES)

    def call() -> httpx.Response:
        if lane == "aiohttp":  # a chunked body hands the request to the aiohttp lane
            return httpx.post(proxy.url + "/limited/x", content=iter([b"hi"]))
        return httpx.get(proxy.url + "/limited/x")

    answers = [call() for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    refused = answers[3]
    assert refused.json()["error"] == "too_many_requests"
    assert refused.json()["route"] == "limited"
    assert 3000 < int(refused.headers["Retry-After"]) <= 3600
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert httpx.get(proxy.url + "/elsewhere").status_code == 200  # other routes unaffected


def test_a_header_key_gives_each_caller_its_own_budget(start_proxy):
    proxy = start_proxy(routes=ROUTES)

    def status(key: str) -> int:
        return httpx.get(proxy.url + "/keyed/x", headers={"X-Api-Key": key}).status_code

    assert [status("a"), status("a"), status("a")] == [200, 200, 429]
    assert [status("b"), status("b")] == [200, 200]


def test_the_budget_survives_a_reload_that_keeps_the_policy(start_proxy):
    proxy = start_proxy(routes=ROUTES)
    assert [httpx.get(proxy.url + "/limited/x").status_code for _ in range(3)] == [200] * 3
    reloaded = httpx.post(proxy.admin + "/-/reload")
    assert reloaded.status_code == 200
    assert httpx.get(proxy.url + "/limited/x").status_code == 429


def test_a_429_is_counted_on_the_proxy_side_not_on_legacy(start_proxy):
    """`side` says who answered: a refused request never reached legacy."""
    from proxy.telemetry.metrics import samples_from_text

    proxy = start_proxy(routes=ROUTES, extra="telemetry: {metrics: true}\n")
    assert [httpx.get(proxy.url + "/limited/x").status_code for _ in range(4)][-1] == 429
    text = httpx.get(proxy.admin + "/metrics").text
    counted = {
        (labels["side"], labels["status_class"]): v
        for name, labels, v in samples_from_text(text)
        if name == "strangler_requests_total" and labels.get("route") == "limited"
    }
    assert counted == {("legacy", "2xx"): 3.0, ("proxy", "4xx"): 1.0}


@pytest.mark.parametrize("lane", ["express", "aiohttp"])
def test_behind_two_trusted_balancers_each_client_has_its_own_budget(start_proxy, lane):
    """CDN -> balancer -> proxy, both listed: the last `X-Forwarded-For` hop is the CDN's
    address, shared by every client; the client is the nearest hop no listed proxy has."""
    proxy = start_proxy(routes=ROUTES, extra="trusted_proxies: [127.0.0.0/8]\n")

    def status(xff: str) -> int:
        headers = {"X-Forwarded-For": xff}
        if lane == "aiohttp":  # a chunked body hands the request to the aiohttp lane
            url, body = proxy.url + "/limited/x", iter([b"hi"])
            return httpx.post(url, headers=headers, content=body).status_code
        return httpx.get(proxy.url + "/limited/x", headers=headers).status_code

    assert [status("203.0.113.1, 127.0.0.9") for _ in range(4)] == [200, 200, 200, 429]
    assert status("203.0.113.2, 127.0.0.9") == 200


def test_a_forwarded_port_does_not_make_each_connection_a_new_client(start_proxy):
    """Gateways that write `ip:port` (Azure's) give one client a new port per connection."""
    proxy = start_proxy(routes=ROUTES, extra="trusted_proxies: [127.0.0.0/8]\n")
    statuses = [
        httpx.get(proxy.url + "/limited/x", headers={"X-Forwarded-For": f"203.0.113.1:{port}"})
        for port in (40001, 40002, 40003, 40004)
    ]
    assert [s.status_code for s in statuses] == [200, 200, 200, 429]


def test_a_header_key_sent_twice_counts_against_the_address(start_proxy):
    """Counted by its first value, a request spent a budget the client picked while the
    upstream could honour the other value: each request a fresh budget."""
    proxy = start_proxy(routes=ROUTES)

    def status(first: str) -> int:
        headers = [("X-Api-Key", first), ("X-Api-Key", "real")]
        return httpx.get(proxy.url + "/keyed/x", headers=headers).status_code

    assert [status(f"random-{i}") for i in range(3)] == [200, 200, 429]  # the address: burst 2


def test_long_header_keys_that_share_a_prefix_have_their_own_budgets(start_proxy):
    """Tokens of one issuer share their first few hundred bytes; one caller must not spend
    another's budget."""
    proxy = start_proxy(routes=ROUTES)

    def status(key: str) -> int:
        return httpx.get(proxy.url + "/keyed/x", headers={"X-Api-Key": key}).status_code

    assert [status("A" * 256 + "mallory") for _ in range(3)] == [200, 200, 429]
    assert status("A" * 256 + "alice") == 200
