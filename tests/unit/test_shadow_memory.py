"""The shadow side's memory budget (`shadow.max_memory`): what is counted, what is dropped
(`memory_full`) and that every byte is given back, whichever way a comparison ends. No
sockets: the candidate is a coroutine the test controls, the store a list."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from proxy.config.model import Match, Route, ShadowPolicy, ShadowStoreConfig
from proxy.forward import BodyCapture
from proxy.shadow.memory import DEFAULT_MAX_MEMORY, ShadowMemory
from proxy.shadow.mirror import MEMORY_FULL, ShadowMirror
from proxy.shadow.model import CapturedResponse, ShadowRequest

MiB = 1024 * 1024
JSON = (("content-type", "application/json"),)


def big(n: int, fill: bytes = b"a") -> bytes:
    """A JSON document of exactly `n` bytes."""
    return b'{"x":"' + fill * (n - 8) + b'"}'


def test_the_budget_grants_up_to_its_limit_and_holds_give_back_once():
    # the mirror's default is the documented `shadow.max_memory` default
    assert ShadowStoreConfig().max_memory == DEFAULT_MAX_MEMORY == 64 * MiB
    memory = ShadowMemory(10)
    a, b = memory.hold(), memory.hold()
    assert a.grow(6) and a.grow(2) and a.size == 8
    assert not b.grow(3)  # 8 + 3 > 10: nothing taken
    assert b.size == 0 and memory.held == 8
    assert b.grow(2) and memory.held == 10 and not memory.room(0)
    a.release()
    a.release()  # a second release (a `finally` after a hand-over) gives nothing back twice
    assert memory.held == 2 and a.size == 0 and a.released
    assert not a.grow(1)  # a released hold is done
    assert memory.room(8) and not memory.room(9)
    b.release()
    assert memory.snapshot() == {"held": 0, "limit": 10, "peak": 10}
    with pytest.raises(ValueError):
        ShadowMemory(-1)


def test_a_capture_counts_its_bytes_as_they_arrive_and_gives_them_back_when_abandoned():
    memory = ShadowMemory(100)
    other = memory.hold()
    assert other.grow(40)

    fits = BodyCapture(1000, memory.hold())
    fits.add(b"x" * 30)
    fits.add(b"y" * 30)
    assert memory.held == 100 and not fits.abandoned
    body = fits.body()
    hold = fits.take_hold()
    fits.release()  # after the hand-over: the bytes stay held, by whoever took the hold
    assert body == b"x" * 30 + b"y" * 30 and memory.held == 100
    assert hold is not None and hold.size == 60
    hold.release()
    assert memory.held == 40

    no_room = BodyCapture(1000, memory.hold())
    no_room.add(b"z" * 50)
    no_room.add(b"z" * 20)  # 40 + 50 + 20 > 100: abandoned, its 50 given back at once
    assert no_room.abandoned and no_room.out_of_memory and no_room.body() is None
    assert memory.held == 40
    no_room.add(b"z")  # the rest of the answer streams past, nothing kept
    assert memory.held == 40

    too_big = BodyCapture(50, memory.hold())
    too_big.add(b"w" * 30)
    too_big.add(b"w" * 30)  # over the capture's own limit: primary_too_large, not memory
    assert too_big.abandoned and not too_big.out_of_memory and memory.held == 40

    cut = BodyCapture(1000, memory.hold())
    cut.add(b"v" * 10)
    cut.release()  # the relay failed or the client left
    cut.release()
    assert memory.held == 40 and cut.take_hold() is None
    other.release()
    assert memory.held == 0

    plain = BodyCapture(10)  # without a hold, as before: only its own limit
    plain.add(b"12345")
    assert plain.body() == b"12345"


class Store:
    def __init__(self) -> None:
        self.records: list = []

    def add(self, record) -> bool:
        self.records.append(record)
        return True

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def stats(self) -> dict:
        return {"added": len(self.records)}


class Candidate:
    """`send` for the mirror: answers what the primary answered, once `go` is set (or raises
    `error`); counts calls."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.error: BaseException | None = None
        self.calls = 0

    async def __call__(self, upstream: str, request: ShadowRequest) -> CapturedResponse:
        self.calls += 1
        await self.go.wait()
        if self.error is not None:
            raise self.error
        return CapturedResponse(200, JSON, b'{"x":"ok"}', 0.001)


def shadow_route(**policy) -> Route:
    return Route(
        name="big",
        match=Match(prefix="/big"),
        mode="shadow",
        target="cand",
        shadow=ShadowPolicy(ignore=("$.x",), **policy),
    )


async def until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


def stats(mirror: ShadowMirror) -> dict:
    (route,) = mirror.snapshot()["routes"]
    return route


@pytest.fixture
def no_busy(monkeypatch):
    # about memory, not about yielding to a late loop (a loaded test machine runs late)
    monkeypatch.setattr("proxy.shadow.mirror.BUSY_LAG", 1.0)


