"""A shadow route whose primary answers big and whose candidate is slow: the proxy keeps at
most `shadow.max_memory` of answers for comparing, drops the rest as `memory_full`, answers
every client in full, and gives the bytes back once the comparisons end.

Before the bound, each queued comparison held its primary answer (up to 8 MiB) and the
route's queue (256) and workers (16) held them all: 300 GETs of an 8 MB answer took the proxy
from 59 MiB to 2.2 GiB. Real processes: proxy, primary and candidate."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.shadow_e2e.app import blob_doc
from tests.shadow_e2e.support import counting_app, shadow_stats
from tests.support.procs import free_port, stop, wait_until
from tests.support.world import proxy_config, start_proxy

MiB = 1024 * 1024
BOUND = 16 * MiB  # shadow.max_memory
BLOB = 4 * MiB  # each primary answer
REQUESTS, PARALLEL = 64, 16  # 256 MiB of answers, every one admitted by queue and workers
SLACK = 64 * MiB  # what the proxy may grow by beyond the bound (buffers, allocator)


def proc_status(pid: int, key: str) -> int:
    """A `VmRSS`/`VmHWM` line of /proc/PID/status, in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE).group(1)) * 1024


def settled(admin: str, route: str, n: int) -> dict | None:
    """The route's snapshot once `n` shadow calls were queued or dropped."""
    stats = shadow_stats(admin, route)
    if stats and stats["enqueued"] + sum(stats["dropped"].values()) >= n:
        return stats
    return None


def test_big_answers_and_a_slow_candidate_stay_within_the_shadow_memory_bound(tmp_path):
    with (
        counting_app(free_port(), "primary") as primary,
        counting_app(free_port(), "candidate", delay=60) as candidate,
    ):
        route = {"name": "blobs", "match": {"prefix": "/blobs"}, "mode": "shadow"}
        route["target"] = "candidate"
        config = proxy_config(
            {"legacy": primary.url, "candidate": candidate.url}, [route], tmp_path
        )
        config["shadow"]["max_memory"] = BOUND
        with (
            start_proxy(tmp_path, config) as proxy,
            httpx.Client(
                base_url=proxy.base,
                timeout=30,
                limits=httpx.Limits(max_connections=PARALLEL),
            ) as http,
        ):
            # warm up (the shadow path's lazy imports), then measure from here
            assert http.get("/blobs/100").content == blob_doc(100)
            wait_until(lambda: settled(proxy.admin, "blobs", 1), what="the warm-up's shadow")
            before = proc_status(proxy.pid, "VmRSS")

            expected = blob_doc(BLOB)

            def fetch(_: int) -> tuple[int, bool]:
                resp = http.get(f"/blobs/{BLOB}")
                return resp.status_code, resp.content == expected

            with ThreadPoolExecutor(PARALLEL) as pool:
                answers = list(pool.map(fetch, range(REQUESTS)))
            assert answers == [(200, True)] * REQUESTS  # every client got its whole answer

            stats = wait_until(
                lambda: settled(proxy.admin, "blobs", REQUESTS + 1),
                what="every shadow call queued or dropped",
            )
            grown = proc_status(proxy.pid, "VmHWM") - before  # at its peak
            assert grown < BOUND + SLACK, f"the proxy grew by {grown / MiB:.0f} MiB"
            memory = httpx.get(f"{proxy.admin}/-/shadow").json()["memory"]
            assert memory["limit"] == BOUND and memory["peak"] <= BOUND, memory
            # what did not fit was dropped and counted; what fits waits for the candidate
            assert set(stats["dropped"]) == {"memory_full"}, stats
            assert stats["dropped"]["memory_full"] >= REQUESTS - BOUND // BLOB
            assert stats["queued"] + stats["in_flight"] <= BOUND // BLOB + 1
            metrics = httpx.get(f"{proxy.admin}/metrics").text
            dropped = re.search(
                r'^strangler_shadow_dropped_total\{(?=[^}]*reason="memory_full")'
                r'(?=[^}]*route="blobs")[^}]*\} (\S+)$',
                metrics,
                re.MULTILINE,
            )
            assert dropped and float(dropped.group(1)) == stats["dropped"]["memory_full"]

            # the candidate goes away: its calls fail, the queue empties, every byte is back
            stop(candidate.proc)

            def drained() -> dict | None:
                snap = httpx.get(f"{proxy.admin}/-/shadow").json()
                (entry,) = snap["routes"]
                idle = entry["queued"] == entry["in_flight"] == 0
                return snap if idle and snap["memory"]["held"] == 0 else None

            snap = wait_until(drained, what="the shadow memory given back")
            assert snap["routes"][0]["results"].get("error", 0) >= 1
