"""UpstreamGuard and Bulkhead in-process: overflow fails fast, other upstreams unaffected,
retry budget enforced at admission, outcomes reach the breaker, registry survives reloads."""

from __future__ import annotations

import asyncio
from types import MappingProxyType

import pytest

from proxy.config.model import (
    BreakerPolicy,
    BulkheadPolicy,
    Config,
    RetryPolicy,
    Upstream,
)
from proxy.upstream import (
    BreakerOpen,
    BulkheadFull,
    GuardRegistry,
    RetryBudgetExhausted,
    UpstreamGuard,
)
from proxy.upstream.bulkhead import Bulkhead


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def upstream(name: str = "svc", **kw) -> Upstream:
    return Upstream(name=name, url=f"http://127.0.0.1:1/{name}", **kw)


def config(*ups: Upstream, state: str | None = None) -> Config:
    return Config(
        version=1, upstreams=MappingProxyType({u.name: u for u in ups}), routes=(), state=state
    )


async def hold(guard: UpstreamGuard, release: asyncio.Event, entered: asyncio.Event | None = None):
    async with guard.slot() as slot:
        if entered is not None:
            entered.set()
        await release.wait()
        slot.done(status=200)


async def test_bulkhead_overflow_fails_fast_and_other_upstreams_are_untouched() -> None:
    tight = BulkheadPolicy(max_concurrent=2, max_queued=1, queue_timeout=5.0)
    slow = UpstreamGuard(upstream("slow", bulkhead=tight))
    other = UpstreamGuard(upstream("other", bulkhead=tight))
    release = asyncio.Event()
    holders = [asyncio.create_task(hold(slow, release)) for _ in range(3)]  # 2 run, 1 queues
    while slow.bulkhead.queued < 1:
        await asyncio.sleep(0)
    assert (slow.bulkhead.in_flight, slow.bulkhead.queued) == (2, 1)

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BulkheadFull) as info:
        async with slow.slot():
            pass
    assert loop.time() - started < 1.0  # at once, not after the 5 s queue_timeout
    assert info.value.retry_after >= 1 and "max_queued 1" in str(info.value)

    async with other.slot() as slot:  # a different upstream still admits immediately
        slot.done(status=200)
    assert other.snapshot()["in_flight"] == 0

    release.set()
    await asyncio.gather(*holders)
    assert (slow.bulkhead.in_flight, slow.bulkhead.queued) == (0, 0)
    assert slow.snapshot()["counters"]["bulkhead_full"] == 1


async def test_queued_request_times_out_with_bulkhead_full() -> None:
    guard = UpstreamGuard(upstream(bulkhead=BulkheadPolicy(1, 5, queue_timeout=0.05)))
    release = asyncio.Event()
    holder = asyncio.create_task(hold(guard, release))
    while guard.bulkhead.in_flight < 1:
        await asyncio.sleep(0)
    with pytest.raises(BulkheadFull, match="queued 0.05s"):
        async with guard.slot():
            pass
    assert guard.bulkhead.queued == 0
    release.set()
    await holder


async def test_slots_are_handed_over_fifo() -> None:
    guard = UpstreamGuard(upstream(bulkhead=BulkheadPolicy(1, 10, queue_timeout=5)))
    order: list[int] = []
    release = asyncio.Event()
    first = asyncio.create_task(hold(guard, release))
    while guard.bulkhead.in_flight < 1:
        await asyncio.sleep(0)

    async def waiter(i: int) -> None:
        async with guard.slot():
            order.append(i)

    waiters = []
    for i in range(5):
        waiters.append(asyncio.create_task(waiter(i)))
        while guard.bulkhead.queued < i + 1:
            await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *waiters)
    assert order == [0, 1, 2, 3, 4]
    assert guard.bulkhead.in_flight == 0


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    guard = UpstreamGuard(upstream(bulkhead=BulkheadPolicy(1, 10, queue_timeout=5)))
    release = asyncio.Event()
    first = asyncio.create_task(hold(guard, release))
    while guard.bulkhead.in_flight < 1:
        await asyncio.sleep(0)
    queued = asyncio.create_task(hold(guard, asyncio.Event()))
    while guard.bulkhead.queued < 1:
        await asyncio.sleep(0)
    queued.cancel()
    release.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert (guard.bulkhead.in_flight, guard.bulkhead.queued) == (0, 0)


async def test_outcomes_trip_the_breaker_and_rejections_are_fast() -> None:
    clock = Clock()
    guard = UpstreamGuard(
        upstream(breaker=BreakerPolicy(consecutive_failures=3, open_for=10)), clock=clock
    )
    async with guard.slot() as slot:
        slot.done(status=404)  # a 4xx is the upstream working
    for _ in range(2):
        async with guard.slot() as slot:
            slot.done(status=503)
    with pytest.raises(RuntimeError):
        async with guard.slot():
            raise RuntimeError("connection reset")  # escaping errors count as failures
    assert guard.breaker.state == "open"
    with pytest.raises(BreakerOpen) as info:
        async with guard.slot():
            pass
    assert info.value.retry_after == 10
    clock.now += 10
    async with guard.slot() as probe:
        assert probe.probe
        probe.done(status=200)
    assert guard.snapshot()["breaker"]["state"] == "closed"


