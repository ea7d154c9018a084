"""A slow or dead candidate costs the primary path nothing: latency and answers unchanged."""

from __future__ import annotations

import http.client
import statistics
import time
from pathlib import Path

import httpx

from proxy.shadow.mirror import DOWN_AFTER
from tests.shadow_e2e.app import item_status
from tests.shadow_e2e.support import counting_app, counts, items_route, shadow_stats
from tests.support.procs import free_port, stop, wait_until
from tests.support.world import proxy_config, start_proxy

REQUESTS = 240  # per proxy, measured
BATCH = 10  # consecutive requests to one proxy before moving to the next
WARMUP = 30
IDS = 50  # /items/1..50; every 7th is a 404


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, body, time.perf_counter() - started


def test_slow_and_dead_candidates_leave_primary_latency_and_answers_intact(tmp_path: Path):
    """Three proxy processes (`python -m proxy.cli serve`) share one primary: the same route in
    mode legacy (pass-through), in shadow mode towards a candidate answering after 2 s (2 calls
    in flight, 8 queued: the rest must be dropped), and in shadow mode towards a port nobody
    listens on. Requests go sequentially over one keep-alive connection per proxy, in
    interleaved batches of 10 (the batch order rotating), so machine noise falls on all three
    alike.

    Rule: each shadow proxy's p50 is within max(5 % of the pass-through p50, 0.3 ms) of it; every
    answer's status and body are byte-for-byte the primary's own (fetched directly); the slow
    candidate's overflow is counted as `queue_full` drops, the dead candidate's first refused
    calls as `error` results and the rest as `candidate_down` drops at GET /-/shadow; the
    primary is called once per client request."""
    p_port, slow_port, dead_port = free_port(), free_port(), free_port()
    dead_url = f"http://127.0.0.1:{dead_port}"  # nobody listens here
    with (
        counting_app(p_port, "primary") as primary_app,
        counting_app(slow_port, "slow", delay=2.0) as slow,
    ):
        primary = primary_app.url
        upstreams = {"legacy": primary, "slow": slow.url, "dead": dead_url}
        variants = {
            "pass": items_route("items", "legacy", "slow"),
            "slow": items_route("items", "shadow", "slow", concurrency=2, queue=8),
            "dead": items_route("items", "shadow", "dead"),
        }
        expected = {}
        with httpx.Client(base_url=primary) as direct:
            for ident in range(1, IDS + 1):
                resp = direct.get(f"/items/{ident}")
                assert resp.status_code == item_status(ident)
                expected[ident] = (resp.status_code, resp.content)
        before = counts(primary)["calls"]

        configs = {
            name: proxy_config(upstreams, [route], _dir(tmp_path, name))
            for name, route in variants.items()
        }
        with (
            start_proxy(_dir(tmp_path, "pass"), configs["pass"]) as p_pass,
            start_proxy(_dir(tmp_path, "slow"), configs["slow"]) as p_slow,
            start_proxy(_dir(tmp_path, "dead"), configs["dead"]) as p_dead,
        ):
            proxies = {"pass": p_pass, "slow": p_slow, "dead": p_dead}
            conns = {
                name: http.client.HTTPConnection("127.0.0.1", int(p.base.rsplit(":", 1)[1]))
                for name, p in proxies.items()
            }
            latency: dict[str, list[float]] = {name: [] for name in proxies}
            sent = {name: 0 for name in proxies}
            order = list(proxies)
            try:
                for i in range(WARMUP):
                    for name in order:
                        _get(conns[name], f"/items/{i % IDS + 1}")
                        sent[name] += 1
                for batch in range(REQUESTS // BATCH):
                    rotation = order[batch % 3 :] + order[: batch % 3]
                    for name in rotation:
                        for k in range(BATCH):
                            ident = (batch * BATCH + k) % IDS + 1
                            status, body, took = _get(conns[name], f"/items/{ident}")
                            assert (status, body) == expected[ident], (name, ident, status, body)
                            latency[name].append(took)
                            sent[name] += 1
            finally:
                for conn in conns.values():
                    conn.close()

            p50 = {name: statistics.median(v) * 1000 for name, v in latency.items()}
            allowed = max(0.05 * p50["pass"], 0.3)
            summary = ", ".join(f"{n} p50 {v:.3f} ms" for n, v in p50.items())
            for name in ("slow", "dead"):
                assert p50[name] - p50["pass"] <= allowed, f"{summary}; allowed +{allowed:.3f} ms"

            # the primary was called exactly once per client request, by every proxy
            after = counts(primary)["calls"]
            total = sum(after.values()) - sum(before.values())
            assert total == sum(sent.values())
            assert counts(primary)["shadow"] == {}  # no noise calls were configured

            # the slow candidate: 2 in flight, 8 queued, the rest dropped and counted
            slow_stats = shadow_stats(p_slow.admin, "items")
            # full queues: `proxy_busy` for drops while the loop ran late (a loaded machine)
            full = slow_stats["dropped"].get("queue_full", 0)
            full += slow_stats["dropped"].get("proxy_busy", 0)
            assert set(slow_stats["dropped"]) <= {"queue_full", "proxy_busy"}
            assert full > 0
            assert slow_stats["enqueued"] + full == sent["slow"]
            assert slow_stats["queue_limit"] == 8 and slow_stats["concurrency"] == 2
            # every call the candidate saw was a marked shadow call of an enqueued job
            slow_seen = wait_until(
                lambda: (seen := counts(slow.url))["calls"] and seen,
                timeout=10,
                what="the slow candidate's first shadow call",
            )
            assert slow_seen["calls"] == slow_seen["shadow"]
            assert sum(slow_seen["calls"].values()) <= slow_stats["enqueued"]
            stop(slow.proc)  # its queued calls now fail fast instead of holding proxy shutdown

            # the dead candidate: a few refused calls recorded as errors, then it rests and
            # every further shadow call is dropped as `candidate_down` (counted, not made)
            def settled() -> dict | None:
                stats = shadow_stats(p_dead.admin, "items")
                done = stats["compared"] + stats["dropped"].get("candidate_down", 0)
                return stats if done == sent["dead"] and stats["in_flight"] == 0 else None

            dead_stats = wait_until(settled, timeout=20, what="dead-candidate comparisons")
            assert dead_stats["results"] == {"error": dead_stats["compared"]}
            assert DOWN_AFTER <= dead_stats["compared"] < sent["dead"] // 4
            assert set(dead_stats["dropped"]) == {"candidate_down"}
            # ... and Prometheus counts the same drops
            dead_metrics = httpx.get(f"{p_dead.admin}/metrics").text
            n = dead_stats["dropped"]["candidate_down"]
            assert _metric(dead_metrics, "strangler_shadow_dropped_total", "candidate_down") == n
            slow_metrics = httpx.get(f"{p_slow.admin}/metrics").text
            for reason, n in slow_stats["dropped"].items():  # no requests since: no new drops
                assert _metric(slow_metrics, "strangler_shadow_dropped_total", reason) == n
            # the pass-through proxy shadowed nothing
            assert shadow_stats(p_pass.admin, "items") is None
            print(summary)


def _metric(text: str, name: str, reason: str) -> float:
    """The value of `name{..., reason="<reason>", ...}` in Prometheus text (0 if absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and f'reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(exist_ok=True)
    return path
