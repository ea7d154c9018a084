"""Shadow work yields to client traffic: while the event loop runs late, the mirror's workers
wait (their queues fill, further calls are dropped as `queue_full`); when it keeps up again,
they finish what was queued. Real candidate process; the load is real blocking work on the
loop (what a saturated proxy's request handling looks like from the loop's point of view)."""

from __future__ import annotations

import asyncio
import time

from proxy.config.model import Match, Route, ShadowPolicy, Upstream
from proxy.shadow.mirror import ShadowMirror
from proxy.shadow.model import CapturedResponse, ShadowRequest
from proxy.shadow.send import HttpSender
from proxy.shadow.store import SQLiteStore
from tests.shadow_e2e.support import counting_app, counts
from tests.support.procs import free_port

PRIMARY = CapturedResponse(200, (("content-type", "application/json"),), b"{}", 0.001)
# The product's thresholds (2 ms busy, 0.5 ms idle) are within what a loaded test machine's
# loop runs late by itself: 1.8 ms smoothed idle here, 7.4 ms with 4 CPU burners on 2 cores.
# The test's thresholds are far from both that and its own load (STRETCH): busy over
# 100 ms, idle again under 30 ms.
BUSY_LAG, IDLE_LAG = 0.1, 0.03
STRETCH = 0.25  # the saturating load blocks the loop this long at a time


def route_stats(mirror: ShadowMirror) -> dict:
    (route,) = mirror.snapshot()["routes"]
    return route


async def until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_workers_wait_while_the_loop_is_late_and_resume_after(tmp_path, monkeypatch):
    # What is tested is waiting while busy and resuming after, not where the thresholds are.
    monkeypatch.setattr("proxy.shadow.mirror.BUSY_LAG", BUSY_LAG)
    monkeypatch.setattr("proxy.shadow.mirror.IDLE_LAG", IDLE_LAG)
    port = free_port()
    upstreams = {"cand": Upstream(name="cand", url=f"http://127.0.0.1:{port}", port=port)}
    route = Route(
        name="items", match=Match(prefix="/items"), mode="shadow", target="cand",
        shadow=ShadowPolicy(concurrency=2, queue=4, ignore=("$.name", "$.price", "$.id")),
    )  # fmt: skip
    store = SQLiteStore(tmp_path / "shadow.db", flush_interval=0.02)
    sender = HttpSender(upstreams)
    mirror = ShadowMirror(store, send=sender)
    burning = True
    stretches = 0

    async def saturate() -> None:
        """Block the loop in stretches much longer than the probe's period, as back-to-back
        request handling does: every probe then wakes about STRETCH late, so `busy` cannot
        flicker. Between two stretches the loop runs whatever is ready (one iteration)."""
        nonlocal stretches
        while burning:
            time.sleep(STRETCH)
            stretches += 1
            await asyncio.sleep(0)

    try:
        with counting_app(port, "cand") as cand:
            req = ShadowRequest("GET", "/items/1")
            assert mirror.submit(route, "/items/{id}", req, PRIMARY, "before")
            await until(lambda: route_stats(mirror)["compared"] == 1, what="the first comparison")
            assert not mirror.busy and mirror.snapshot()["loop"]["busy"] is False

            load = asyncio.get_running_loop().create_task(saturate())
            await until(lambda: mirror.busy, what="the loop to be seen as busy")
            assert mirror.snapshot()["loop"]["lag_ms"] > BUSY_LAG * 1000
            accepted = [
                mirror.submit(route, "/items/{id}", req, PRIMARY, f"busy-{i}") for i in range(10)
            ]
            assert accepted == [True] * 4 + [False] * 6  # the queue holds 4
            # Still saturated: nothing is sent to the candidate in the next 12 iterations of
            # the loop (counted, not timed), enough for workers that did not wait to call it.
            seen = stretches
            await until(lambda: stretches >= seen + 12, what="12 more stretches of load")
            stats = route_stats(mirror)  # the 2 workers took a job each and wait with it
            assert stats["dropped"] == {"proxy_busy": 6} and stats["queued"] == 2
            assert stats["compared"] == 1 and stats["in_flight"] == 2
            assert counts(cand.url)["calls"] == {"GET /items/1": 1}

            burning = False
            await load
            await until(lambda: route_stats(mirror)["compared"] == 5, what="the queued work")
            # Comparing is work on the loop too; idle again once the lag is under IDLE_LAG.
            await until(lambda: not mirror.busy, what="the loop to be seen as idle again")
            assert route_stats(mirror)["results"] == {"match": 5}
            assert counts(cand.url)["shadow"] == {"GET /items/1": 5}
    finally:
        burning = False
        await mirror.close(timeout=0.5)
        await sender.close()
        store.close()