async def test_cancelled_probe_is_neither_success_nor_failure() -> None:
    clock = Clock()
    guard = UpstreamGuard(upstream(breaker=BreakerPolicy(consecutive_failures=1)), clock=clock)
    async with guard.slot() as slot:
        slot.done(error=ConnectionRefusedError())
    clock.now += 30
    with pytest.raises(asyncio.CancelledError):
        async with guard.slot():
            raise asyncio.CancelledError
    assert guard.breaker.state == "half_open" and guard.breaker.probes == 0


async def test_retry_budget_is_enforced_at_admission() -> None:
    clock = Clock()
    guard = UpstreamGuard(
        upstream(retry=RetryPolicy(retries=5, budget_min_concurrent=2)), clock=clock
    )
    release = asyncio.Event()
    retries = []

    async def retry_hold() -> None:
        async with guard.slot(retry=True) as slot:
            await release.wait()
            slot.done(status=200)

    for _ in range(2):
        retries.append(asyncio.create_task(retry_hold()))
    while guard.retries_active < 2:
        await asyncio.sleep(0)
    assert not guard.may_retry("GET", True, 1, 503, None)
    with pytest.raises(RetryBudgetExhausted, match="2 retries active, 2 allowed"):
        async with guard.slot(retry=True):
            pass
    assert guard.retries_active == 2
    assert guard.may_retry("GET", True, 1, 503, None) is False
    release.set()
    await asyncio.gather(*retries)
    assert guard.retries_active == 0
    # None running, but the two were sent within the last 10 s with no requests around
    # them: the budget over time (at least 2, 20% of requests) is spent too.
    assert not guard.may_retry("GET", True, 1, 503, None)
    clock.now += 10
    assert guard.may_retry("GET", True, 1, 503, None)
    assert not guard.may_retry("POST", True, 1, 503, None)
    assert guard.may_retry("POST", False, 1, None, ConnectionRefusedError())
    snap = guard.snapshot()
    assert snap["retries"] == {
        "active": 0,
        "allowed": 2,
        "window": {"seconds": 10.0, "requests": 0, "retries": 0, "allowed": 2},
    }


async def test_retry_budget_over_time_caps_sequential_retries_at_20_percent() -> None:
    """Retries one after another are never concurrent: the budget over the last 10 s is what
    keeps a dead upstream from getting two attempts per request (Finagle's RetryBudget)."""
    clock = Clock()
    guard = UpstreamGuard(
        upstream(
            retry=RetryPolicy(retries=1),
            breaker=BreakerPolicy(consecutive_failures=0, min_requests=0),
        ),
        clock=clock,
    )
    attempts = 0
    for _ in range(100):
        attempt = 1
        while True:
            try:
                async with guard.slot(retry=attempt > 1) as slot:
                    attempts += 1
                    slot.done(status=503)
            except RetryBudgetExhausted:
                break
            if not guard.may_retry("GET", True, attempt, 503, None):
                break
            attempt += 1
        clock.now += 0.01
    assert attempts == 120, attempts  # 20 retries: 20% of 100 requests, not 100
    snap = guard.snapshot()["retries"]["window"]
    assert snap == {"seconds": 10.0, "requests": 100, "retries": 20, "allowed": 20}
    assert guard.counters["retry_budget"] == 0  # may_retry said no before any admission

    clock.now += 10  # the window has moved on: a quiet upstream may retry again
    assert guard.may_retry("GET", True, 1, 503, None)
    for _ in range(3):  # and at least `budget_min_concurrent` times, whatever the share
        async with guard.slot(retry=True) as slot:
            slot.done(status=200)
    assert not guard.may_retry("GET", True, 1, 503, None)
    with pytest.raises(RetryBudgetExhausted, match="3 retries for 0 requests in the last 10s"):
        async with guard.slot(retry=True):
            pass


async def test_budget_grows_with_active_requests() -> None:
    guard = UpstreamGuard(upstream(retry=RetryPolicy(budget_percent=20, budget_min_concurrent=1)))
    release = asyncio.Event()
    holders = [asyncio.create_task(hold(guard, release)) for _ in range(10)]
    while guard.bulkhead.in_flight < 10:
        await asyncio.sleep(0)
    assert guard.snapshot()["retries"]["allowed"] == 2
    release.set()
    await asyncio.gather(*holders)
    assert guard.snapshot()["retries"]["allowed"] == 1


