"""Every circuit-breaker transition, with an injected clock (no sleeping)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config.model import BreakerPolicy
from proxy.upstream.breaker import WINDOW_BUCKETS, Breaker, Window


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**kw) -> tuple[Breaker, Clock]:
    clock = Clock()
    policy = BreakerPolicy(**{"min_requests": 1000, **kw})
    return Breaker(policy, clock), clock


def fail(b: Breaker, n: int = 1) -> None:
    for _ in range(n):
        t = b.try_acquire()
        assert t is not None
        b.on_result(t, ok=False)


def succeed(b: Breaker, n: int = 1) -> None:
    for _ in range(n):
        t = b.try_acquire()
        assert t is not None
        b.on_result(t, ok=True)


def test_opens_after_consecutive_failures() -> None:
    b, _ = make(consecutive_failures=5)
    fail(b, 4)
    assert b.state == "closed"
    fail(b)
    assert b.state == "open"
    assert b.try_acquire() is None


def test_a_success_resets_the_consecutive_count() -> None:
    b, _ = make(consecutive_failures=3)
    for _ in range(10):
        fail(b, 2)
        succeed(b)
    assert b.state == "closed"


def test_opens_on_failure_ratio_only_with_min_requests() -> None:
    b, clock = make(consecutive_failures=0, failure_ratio=0.5, min_requests=20, window=10)
    for _ in range(9):  # 18 requests, 50% failures: not enough requests yet
        succeed(b)
        fail(b)
        clock.now += 0.1
    assert b.state == "closed"
    succeed(b)
    assert b.state == "closed"  # 19 requests, 9 failures
    fail(b)
    assert b.state == "open"  # 20 requests, 10 failures = 50%


def test_ratio_window_forgets_old_failures() -> None:
    b, clock = make(consecutive_failures=0, failure_ratio=0.5, min_requests=10, window=10)
    fail(b, 6)
    clock.now += 11  # those failures slide out of the window
    succeed(b, 6)
    fail(b, 4)
    assert b.state == "closed"
    assert b.failure_ratio() == 0.4


def test_open_becomes_half_open_after_open_for() -> None:
    b, clock = make(consecutive_failures=1, open_for=30)
    fail(b)
    clock.now += 29.9
    assert b.state == "open"
    assert 0 < b.retry_after() <= 0.11
    clock.now += 0.1
    assert b.state == "half_open"
    assert b.retry_after() == 0


def test_half_open_admits_limited_probes() -> None:
    b, clock = make(consecutive_failures=1, open_for=5, half_open_probes=2)
    fail(b)
    clock.now += 5
    p1, p2 = b.try_acquire(), b.try_acquire()
    assert p1 is not None and p1.probe and p2 is not None and p2.probe
    assert b.try_acquire() is None
    b.release(p1)  # a probe given back without an outcome frees its place
    p3 = b.try_acquire()
    assert p3 is not None and p3.probe


def test_probe_success_closes() -> None:
    b, clock = make(consecutive_failures=2, open_for=5)
    fail(b, 2)
    clock.now += 5
    probe = b.try_acquire()
    assert probe is not None
    b.on_result(probe, ok=True)
    assert b.state == "closed"
    fail(b)  # counters started afresh
    assert b.state == "closed"


def test_probe_failure_reopens_for_another_period() -> None:
    b, clock = make(consecutive_failures=1, open_for=5)
    fail(b)
    clock.now += 5
    probe = b.try_acquire()
    assert probe is not None
    b.on_result(probe, ok=False)
    assert b.state == "open"
    clock.now += 4.9
    assert b.state == "open"
    clock.now += 0.1
    assert b.state == "half_open"


def test_late_results_from_before_a_transition_are_ignored() -> None:
    b, clock = make(consecutive_failures=1, open_for=5)
    slow = b.try_acquire()  # admitted while closed, answers much later
    assert slow is not None
    fail(b)
    clock.now += 5
    probe = b.try_acquire()
    assert probe is not None
    b.on_result(slow, ok=True)  # must not close the breaker: it is not the probe
    assert b.state == "half_open"
    b.on_result(probe, ok=True)
    assert b.state == "closed"
    b.on_result(slow, ok=False)  # an old failure does not count against the new period
    assert b.consecutive == 0 and b.state == "closed"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 5, allow_nan=False), st.booleans(), st.integers(1, 3)),
        max_size=60,
    ),
    st.floats(0.5, 10, allow_nan=False),
)
def test_window_totals_count_what_fell_in_the_buckets_still_kept(steps, span):
    """`Window.add` skips trimming within the bucket of its last trim (once per request):
    its totals stay what a window that trims on every add reports."""
    window = Window(span)
    kept: list[tuple[int, bool, int]] = []  # (bucket index, ok, count): the reference
    now = 0.0
    for gap, ok, count in steps:
        now += gap
        index = int(now // window.width)
        window.add(now, ok, count)
        kept.append((index, ok, count))
        kept = [k for k in kept if k[0] >= index - WINDOW_BUCKETS + 1]
        expected = (
            sum(c for _, good, c in kept if good),
            sum(c for _, good, c in kept if not good),
        )
        assert window.totals(now) == expected
