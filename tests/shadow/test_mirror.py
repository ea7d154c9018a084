"""The mirror against real upstream processes: comparisons, noise, unsafe methods, limits."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from types import MappingProxyType

import httpx
import pytest

from proxy.config.model import Match, Route, ShadowPolicy, Upstream
from proxy.shadow.mirror import ShadowMirror
from proxy.shadow.model import CapturedResponse, ShadowRequest
from proxy.shadow.redact import REDACTED
from proxy.shadow.send import HttpSender
from proxy.shadow.store import SQLiteStore
from tests.support.procs import PYTHON, free_port, running


def upstream(name: str, port: int) -> Upstream:
    return Upstream(name=name, url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port)


@pytest.fixture(scope="module")
def servers():
    ports = {"legacy": free_port(), "candidate": free_port()}
    with (
        running(
            [PYTHON, "-m", "tests.shadow.upstream_app", "--port", str(ports["legacy"])]
            + ["--role", "primary"],
            ready_url=f"http://127.0.0.1:{ports['legacy']}/health",
        ),
        running(
            [PYTHON, "-m", "tests.shadow.upstream_app", "--port", str(ports["candidate"])]
            + ["--role", "candidate"],
            ready_url=f"http://127.0.0.1:{ports['candidate']}/health",
        ),
    ):
        yield {
            "legacy": upstream("legacy", ports["legacy"]),
            "candidate": upstream("candidate", ports["candidate"]),
            "dead": upstream("dead", free_port()),  # nothing listens there
        }


def stats(up: Upstream) -> dict:
    return httpx.get(f"http://127.0.0.1:{up.port}/stats").json()


def release_slow(up: Upstream) -> None:
    """Let every `/slow` answer the candidate holds go (they wait for this, on no clock)."""
    httpx.get(f"http://127.0.0.1:{up.port}/release").raise_for_status()


def route(name: str, target: str = "candidate", **policy) -> Route:
    return Route(
        name=name,
        match=Match(path="/items/{id}"),
        mode="shadow",
        target=target,
        shadow=ShadowPolicy(**policy),
    )


async def until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"timed out waiting for {what}")


def compared(mirror: ShadowMirror, name: str) -> int:
    for r in mirror.snapshot()["routes"]:
        if r["route"] == name:
            return r["compared"]
    return 0


@pytest.fixture
async def rig(servers, tmp_path):
    store = SQLiteStore(tmp_path / "shadow.db", flush_interval=0.02)
    sender = HttpSender(servers)
    mirrors = []

    def make(**kwargs) -> ShadowMirror:
        m = ShadowMirror(store, send=sender, **kwargs)
        mirrors.append(m)
        return m

    yield make, sender, store
    release_slow(servers["candidate"])
    for m in mirrors:
        await m.close(timeout=0.5)
    await sender.close()
    store.close()


async def primary_of(sender: HttpSender, req: ShadowRequest) -> CapturedResponse:
    return await sender("legacy", req)


async def test_differences_and_noise_are_recorded(rig):
    make, sender, store = rig
    mirror = make(redact=("price_note",))
    r = route("items", noise="primary-twice", ignore=("$.generated_at",))
    for ident in (1, 2, 3):
        req = ShadowRequest("GET", f"/items/{ident}", headers=(("accept", "application/json"),))
        primary = await primary_of(sender, req)
        assert mirror.submit(r, "/items/{id}", req, primary, f"req-{ident}")
    await until(lambda: compared(mirror, "items") == 3, what="3 comparisons")
    await mirror.close()
    records = {rec.request_id: rec for rec in store.records()}
    assert set(records) == {"req-1", "req-2", "req-3"}
    one, two, three = records["req-1"], records["req-2"], records["req-3"]
    # trace_id differs between the two primaries too: noise; generated_at is ignored
    assert one.noise is not None and "$.trace_id" in one.noise
    assert "$.generated_at" not in one.noise
    assert {d.path for d in one.differences} == {"$.trace_id", "$.email"}
    assert {d.path for d in two.differences} == {"$.trace_id", "$.email", "$.price_with_tax"}
    price = next(d for d in two.differences if d.path == "$.price_with_tax")
    assert (price.kind, price.primary, price.candidate) == ("value", 21.64, 21.65)
    kinds = {(d.path, d.kind) for d in three.differences}
    assert {("$.name", "missing"), ("$.full_name", "extra")} <= kinds
    # secrets never reach the store: not in differences, not in example bodies
    email = next(d for d in one.differences if d.path == "$.email")
    assert (email.primary, email.candidate) == (REDACTED, REDACTED)
    assert "example.com" not in one.primary_body and "example.org" not in one.candidate_body
    assert json.loads(one.primary_body)["id"] == 1
    assert one.candidate_status == 200 and one.candidate_latency > 0
    snap = mirror.snapshot()["routes"][0]
    assert snap["results"] == {"mismatch": 3}
    assert snap["latency_ms"]["candidate"]["p50"] > 0


async def test_rules_and_compressed_bodies(rig):
    make, sender, store = rig
    mirror = make()
    r = route(
        "rules",
        ignore=("$.trace_id", "$.generated_at", "$.email"),
        tolerance=0.02,
        unordered=MappingProxyType({"$.tags": "id"}),
    )
    req = ShadowRequest("GET", "/items/2", query="gzip=1")
    primary = await primary_of(sender, req)
    assert primary.header("content-encoding") == "gzip"
    assert mirror.submit(r, "/items/{id}", req, primary, "gz")
    await until(lambda: compared(mirror, "rules") == 1)
    await mirror.close()
    (rec,) = list(store.records())
    assert rec.body_kind == "json" and rec.differences == ()
    assert mirror.snapshot()["routes"][0]["results"] == {"match": 1}


async def test_acl_callables_translate_request_and_response(rig):
    make, sender, store = rig
    seen = []

    def to_new(route, req):
        seen.append((route.name, req.path, req.candidate_path, req.header("x-strangler-shadow")))
        return replace(req, candidate_path=req.path.replace("/items/", "/v2/items/"))

    async def to_legacy(route, original, resp):
        doc = json.loads(resp.body)
        doc["price_with_tax"] = 21.64
        doc["email"] = f"jane{doc['id']}@example.com"
        return replace(resp, body=json.dumps(doc).encode())

    mirror = make(translate_request=to_new, translate_response=to_legacy)
    r = route("acl", ignore=("$.trace_id", "$.generated_at"))
    req = ShadowRequest("GET", "/items/4", candidate_path="/rewritten/4")
    assert mirror.submit(r, "/items/{id}", req, await primary_of(sender, req), "acl-1")
    await until(lambda: compared(mirror, "acl") == 1)
    await mirror.close()
    assert seen == [("acl", "/items/4", "/rewritten/4", "1")]
    (rec,) = list(store.records())
    assert rec.match, rec.differences
    assert stats(sender._lookup("candidate"))["calls"].get("GET /v2/items/4", 0) >= 1


async def test_unsafe_methods_skip_or_dry_run_and_never_call_the_primary_twice(rig, servers):
    make, sender, store = rig
    mirror = make()
    body = json.dumps({"name": "x"}).encode()
    post = ShadowRequest(
        "POST", "/items", headers=(("content-type", "application/json"),), body=body
    )
    primary = CapturedResponse(201, (("content-type", "application/json"),), b"{}", 0.01)
    skip = route("skip", noise="primary-twice")
    assert mirror.submit(skip, "/items", post, primary, "p1") is False
    assert mirror.snapshot()["routes"][0]["dropped"] == {"unsafe_method": 1}
    assert mirror.admit(skip, "POST", len(body)) is False

    before = stats(servers["legacy"])["calls"].get("POST /items", 0)
    cand_before = stats(servers["candidate"])["shadow"].get("POST /items", 0)
    dry = route("dry", noise="primary-twice", unsafe="dry-run")
    assert mirror.admit(dry, "POST", len(body))
    assert mirror.submit(dry, "/items", post, primary, "p2", admitted=True)
    await until(lambda: compared(mirror, "dry") == 1)
    await mirror.close()
    assert stats(servers["legacy"])["calls"].get("POST /items", 0) == before
    assert stats(servers["candidate"])["shadow"].get("POST /items", 0) == cand_before + 1
    (rec,) = list(store.records())
    assert rec.noise is None  # no noise sample for an unsafe method
    assert {d.path for d in rec.differences} >= {"$.created", "$.role"}


async def test_oversized_bodies_and_sampling(rig):
    make, sender, store = rig
    draws = iter([0.1, 0.9, 0.2, 0.8])
    mirror = make(rng=lambda: next(draws))
    small = route("small", max_body=10, unsafe="dry-run")
    big = ShadowRequest("POST", "/items", body=b"x" * 11)
    primary = CapturedResponse(201, (), b"", 0.01)
    assert mirror.submit(small, "/items", big, primary, "big") is False
    assert mirror.admit(small, "POST", 11) is False
    # the size check holds even when the handler says it admitted the request
    assert mirror.submit(small, "/items", big, primary, "big2", admitted=True) is False
    assert mirror.snapshot()["routes"][0]["dropped"] == {"body_too_large": 3}

    half = route("half", sample=0.5)
    decisions = [mirror.admit(half, "GET", 0) for _ in range(4)]
    assert decisions == [True, False, True, False]
    snap = {r["route"]: r for r in mirror.snapshot()["routes"]}
    assert snap["half"]["sampled_out"] == 2
    assert mirror.admit(replace(half, mode="legacy"), "GET", 0) is False


def slow_shadow(
    name: str, *, concurrency: int, queue: int
) -> tuple[Route, ShadowRequest, CapturedResponse]:
    """A shadow route to the candidate's slow endpoint (it answers once the test releases
    it), a request for it and a primary answer: the pieces of a test that fills the
    route's queue."""
    route = Route(
        name=name,
        match=Match(path="/slow"),
        mode="shadow",
        target="candidate",
        shadow=ShadowPolicy(concurrency=concurrency, queue=queue),
    )
    primary = CapturedResponse(200, (("content-type", "application/json"),), b"{}", 0.001)
    return route, ShadowRequest("GET", "/slow", query=f"test={name}"), primary


