"""An unreachable candidate rests: after DOWN_AFTER refused calls it is not called (drops are
counted as `candidate_down`) until its rest ends; an answer resets it, a failed probe doubles
the rest. Real sockets and a real candidate process; only the breaker's clock is ours."""

from __future__ import annotations

import asyncio
import time

import pytest

from proxy.config.model import Match, Route, ShadowPolicy, Upstream
from proxy.shadow.mirror import DOWN_AFTER, DOWN_FOR, ShadowMirror
from proxy.shadow.model import CapturedResponse, ShadowRequest
from proxy.shadow.send import HttpSender
from proxy.shadow.store import SQLiteStore
from tests.shadow_e2e.support import counting_app, counts
from tests.support.procs import free_port, stop


@pytest.fixture(autouse=True)
def _mirror_never_yields(monkeypatch):
    # About a candidate that is down, not about yielding to a late loop (BUSY_LAG; a loaded
    # test machine runs late): see tests/shadow_e2e/test_busy_loop.py for that.
    monkeypatch.setattr("proxy.shadow.mirror.BUSY_LAG", 1.0)


PRIMARY = CapturedResponse(200, (("content-type", "application/json"),), b'{"id": 1}', 0.001)
REQUEST = ShadowRequest("GET", "/items/1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def snap(mirror: ShadowMirror) -> dict:
    (route,) = mirror.snapshot()["routes"]
    return route


def settled(mirror: ShadowMirror) -> int:
    """Comparisons finished plus shadow calls dropped so far."""
    routes = mirror.snapshot()["routes"]
    return sum(r["compared"] + sum(r["dropped"].values()) for r in routes)


async def shadow_once(mirror: ShadowMirror, route: Route, ident: str) -> bool:
    """Submit one comparison and wait until the mirror has settled it (compared or dropped)."""
    before = settled(mirror)
    if not mirror.submit(route, "/items/{id}", REQUEST, PRIMARY, ident):
        return False
    deadline = time.monotonic() + 10
    while settled(mirror) == before:
        assert time.monotonic() < deadline, f"shadow call {ident} did not finish"
        await asyncio.sleep(0.005)
    return True


async def test_unreachable_candidate_rests_and_comes_back(tmp_path, monkeypatch):
    # This is about the candidate's rest, not about yielding to a late loop: on a loaded
    # machine the test's own loop runs late and the workers would wait (test_busy_loop.py).
    monkeypatch.setattr("proxy.shadow.mirror.BUSY_LAG", 1.0)
    port = free_port()
    upstreams = {"cand": Upstream(name="cand", url=f"http://127.0.0.1:{port}", port=port)}
    route = Route(
        name="items", match=Match(prefix="/items"), mode="shadow", target="cand",
        shadow=ShadowPolicy(ignore=("$.name", "$.price")),
    )  # fmt: skip
    clock = Clock()
    store = SQLiteStore(tmp_path / "shadow.db", flush_interval=0.02)
    sender = HttpSender(upstreams)
    counted: list[tuple[str, dict]] = []
    mirror = ShadowMirror(
        store,
        send=sender,
        monotonic=clock,
        count=lambda name, amount=1.0, /, **labels: counted.append((name, labels)),
    )
    try:
        # nobody listens: DOWN_AFTER refused calls are recorded as errors ...
        for i in range(DOWN_AFTER):
            assert await shadow_once(mirror, route, f"r{i}")
        assert snap(mirror)["results"] == {"error": DOWN_AFTER}
        assert mirror.candidate_down("cand")
        # ... then no call is made, neither by submit nor by the handler's admit
        assert not mirror.submit(route, "/items/{id}", REQUEST, PRIMARY, "skipped")
        assert not mirror.admit(route, "GET", None)
        assert snap(mirror)["dropped"] == {"candidate_down": 2}
        assert ("shadow_drop", {"route": "items", "reason": "candidate_down"}) in counted
        clock.now += DOWN_FOR * 0.9
        assert not mirror.admit(route, "GET", None)

        # the rest is over but the probe is refused again: twice as long this time
        clock.now += DOWN_FOR * 0.1
        assert await shadow_once(mirror, route, "probe-1")
        assert snap(mirror)["results"] == {"error": DOWN_AFTER + 1}
        clock.now += DOWN_FOR * 1.5
        assert mirror.candidate_down("cand")
        clock.now += DOWN_FOR * 0.5

        # the candidate is back: the probe is answered, compared, and the breaker resets
        with counting_app(port, "cand") as cand:
            assert await shadow_once(mirror, route, "probe-2")
            assert snap(mirror)["results"] == {"error": DOWN_AFTER + 1, "match": 1}
            assert not mirror.candidate_down("cand")
            assert counts(cand.url)["shadow"] == {"GET /items/1": 1}
            # a single refusal after recovery does not open it again
            stop(cand.proc)
        assert await shadow_once(mirror, route, "one-refusal")
        assert not mirror.candidate_down("cand")
    finally:
        await mirror.close(timeout=0.5)
        await sender.close()
        store.close()
    ids = {r.request_id for r in store_records(tmp_path)}
    assert ids == {f"r{i}" for i in range(DOWN_AFTER)} | {"probe-1", "probe-2", "one-refusal"}


def store_records(tmp_path) -> list:
    store = SQLiteStore(tmp_path / "shadow.db")
    try:
        return list(store.records())
    finally:
        store.close()
