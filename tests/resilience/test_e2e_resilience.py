"""Through the real proxy: retries only where safe, bounded load on a dead target, fallback
hiding it from GET clients, bulkheads isolating upstreams, breaker state on /-/upstreams."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.procs import wait_until

SVC_POLICY = """\
timeout: {connect: 1.0, read: 2.0, total: 5.0}
retry: {retries: 1, backoff_base: 0.005, backoff_max: 0.02}
breaker: {consecutive_failures: 5, open_for: 30}
"""

EXTRACTED = """\
- name: items
  match: {prefix: /items}
  mode: extracted
  target: svc
"""


def test_retries_only_where_allowed(start_proxy, world) -> None:
    p = start_proxy(svc=SVC_POLICY, routes=EXTRACTED)
    with httpx.Client(base_url=p.url, timeout=10) as c:
        world.svc.set("status", status=503, count=1)
        r = c.get("/items/1")
        assert r.status_code == 200 and r.json()["attempt"] == 2  # retried once
        assert world.svc.attempts() == 2

        world.svc.set("status", status=503, count=1)
        r = c.delete("/items/1")
        assert r.status_code == 200 and world.svc.attempts() == 4  # DELETE is idempotent

        world.svc.set("status", status=503, count=1)
        r = c.post("/items", content=b'{"a": 1}')
        assert r.status_code == 503  # never repeated: it may have been executed
        assert world.svc.attempts() == 5
        assert world.svc.stats()["by_method"]["POST"] == 1

        world.svc.set("status", status=500, count=1)
        assert c.get("/items/1").status_code == 500  # 500 is not in retry_on_status
        assert world.svc.attempts() == 6

        world.svc.set("status", status=503, count=2)
        assert c.get("/items/1").status_code == 503  # one retry, not more
        assert world.svc.attempts() == 8


def test_a_post_without_a_body_that_reached_the_upstream_is_never_sent_again(
    start_proxy, world
) -> None:
    """`POST /orders/7/cancel` carries no body, yet the upstream acted on it once it was
    written: a timeout or a closed connection after that is no reason to send it again."""
    p = start_proxy(svc=SVC_POLICY.replace("read: 2.0", "read: 0.3"), routes=EXTRACTED)
    with httpx.Client(base_url=p.url, timeout=10) as c:
        for fault, status in (("hang", 504), ("refuse", 502)):
            for method in ("POST", "PATCH"):
                world.svc.set(fault)
                before = world.svc.attempts()
                r = c.request(method, "/items/7/cancel")
                assert r.status_code == status, (fault, method, r.text)
                assert world.svc.attempts() == before + 1, (fault, method)


def test_a_retry_waits_for_retry_after_or_leaves_the_answer_to_the_client(
    start_proxy, world
) -> None:
    """A 503 asking for 120 s is not retried 5 ms later: the client gets it, Retry-After and
    body. A streamed PUT that cannot be sent twice gets the service's own answer too."""
    p = start_proxy(svc=SVC_POLICY, routes=EXTRACTED)
    with httpx.Client(base_url=p.url, timeout=10) as c:
        world.svc.set("status", status=503, count=1, retry_after="120")
        r = c.get("/items/1")
        assert r.status_code == 503 and r.headers["Retry-After"] == "120"
        assert r.json()["server"] == "extracted"  # the service's body, not the proxy's
        assert world.svc.attempts() == 1

        world.svc.set("status", status=503, count=1, retry_after="0")
        r = c.get("/items/1")
        assert r.status_code == 200 and world.svc.attempts() == 3  # "now" may be retried

        world.svc.set("status", status=503, count=1)
        r = c.put("/items/1", content=b"x" * 200_000)  # over the replay limit: sent once
        assert r.status_code == 503 and r.json()["server"] == "extracted"
        assert world.svc.attempts() == 4


def test_retry_metrics_count_what_was_sent(start_proxy, world) -> None:
    """`strangler_upstream_retries_total` counts retries sent; a retry the budget refuses
    is `retry_budget_exhausted`, one the breaker refuses a `rejection` (breaker_open)."""
    policy = SVC_POLICY.replace("consecutive_failures: 5", "consecutive_failures: 2")
    p = start_proxy(svc=policy, routes=EXTRACTED)
    world.svc.set("status", status=503)
    with httpx.Client(base_url=p.url, timeout=10) as c:
        assert c.get("/items/1").status_code == 503  # one failure, its retry another: open
        assert c.get("/items/2").status_code == 503  # refused before it is sent
        world.svc.set("ok")
    sent = world.svc.attempts()
    text = httpx.get(f"{p.admin}/metrics", timeout=5).text

    def value(prefix: str) -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(prefix) and 'upstream="svc"' in line
        )

    assert sent == 2
    assert value("strangler_upstream_retries_total") == sent - 1
    assert value("strangler_retry_budget_exhausted_total") == 0
    assert value('strangler_upstream_rejections_total{reason="breaker_open"') >= 1

    # The breaker opening on a first attempt refuses its retry: not sent, not "budget".
    q = start_proxy(svc=policy.replace("consecutive_failures: 2", "consecutive_failures: 1"),
                    routes=EXTRACTED)  # fmt: skip
    world.svc.set("status", status=503)
    before = world.svc.attempts()
    assert httpx.get(f"{q.url}/items/3", timeout=10).status_code == 503
    assert world.svc.attempts() == before + 1
    text = httpx.get(f"{q.admin}/metrics", timeout=5).text
    assert value("strangler_upstream_retries_total") == 0
    assert value("strangler_retry_budget_exhausted_total") == 0
    assert value('strangler_upstream_rejections_total{reason="breaker_open"') == 1