async def test_slow_candidate_fills_the_queue_and_drops_without_blocking(rig, servers):
    make, sender, store = rig
    mirror = make()
    slow, req, primary = slow_shadow("slow", concurrency=2, queue=3)
    # `submit` is a plain function: it cannot wait for a slot, only take one or drop.
    assert not asyncio.iscoroutinefunction(mirror.submit)
    results = []
    for i in range(200):
        results.append(mirror.submit(slow, "/slow", req, primary, f"s{i}"))
        if i % 20 == 0:
            await asyncio.sleep(0.01)
    snap = mirror.snapshot()["routes"][0]
    assert snap["in_flight"] == 2 and snap["queued"] == 3
    assert sum(results) == 5  # 2 in flight + 3 queued; everything else dropped
    # queue_full, or proxy_busy for drops while the loop ran late (a loaded machine)
    assert sum(snap["dropped"].values()) == 195
    assert set(snap["dropped"]) <= {"queue_full", "proxy_busy"}
    assert "queue_full" in snap["dropped"]
    candidate = servers["candidate"]
    received = "GET /slow?test=slow received"
    await until(lambda: stats(candidate)["calls"].get(received) == 2, what="the 2 in flight")
    # A candidate that never answers does not hold shutdown: close gives up after its
    # 0.2 s (waiting for the candidate instead, it would wait until the bound, 30 s).
    await asyncio.wait_for(mirror.close(timeout=0.2), 30)
    assert "GET /slow?test=slow answered" not in stats(candidate)["calls"]
    release_slow(candidate)
    assert mirror.submit(slow, "/slow", req, primary, "late") is False
    assert mirror.snapshot()["routes"][0]["dropped"]["stopping"] >= 1