async def test_jobs_that_do_not_fit_are_dropped_as_memory_full_and_done_ones_give_back(no_busy):
    counted: list[tuple[str, dict]] = []
    candidate = Candidate()
    mirror = ShadowMirror(
        Store(),
        send=candidate,
        max_memory=10 * MiB,
        count=lambda name, amount=1.0, /, **labels: counted.append((name, labels)),
    )
    route = shadow_route(concurrency=2, queue=100, max_body=4 * MiB)
    primary = CapturedResponse(200, JSON, big(3 * MiB), 0.001)
    request = ShadowRequest("GET", "/big")
    try:
        accepted = [mirror.submit(route, "/big", request, primary, f"r{i}") for i in range(5)]
        # 3 answers of 3 MiB fit in 10 MiB, whatever the queue (100) and workers (2) allow
        assert accepted == [True, True, True, False, False]
        assert mirror.memory.held == 9 * MiB
        assert stats(mirror)["dropped"] == {MEMORY_FULL: 2}
        assert counted.count(("shadow_drop", {"route": "big", "reason": MEMORY_FULL})) == 2
        # the handler's early check, before it buffers a request body or keeps an answer
        assert not mirror.admit(route, "GET", 2 * MiB)
        assert mirror.admit(route, "GET", None)
        assert stats(mirror)["dropped"] == {MEMORY_FULL: 3}
        # a request body counts too
        small = CapturedResponse(200, JSON, big(100), 0.001)
        too_much = ShadowRequest("GET", "/big", body=b"b" * MiB)
        assert not mirror.submit(route, "/big", too_much, small, "body-too-much")
        with_body = ShadowRequest("GET", "/big", body=b"b" * (MiB // 2))
        assert mirror.submit(route, "/big", with_body, small, "with-body")
        held = 9 * MiB + MiB // 2 + 100
        assert mirror.snapshot()["memory"] == {"held": held, "limit": 10 * MiB, "peak": held}
        assert stats(mirror)["dropped"] == {MEMORY_FULL: 4}

        await until(lambda: candidate.calls == 2, "the two workers to call the candidate")
        candidate.go.set()
        await until(lambda: stats(mirror)["compared"] == 4, "4 comparisons")
        await until(lambda: mirror.memory.held == 0, "every byte given back")
        assert stats(mirror)["results"] == {"match": 4}
        assert mirror.submit(route, "/big", request, primary, "room-again")
    finally:
        await mirror.close(timeout=1)
    assert mirror.memory.held == 0 and mirror.memory.peak <= 10 * MiB


async def test_failed_dropped_and_cancelled_jobs_give_their_bytes_back(no_busy):
    candidate = Candidate()
    mirror = ShadowMirror(Store(), send=candidate, max_memory=8 * MiB)
    route = shadow_route(concurrency=1, queue=1)
    primary = CapturedResponse(200, JSON, big(2 * MiB), 0.001)
    request = ShadowRequest("GET", "/big")
    try:
        # the candidate fails: an `error` comparison, and the bytes are back
        candidate.error = ConnectionResetError("reset")
        candidate.go.set()
        assert mirror.submit(route, "/big", request, primary, "fails")
        await until(lambda: stats(mirror)["compared"] == 1, "the failed comparison")
        await until(lambda: mirror.memory.held == 0, "the failed job's bytes")
        assert stats(mirror)["results"] == {"error": 1}

        # a hold handed over by the handler's capture is the mirror's: released on any drop
        candidate.error, candidate.go = None, asyncio.Event()
        assert mirror.submit(route, "/big", request, primary, "in-flight")
        await until(lambda: candidate.calls == 2, "the worker to take it")
        assert mirror.submit(route, "/big", request, primary, "queued")  # the queue holds 1
        assert mirror.memory.held == 4 * MiB
        capture = BodyCapture(8 * MiB, mirror.hold())
        capture.add(primary.body)
        assert mirror.memory.held == 6 * MiB
        hold = capture.take_hold()
        assert not mirror.submit(route, "/big", request, primary, "no-queue", hold=hold)
        assert stats(mirror)["dropped"] == {"queue_full": 1}
        assert mirror.memory.held == 4 * MiB and hold is not None and hold.released
        unsafe = ShadowRequest("POST", "/big", body=b"{}")
        hold = mirror.hold()
        assert hold.grow(len(primary.body))
        assert not mirror.submit(route, "/big", unsafe, primary, "unsafe", hold=hold)
        assert mirror.memory.held == 4 * MiB

        # shutting down: the worker waiting on the candidate is cancelled, the queue drained
        await mirror.close(timeout=0.05)
        assert mirror.memory.held == 0
        assert stats(mirror)["dropped"] == {"queue_full": 1, "unsafe_method": 1, "stopping": 1}
    finally:
        await mirror.close(timeout=0.05)


async def test_a_worker_lets_go_of_its_last_job(no_busy):
    """Once compared, the primary's body is not kept alive by an idle worker."""
    candidate = Candidate()
    candidate.go.set()
    mirror = ShadowMirror(Store(), send=candidate, max_memory=8 * MiB)
    body = big(MiB, b"q")
    before = sys.getrefcount(body)
    try:
        primary = CapturedResponse(200, JSON, body, 0.001)
        assert mirror.submit(shadow_route(), "/big", ShadowRequest("GET", "/big"), primary, "r")
        del primary
        await until(lambda: stats(mirror)["compared"] == 1, "the comparison")
        await until(lambda: mirror.memory.held == 0, "its bytes")
        assert sys.getrefcount(body) == before
    finally:
        await mirror.close(timeout=1)