def test_dead_target_gets_bounded_attempts_then_fast_503_with_retry_after(
    start_proxy, world
) -> None:
    p = start_proxy(svc=SVC_POLICY, routes=EXTRACTED)
    world.svc.set("status", status=503)  # down for good
    requests = 60
    with httpx.Client(base_url=p.url, timeout=10) as c, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: c.get(f"/items/{i}"), range(requests)))
        assert {r.status_code for r in answers} == {503}
        attempts = world.svc.attempts()
        assert attempts <= 1.2 * requests, f"{attempts} upstream attempts for {requests} requests"
        rejected = [r for r in answers if "Retry-After" in r.headers]
        assert rejected, "once the breaker is open, 503s carry Retry-After"
        assert 1 <= int(rejected[-1].headers["Retry-After"]) <= 30

        started = time.monotonic()
        r = c.get("/items/x")
        assert r.status_code == 503 and time.monotonic() - started < 0.5
        assert world.svc.attempts() == attempts  # rejected without touching the network

        snap = httpx.get(f"{p.admin}/-/upstreams", timeout=5).json()
        svc = snap["svc"]
        assert svc["breaker"]["state"] == "open"
        assert svc["counters"]["breaker_open"] >= 1


def test_the_retry_budget_alone_caps_amplification_of_sequential_requests(
    start_proxy, world
) -> None:
    """With a breaker that does not trip (ratio only, a high bar, as docs/resilience.md
    suggests for the monolith), the retry budget alone must hold a dead target to 1.2x its
    clients' requests: one client after another is never concurrent, so a budget of
    concurrent retries alone let every request be retried (2x)."""
    policy = SVC_POLICY.replace(
        "breaker: {consecutive_failures: 5, open_for: 30}",
        "breaker: {consecutive_failures: 100000, min_requests: 100000}",
    )
    p = start_proxy(svc=policy, routes=EXTRACTED)
    world.svc.set("status", status=503)
    requests = 60
    with httpx.Client(base_url=p.url, timeout=10) as c:
        assert {c.get(f"/items/{i}").status_code for i in range(requests)} == {503}
    attempts = world.svc.attempts()
    assert attempts <= 1.2 * requests, f"{attempts} upstream attempts for {requests} requests"
    assert attempts > requests  # some were retried: the budget is not zero
    window = httpx.get(f"{p.admin}/-/upstreams", timeout=5).json()["svc"]["retries"]["window"]
    assert window["requests"] == requests and window["retries"] == attempts - requests


def test_fallback_hides_a_dead_extracted_service_from_get_clients(start_proxy, world) -> None:
    routes = EXTRACTED.replace("target: svc", "target: svc\n  fallback: legacy")
    p = start_proxy(svc=SVC_POLICY, routes=routes)
    world.svc.set("refuse")  # every connection is closed without an answer
    with httpx.Client(base_url=p.url, timeout=10) as c:
        for i in range(30):
            r = c.get(f"/items/{i}")
            assert r.status_code == 200, r.text
            assert r.json()["server"] == "legacy"
        assert world.svc.attempts() <= 6  # the breaker stopped trying after 5 failures
        r = c.post("/items", content=b"{}")
        assert r.status_code in (502, 503)  # unsafe requests are never re-sent elsewhere
        assert world.legacy.stats()["by_method"].get("POST") is None