async def test_dead_candidate_is_recorded_as_an_error(rig):
    make, sender, store = rig
    counted = []
    mirror = make(count=lambda name, amount=1.0, /, **labels: counted.append((name, labels)))
    r = route("dead", target="dead")
    req = ShadowRequest("GET", "/items/1")
    primary = await primary_of(sender, req)
    for i in range(5):
        assert mirror.submit(r, "/items/{id}", req, primary, f"d{i}")
    await until(lambda: compared(mirror, "dead") == 5)
    await mirror.close()
    records = list(store.records())
    assert len(records) == 5
    for rec in records:
        assert rec.candidate_status is None
        (d,) = rec.differences
        assert d.kind == "error" and d.path == "status" and "Connect" in d.candidate
    assert counted.count(("shadow_comparison", {"route": "dead", "result": "error"})) == 5


async def test_candidate_timeout_is_bounded_by_the_mirror(rig):
    make, sender, store = rig
    mirror = make(timeout=0.2)
    r = Route(name="t", match=Match(path="/slow"), mode="shadow", target="candidate")
    primary = CapturedResponse(200, (("content-type", "application/json"),), b"{}", 0.001)
    # The candidate holds its answer until the test is over: only the mirror's 0.2 s ends it.
    assert mirror.submit(r, "/slow", ShadowRequest("GET", "/slow"), primary, "t1")
    await until(lambda: compared(mirror, "t") == 1, timeout=30)
    await mirror.close()
    (rec,) = list(store.records())
    assert rec.differences[0].kind == "error" and "0.2s" in rec.differences[0].candidate