async def test_registry_keeps_guards_with_unchanged_policy_across_reloads() -> None:
    clock = Clock()
    a, b = upstream("a", breaker=BreakerPolicy(consecutive_failures=1)), upstream("b")
    registry = GuardRegistry(config(a, b), clock=clock)
    async with registry.get("a").slot() as slot:
        slot.done(status=502)
    assert registry.get("a").breaker.state == "open"

    moved = Upstream(name="a", url="http://127.0.0.1:2", breaker=a.breaker)
    registry.update(config(moved, upstream("b", retry=RetryPolicy(retries=2))))
    assert registry.get("a").breaker.state == "open"  # same policy: state survives
    assert registry.get("a").upstream.url == "http://127.0.0.1:2"
    assert registry.get("b").retry_policy.retries == 2  # new policy: fresh guard

    registry.update(config(upstream("c")))
    with pytest.raises(KeyError, match=r"no guard for upstream 'a' \(known upstreams: c\)"):
        registry.get("a")
    assert set(registry.snapshot()) == {"c"}
    await registry.start()  # no state: nothing to connect
    await registry.close()


async def test_transitions_are_reported_per_upstream() -> None:
    clock = Clock()
    seen: list[tuple[str, str, str]] = []
    breaker = BreakerPolicy(consecutive_failures=1, open_for=5)
    registry = GuardRegistry(
        config(upstream("a", breaker=breaker), upstream("b")),
        clock=clock,
        on_transition=lambda *event: seen.append(event),
    )
    async with registry.get("a").slot() as slot:
        slot.done(status=500)
    clock.now += 5
    assert registry.states() == {"a": "half_open", "b": "closed"}
    async with registry.get("a").slot() as slot:
        slot.done(status=200)
    assert seen == [
        ("a", "closed", "open"),
        ("a", "open", "half_open"),
        ("a", "half_open", "closed"),
    ]


async def test_an_early_place_unused_because_idle_connections_were_stale_is_not_counted() -> None:
    """The express path admits its first attempt before it takes an idle connection
    (`UpstreamCaller.start`); when every idle one turns out closed, the place is given
    back and not counted, so `admitted` counts attempts made, once each."""
    from proxy.client import _UpstreamProtocol
    from proxy.exchange import Exchange
    from proxy.forward import UpstreamPool
    from proxy.upstream.caller import Outgoing, UpstreamCaller

    svc = upstream()
    registry = GuardRegistry(config(svc))
    pool = UpstreamPool()
    stale = _UpstreamProtocol(asyncio.get_running_loop())
    stale.connection_lost(None)  # the upstream closed it while it sat idle
    pool.pool(svc).put(stale)
    caller = UpstreamCaller(pool, registry, telemetry=None)
    out = Outgoing("GET", [], "example.test", None)

    started = caller.start(out, svc, "/", "", Exchange("rid", "GET", "", None))

    assert started is None  # the task path makes the attempt, on a fresh connection
    guard = registry.get("svc")
    assert guard.counters["admitted"] == 0
    assert guard.bulkhead.in_flight == 0
    assert guard.breaker.state == "closed"
    async with guard.slot() as slot:  # the place really is free again
        slot.done(status=200)
    assert guard.counters["admitted"] == 1


def test_replaced_guards_are_not_kept_without_a_store_to_sync_them() -> None:
    """Reloads that change a breaker policy replace the guard; without `state:` the old one
    has nothing to report, so 500 reloads leave 0 behind, not 500."""
    ups = [upstream(f"u{i}") for i in range(20)]
    registry = GuardRegistry(config(*ups))
    for n in range(500):
        policy = BreakerPolicy(consecutive_failures=5 + n % 2)
        registry.update(config(*(Upstream(name=u.name, url=u.url, breaker=policy) for u in ups)))
    assert registry._retired == []  # noqa: SLF001
    with_state = config(*ups, state="redis://127.0.0.1:1/0")
    registry.update(with_state)
    idle = BreakerPolicy(consecutive_failures=9)
    registry.update(config(*(Upstream(name=u.name, url=u.url, breaker=idle) for u in ups),
                           state="redis://127.0.0.1:1/0"))  # fmt: skip
    assert registry._retired == []  # noqa: SLF001 - nothing in flight: nothing to keep


async def test_a_waiter_cancelled_as_its_slot_arrives_passes_the_slot_on() -> None:
    """The slot is handed over and the waiter's task cancelled (its client left) before it
    runs again: the cancellation wins and the slot is freed, not kept by a request nobody
    waits for (Python 3.11's `wait_for` returned the result and dropped the cancel)."""
    bulkhead = Bulkhead(BulkheadPolicy(max_concurrent=1, max_queued=2, queue_timeout=5.0))
    await bulkhead.acquire()
    waiting = asyncio.create_task(bulkhead.acquire())
    while bulkhead.queued < 1:
        await asyncio.sleep(0)
    bulkhead.release()  # handed to `waiting`...
    waiting.cancel()  # ...as its client goes away
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)
    await bulkhead.acquire()  # the slot is free for the next request
    assert bulkhead.in_flight == 1