def test_an_answer_that_cannot_be_relayed_is_a_failed_attempt(start_proxy, world) -> None:
    """`Transfer-Encoding: gzip, chunked` cannot be passed on: the attempt failed as an
    invalid answer does, so a GET is retried and then falls back, the breaker counts it,
    and a POST (never re-sent) gets the 502. It used to count as answered, and the 502
    came after: no fallback, and a breaker that never opened on it."""
    routes = EXTRACTED.replace("target: svc", "target: svc\n  fallback: legacy")
    p = start_proxy(svc=SVC_POLICY, routes=routes)
    world.svc.set("coded")
    with httpx.Client(base_url=p.url, timeout=10) as c:
        r = c.get("/items/1")
        assert r.status_code == 200 and r.json()["server"] == "legacy", r.text
        assert world.svc.attempts() == 2  # retried once, then legacy
        r = c.post("/items", content=b"{}")
        assert r.status_code == 502 and "gzip" in r.json()["message"], r.text
        assert world.svc.attempts() == 3 and world.legacy.stats()["by_method"].get("POST") is None
        for i in range(3):
            assert c.get(f"/items/{i}").json()["server"] == "legacy"
    snap = httpx.get(f"{p.admin}/-/upstreams", timeout=5).json()["svc"]
    assert snap["breaker"]["state"] == "open", snap


def test_bulkhead_overflow_is_a_fast_503_and_other_upstreams_are_unaffected(
    start_proxy, world
) -> None:
    """Two requests the upstream holds until their clients leave fill the bulkhead (no
    timer frees them: read 30 s), so the third is refused at once, never queued. (They
    used to hang for 1.5 s: on a slow machine the slots could be free again before the
    third request came.)"""
    svc = SVC_POLICY.replace("read: 2.0, total: 5.0", "read: 30, total: 60")
    svc += "bulkhead: {max_concurrent: 2, max_queued: 0, queue_timeout: 0}\n"
    routes = EXTRACTED + "- name: other\n  match: {prefix: /other}\n  mode: extracted\n"
    routes += "  target: other\n"
    p = start_proxy(svc=svc, routes=routes)
    host, port = p.url.removeprefix("http://").split(":")
    held: list[socket.socket] = []
    try:
        for i in range(2):
            conn = socket.create_connection((host, int(port)), timeout=10)
            conn.sendall(b"GET /items/%d HTTP/1.1\r\nHost: x\r\nX-Fault: hang\r\n\r\n" % i)
            held.append(conn)
        wait_until(lambda: world.svc.attempts() == 2, what="the two held requests upstream")
        with httpx.Client(base_url=p.url, timeout=30) as c:
            started = time.monotonic()
            r = c.get("/items/overflow")
            # Queued instead, it would wait for a slot the held requests never give back.
            assert r.status_code == 503 and time.monotonic() - started < 5
            assert "Retry-After" in r.headers
            assert world.svc.attempts() == 2  # overflow never reached the upstream
            r = c.get("/other/1")
            assert r.status_code == 200 and r.json()["server"] == "other"
    finally:
        for conn in held:
            conn.close()


def test_a_queued_request_whose_client_left_as_its_slot_came_never_holds_it(
    start_proxy, world
) -> None:
    """A holds the only slot, B waits in the queue; both clients leave at once. A's slot
    is handed to B just as B is cancelled: B must pass it on (or, if it was sent before
    its client's leaving was seen, be cancelled there), not go on with nobody to answer
    and hold the bulkhead until the upstream's read timeout (Python 3.11's `wait_for`
    returned the slot and swallowed the cancellation)."""
    svc = SVC_POLICY.replace("read: 2.0, total: 5.0", "read: 30, total: 60")
    svc += "bulkhead: {max_concurrent: 1, max_queued: 1, queue_timeout: 20}\n"
    p = start_proxy(svc=svc, routes=EXTRACTED)
    host, port = p.url.removeprefix("http://").split(":")
    for round_ in range(5):
        assert httpx.get(f"{p.url}/items/warm", timeout=10).status_code == 200  # idle conn
        before = world.svc.attempts()
        request = b"GET /items/%d HTTP/1.1\r\nHost: x\r\nX-Fault: hang\r\n\r\n"
        a = socket.create_connection((host, int(port)))
        a.sendall(request % 1)
        wait_until(lambda n=before + 1: world.svc.attempts() == n, timeout=5, what="A sent")
        b = socket.create_connection((host, int(port)))
        b.sendall(request % 2)
        wait_until(lambda: upstream(p, "svc")["queued"] == 1, timeout=5, what="B queued")
        a.close()
        b.close()
        wait_until(
            lambda: upstream(p, "svc")["in_flight"] == 0 and upstream(p, "svc")["queued"] == 0,
            timeout=5,
            what=f"every slot given back (round {round_})",
        )


