"""Backoff bounds, retry budget arithmetic, and which attempts may be retried (pure)."""

from __future__ import annotations

import random

import pytest

from proxy.config.model import RetryPolicy
from proxy.upstream.retry import backoff, budget_allowance, retryable, within_budget

ENVOY = RetryPolicy()


def test_full_jitter_bounds_grow_exponentially_up_to_the_cap() -> None:
    rng = random.Random(3)
    policy = RetryPolicy(backoff_base=0.025, backoff_max=0.25)
    for attempt, cap in [(1, 0.025), (2, 0.05), (3, 0.1), (4, 0.2), (5, 0.25), (40, 0.25)]:
        samples = [backoff(policy, attempt, rng.random) for _ in range(2000)]
        assert all(0 <= s <= cap for s in samples)
        assert max(samples) > 0.9 * cap  # full jitter uses the whole range ...
        assert min(samples) < 0.1 * cap  # ... down to zero
    assert backoff(policy, 1, lambda: 1.0) == 0.025
    assert backoff(policy, 0, lambda: 1.0) == 0


@pytest.mark.parametrize(
    ("active", "allowed"), [(0, 3), (1, 3), (15, 3), (19, 3), (20, 4), (100, 20), (1001, 200)]
)
def test_budget_is_20_percent_with_a_floor_of_3(active: int, allowed: int) -> None:
    assert budget_allowance(ENVOY, active) == allowed


def test_within_budget_counts_running_retries() -> None:
    assert within_budget(ENVOY, 100, 19)
    assert not within_budget(ENVOY, 100, 20)
    assert within_budget(ENVOY, 0, 2)
    assert not within_budget(ENVOY, 0, 3)
    tight = RetryPolicy(budget_percent=50, budget_min_concurrent=0)
    assert not within_budget(tight, 1, 0)
    assert within_budget(tight, 2, 0)


def ask(method: str = "GET", *, body_sent: bool = True, attempt: int = 1, status=None, error=None):
    return retryable(
        ENVOY, method=method, body_sent=body_sent, attempt=attempt, status=status, error=error
    )


def test_idempotent_methods_retry_on_listed_statuses_and_errors() -> None:
    for method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "get"):
        assert ask(method, status=503)
        assert ask(method, error=ConnectionResetError())
    assert not ask(status=500)  # not in retry_on_status
    assert not ask(status=200)
    assert not ask(status=None, error=None)


def test_non_idempotent_only_when_no_byte_was_sent() -> None:
    for method in ("POST", "PATCH"):
        assert not ask(method, status=503)
        assert not ask(method, error=TimeoutError())
        assert ask(method, body_sent=False, error=ConnectionRefusedError())


def test_retry_count_is_capped() -> None:
    assert ask(attempt=1, status=503)
    assert not ask(attempt=2, status=503)
    three = RetryPolicy(retries=3)
    assert retryable(three, method="GET", body_sent=True, attempt=3, status=502, error=None)
    assert not retryable(three, method="GET", body_sent=True, attempt=4, status=502, error=None)
    none = RetryPolicy(retries=0)
    assert not retryable(none, method="GET", body_sent=False, attempt=1, status=503, error=None)