async def test_submit_never_raises_on_garbage(rig):
    make, sender, store = rig
    mirror = make()
    assert mirror.submit(None, "/x", None, None, "r") is False  # type: ignore[arg-type]


async def test_candidate_is_called_at_the_rewritten_path_without_an_acl(rig, servers):
    make, sender, store = rig
    mirror = make()
    r = route("rewrite", ignore=("$.trace_id", "$.generated_at", "$.email", "$.price_with_tax"))
    before = stats(servers["candidate"])["calls"].get("GET /v2/items/5", 0)
    legacy_before = stats(servers["candidate"])["calls"].get("GET /items/5", 0)
    req = ShadowRequest("GET", "/items/5", candidate_path="/v2/items/5")
    assert mirror.submit(r, "/items/{id}", req, await primary_of(sender, req), "rw")
    await until(lambda: compared(mirror, "rewrite") == 1)
    await mirror.close()
    calls = stats(servers["candidate"])["calls"]
    assert calls.get("GET /v2/items/5", 0) == before + 1
    assert calls.get("GET /items/5", 0) == legacy_before
    (rec,) = list(store.records())
    assert rec.match, rec.differences


async def test_noise_from_a_second_primary_upstream(rig, servers):
    make, sender, store = rig
    sender._upstreams = {**servers, "legacy-b": replace(servers["legacy"], name="legacy-b")}
    mirror = make()
    r = route("second", noise="legacy-b", ignore=("$.email",))
    before = stats(servers["legacy"])["calls"].get("GET /items/7", 0)
    req = ShadowRequest("GET", "/items/7")
    primary = await primary_of(sender, req)
    assert mirror.submit(r, "/items/{id}", req, primary, "n1")
    await until(lambda: compared(mirror, "second") == 1)
    await mirror.close()
    (rec,) = list(store.records())
    assert set(rec.noise) == {"$.trace_id", "$.generated_at"}
    # one call by the test for the primary response, one by the mirror for noise
    assert stats(servers["legacy"])["calls"]["GET /items/7"] == before + 2
    assert mirror.snapshot()["routes"][0]["results"] == {"noise": 1}


