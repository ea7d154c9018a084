"""When to retry, how long to wait, and how many retries the upstream can afford (pure).

A retry is only safe when repeating the request cannot do something twice: the method is
idempotent, or not one byte of the request was sent (the connection was refused or reset
before the body went out). The retry budget keeps retries from multiplying load on an
upstream that is already failing, in two ways that both must allow a retry:

- at once (Envoy's `retry_budget`): at most `budget_percent`% of the active requests may be
  retries at any moment, but always at least `budget_min_concurrent`;
- over time (Finagle's and Linkerd's `RetryBudget`): at most `budget_percent`% of the
  requests of the last `RETRY_WINDOW` seconds may have been retried, but always at least
  `budget_min_concurrent`. This is what caps amplification: sequential requests are never
  concurrent, so without it every failed one would be retried and a dead upstream would get
  twice the traffic its clients send.

With the defaults (20%, 3) a quiet upstream can still retry its occasional failure, and a
failing one gets at most max(N + 3, 1.2 N) attempts for N requests in any 10 seconds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from proxy.config.model import IDEMPOTENT_METHODS, RetryPolicy


def backoff(policy: RetryPolicy, attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))] before retry `attempt` (1..)."""
    if attempt < 1:
        return 0.0
    ceiling = min(policy.backoff_max, policy.backoff_base * (2 ** min(attempt - 1, 30)))
    return max(0.0, ceiling) * rand()


def budget_allowance(policy: RetryPolicy, active_requests: int) -> int:
    """Concurrent retries allowed when `active_requests` are in flight or queued."""
    by_share = math.floor(max(0, active_requests) * policy.budget_percent / 100.0)
    return max(policy.budget_min_concurrent, by_share)


def within_budget(policy: RetryPolicy, active_requests: int, active_retries: int) -> bool:
    """Whether one more retry fits next to `active_retries` already running."""
    return active_retries < budget_allowance(policy, active_requests)


RETRY_WINDOW = 10.0  # seconds over which retries are compared with requests (Finagle's ttl)


def window_allowance(policy: RetryPolicy, requests: int) -> int:
    """Retries allowed over the last `RETRY_WINDOW` seconds, which saw `requests` requests
    (first attempts)."""
    by_share = math.floor(max(0, requests) * policy.budget_percent / 100.0)
    return max(policy.budget_min_concurrent, by_share)


def within_window(policy: RetryPolicy, requests: int, retries: int) -> bool:
    """Whether one more retry fits next to the `retries` already sent in the window."""
    return retries < window_allowance(policy, requests)


def retryable(
    policy: RetryPolicy,
    *,
    method: str,
    body_sent: bool,
    attempt: int,
    status: int | None,
    error: BaseException | None,
) -> bool:
    """Whether attempt number `attempt` (1 = the first try) may be followed by another.

    `error` is a transport failure (connect refused, reset, timeout) and `status` the
    upstream's answer; pass one of them. Budget is checked separately (it is shared state).
    """
    if attempt > policy.retries:
        return False
    if error is None and (status is None or status not in policy.retry_on_status):
        return False
    return method.upper() in IDEMPOTENT_METHODS or not body_sent