def test_open_breaker_survives_a_reload_unless_its_policy_changes(start_proxy, world) -> None:
    p = start_proxy(svc=SVC_POLICY, routes=EXTRACTED)
    world.svc.set("status", status=503)
    with httpx.Client(base_url=p.url, timeout=10) as c:
        for i in range(5):
            c.get(f"/items/{i}")
        assert upstream(p, "svc")["breaker"]["state"] == "open"

        text = p.config.read_text()
        p.reload(text.replace("- name: items", "- name: items-renamed"))
        assert upstream(p, "svc")["breaker"]["state"] == "open"  # same policy: kept
        attempts = world.svc.attempts()
        assert c.get("/items/1").status_code == 503
        assert world.svc.attempts() == attempts

        p.reload(text.replace("open_for: 30", "open_for: 20"))
        assert upstream(p, "svc")["breaker"]["state"] == "closed"  # new policy: fresh guard
        world.svc.set("ok")
        assert c.get("/items/1").status_code == 200


def upstream(p, name: str) -> dict:
    return httpx.get(f"{p.admin}/-/upstreams", timeout=5).json()[name]


def test_a_url_that_answers_500_cannot_shut_the_default_upstream(start_proxy, world) -> None:
    """The default upstream counts only gateway failures (502/503/504, transport errors):
    a client that finds a URL where the monolith answers 500 must not open its breaker and
    turn every legacy route into a 503. An extracted service's 500s still count."""
    p = start_proxy(svc=SVC_POLICY, routes=EXTRACTED)
    with httpx.Client(base_url=p.url, timeout=10) as c:
        world.legacy.set("status", status=500)
        assert [c.get(f"/crash/{i}").status_code for i in range(8)] == [500] * 8
        assert upstream(p, "legacy")["breaker"]["state"] == "closed"
        world.legacy.set("status", status=503)
        for i in range(5):
            c.get(f"/down/{i}")
        assert upstream(p, "legacy")["breaker"]["state"] == "open"

        world.svc.set("status", status=500)
        for i in range(5):
            c.get(f"/items/{i}")
        assert upstream(p, "svc")["breaker"]["state"] == "open"


def test_a_body_that_fails_before_it_is_complete_fails_the_attempt(start_proxy, world) -> None:
    """Headers and half a small body, then a reset or a stall: nothing has reached the
    client, so a GET falls back to legacy, and the breaker counts the failure (it counted
    a success before, so a service that always broke mid-body never tripped it)."""
    policy = SVC_POLICY.replace("read: 2.0", "read: 0.3")
    routes = EXTRACTED + "- name: safe\n  match: {prefix: /safe}\n  mode: extracted\n"
    routes += "  target: svc\n  fallback: legacy\n"
    p = start_proxy(svc=policy, routes=routes)
    with httpx.Client(base_url=p.url, timeout=10) as c:
        for fault in ("cut", "stall"):
            world.svc.set(fault)
            r = c.get("/safe/1")
            assert r.status_code == 200 and r.json()["server"] == "legacy", (fault, r.text)
        world.svc.set("ok")
        assert c.get("/safe/1").json()["server"] == "extracted"  # the breaker is not open yet
        before = world.svc.attempts()

        world.svc.set("cut")
        # Four requests since the success: the first is retried, then the retry budget
        # (3 retries over the last 10 s, the /safe ones included) is spent, so one attempt
        # each: the fifth failed attempt opens the breaker.
        assert [c.get(f"/items/{i}").status_code for i in range(4)] == [502] * 4
        assert world.svc.attempts() - before == 5
        snap = httpx.get(f"{p.admin}/-/upstreams", timeout=5).json()["svc"]
        assert snap["breaker"]["state"] == "open", snap
        attempts = world.svc.attempts()
        assert c.get("/items/9").status_code == 503
        assert world.svc.attempts() == attempts


def test_an_acl_route_falls_back_when_the_service_fails_mid_body(start_proxy, world) -> None:
    """The ACL reads the whole answer to translate it: a body that breaks off or stalls
    (small or large) is the service failing, so a GET falls back, and without a fallback
    the client gets 502/504, not the proxy's 500."""
    policy = SVC_POLICY.replace("read: 2.0", "read: 0.3")
    route = """\
- name: customer
  match: {path: "/api/customers/{id}"}
  mode: extracted
  target: svc
  acl: customers
"""
    headers = {"X-Tenant-ID": "acme"}
    for fallback in (True, False):
        routes = route + ("  fallback: legacy\n" if fallback else "")
        p = start_proxy(svc=policy, routes=routes, top="tenant: {header: X-Tenant-ID}\n")
        with httpx.Client(base_url=p.url, timeout=10, headers=headers) as c:
            for fault, length, status in (
                ("cut", 2000, 502),
                ("stall", 2000, 504),
                ("cut", 200_000, 502),
                ("stall", 200_000, 504),
            ):
                world.svc.set(fault, length=length)
                r = c.get("/api/customers/7")
                if fallback:
                    assert r.status_code == 200, (fault, length, r.text)
                    assert r.json()["server"] == "legacy"
                else:
                    assert r.status_code == status, (fault, length, r.text)