async def test_handler_reported_drops_show_in_snapshot_and_metrics(rig):
    make, sender, store = rig
    counted = []
    mirror = make(count=lambda name, amount=1.0, /, **labels: counted.append((name, labels)))
    assert mirror.drop("items", "body_too_large") is False
    assert mirror.snapshot()["routes"][0]["dropped"] == {"body_too_large": 1}
    assert counted == [("shadow_drop", {"route": "items", "reason": "body_too_large"})]


async def test_acl_failures_are_recorded_with_their_stage(rig):
    make, sender, store = rig

    def broken_response(route, original, resp):
        raise KeyError("cust_nm")

    mirror = make(translate_response=broken_response)
    r = route("brokenacl")
    req = ShadowRequest("GET", "/items/1")
    assert mirror.submit(r, "/items/{id}", req, await primary_of(sender, req), "b1")
    await until(lambda: compared(mirror, "brokenacl") == 1)
    await mirror.close()
    (rec,) = list(store.records())
    (d,) = rec.differences
    assert d.kind == "error" and "ACL translate_response failed: KeyError" in d.candidate
    assert rec.candidate_status == 200  # the candidate did answer


async def test_a_full_queue_while_the_loop_runs_late_is_proxy_busy(rig, servers):
    """Workers yield to client traffic while the event loop lags; the queue then fills for
    that reason, and the drop says so (a bigger queue would not help)."""
    make, sender, store = rig
    mirror = make()
    route, req, primary = slow_shadow("busy", concurrency=1, queue=1)
    mirror._idle.clear()  # as the lag probe does when the loop runs late  # noqa: SLF001
    assert mirror.busy
    results = [mirror.submit(route, "/slow", req, primary, f"b{i}") for i in range(5)]
    assert results.count(False) >= 3
    assert set(mirror.snapshot()["routes"][0]["dropped"]) == {"proxy_busy"}
    mirror._idle.set()  # noqa: SLF001
    await asyncio.wait_for(mirror.close(timeout=0.2), 30)  # the candidate holds its answer


def test_shadow_answers_get_the_routes_response_headers_before_comparing():
    """The primary's answer already carries the route's `response_headers` (clients see
    them whichever side answers): the candidate's must too, or every comparison of such a
    header would be a difference no client could ever see."""
    from proxy.config.model import Match, Route
    from proxy.shadow.compare import Differ, Rules
    from proxy.shadow.mirror import as_route_answers
    from proxy.shadow.model import CapturedResponse

    route = Route(
        name="r", match=Match(prefix="/r"), mode="shadow", target="c",
        response_headers=(("X-Frame-Options", "DENY"), ("X-Powered-By", None)),
    )  # fmt: skip
    primary = CapturedResponse(200, (("content-type", "text/plain"), ("x-frame-options", "DENY")))
    candidate = CapturedResponse(
        200,
        (
            ("content-type", "text/plain"),
            ("x-powered-by", "PHP/5"),
            ("X-Frame-Options", "SAMEORIGIN"),
        ),
    )
    differ = Differ(Rules(headers=("x-frame-options", "x-powered-by")))
    assert not differ.compare(primary, candidate).match
    assert differ.compare(primary, as_route_answers(route, candidate)).match
    plain = Route(name="p", match=Match(prefix="/p"))
    assert as_route_answers(plain, candidate) is candidate


async def test_a_reload_that_resizes_a_full_lane_admits_into_the_new_one(rig):
    """The old lane's full queue says nothing once a reload changed the route's concurrency:
    `admit` lets the request through, and `submit` starts the new lane."""
    make, sender, store = rig
    mirror = make()
    slow, req, primary = slow_shadow("slow", concurrency=1, queue=1)
    while mirror.submit(slow, "/slow", req, primary, "fill"):
        pass  # one in flight, one queued: full
    assert mirror.admit(slow, "GET", None) is False
    bigger, _, _ = slow_shadow("slow", concurrency=4, queue=8)
    assert mirror.admit(bigger, "GET", None) is True
    assert mirror.submit(bigger, "/slow", req, primary, "after", admitted=True) is True
    await asyncio.wait_for(mirror.close(timeout=0.2), 30)  # the candidate holds its answer
