"""GCRA rate limiting, on plain numbers (no clock, no sockets)."""

from __future__ import annotations

from proxy.config.model import RateLimit
from proxy.filters.ratelimit import (
    MAX_KEYS,
    RateLimiter,
    header_value,
    limit_key,
    refusal_key,
    retry_after_header,
    unpaid,
)


def test_a_burst_then_the_steady_rate():
    limiter = RateLimiter(RateLimit(requests=10, per=1.0, burst=3))
    assert [limiter.take("k", 0.0) is None for _ in range(4)] == [True, True, True, False]
    refused = limiter.take("k", 0.0)
    assert refused is not None and abs(refused.retry_after - 0.1) < 1e-9
    assert limiter.take("k", 0.1) is None  # one interval later, one more
    assert limiter.take("k", 0.1) is not None
    assert all(limiter.take("k", 10.0 + i * 0.1) is None for i in range(20))  # the rate


def test_no_boundary_burst_as_a_fixed_window_would_allow():
    """100 per minute: a fixed window lets 100 at 0:59 and 100 more at 1:00; GCRA lets the
    burst once, then the rate (about 1 more per 0.6 s)."""
    limiter = RateLimiter(RateLimit(requests=100, per=60.0, burst=100))
    allowed = sum(limiter.take("k", 59.0) is None for _ in range(200))
    allowed += sum(limiter.take("k", 60.0) is None for _ in range(200))
    assert allowed == 101


def test_keys_are_independent_and_memory_is_bounded():
    limiter = RateLimiter(RateLimit(requests=1, per=1.0, burst=1))
    assert limiter.take("a", 0.0) is None and limiter.take("b", 0.0) is None
    assert limiter.take("a", 0.0) is not None
    for i in range(MAX_KEYS + 10):  # clients varying their key
        limiter.take(f"x{i}", 100.0 + i * 1e-6)
    assert len(limiter._due) <= MAX_KEYS  # noqa: SLF001


def test_the_key_falls_back_to_the_client_address():
    ip, tenant, header = (
        RateLimit(1, key="ip"),
        RateLimit(1, key="tenant"),
        RateLimit(1, key="header:x-api-key"),
    )
    assert limit_key(ip, client="10.0.0.1", tenant="acme", header=None) == "ip:10.0.0.1"
    assert limit_key(tenant, client="10.0.0.1", tenant="acme", header=None) == "t:acme"
    assert limit_key(tenant, client="10.0.0.1", tenant=None, header=None) == "ip:10.0.0.1"
    assert limit_key(header, client="10.0.0.1", tenant=None, header="k1") == "h:k1"
    assert limit_key(header, client="10.0.0.1", tenant=None, header=None) == "ip:10.0.0.1"
    assert limit_key(RateLimit(1, key="route"), client="x", tenant=None, header=None) == "r"


def test_retry_after_is_whole_seconds_rounded_up():
    limiter = RateLimiter(RateLimit(requests=1, per=2.5, burst=1))
    limiter.take("k", 0.0)
    refused = limiter.take("k", 0.0)
    assert refused is not None and retry_after_header(refused) == "3"


def test_a_table_held_near_the_cap_is_not_swept_at_every_new_key(monkeypatch):
    from proxy.filters import ratelimit

    monkeypatch.setattr(ratelimit, "MAX_KEYS", 1000)
    monkeypatch.setattr(ratelimit, "_LOW_MARK", 900)
    limiter = RateLimiter(RateLimit(requests=1, per=3600.0, burst=1))
    sizes = []
    for i in range(1200):  # every key stays live (a 1-per-hour budget)
        limiter.take(f"k{i}", 0.0)
        sizes.append(len(limiter._due))  # noqa: SLF001
    sweeps = sum(1 for a, b in zip(sizes, sizes[1:], strict=False) if b < a)
    assert sweeps == 2  # at 1000 keys, then 100 keys later: not at each new key
    assert max(sizes) == 1000 and sizes[-1] <= 1000


def test_a_shared_budget_is_named_by_route_policy_and_key():
    from proxy.filters.ratelimit import budget_id

    policy = RateLimit(5, per=60.0, burst=5, key="header:x-api-key", scope="shared")
    name = budget_id("api", policy, "h:sk_live_secret")
    assert len(name) == 32 and "secret" not in name
    assert name == budget_id("api", policy, "h:sk_live_secret")  # every replica agrees
    others = {
        budget_id("web", policy, "h:sk_live_secret"),  # route
        budget_id("api", RateLimit(6, per=60.0, burst=5), "h:sk_live_secret"),  # policy
        budget_id("api", policy, "h:another"),  # key
    }
    assert name not in others and len(others) == 3


def test_giving_back_undoes_one_take():
    limiter = RateLimiter(RateLimit(requests=1, per=10, burst=2))
    assert limiter.take("a", 0.0) is None and limiter.take("a", 0.0) is None
    assert limiter.take("a", 0.0) is not None
    limiter.give_back("a", 0.0)
    assert limiter.take("a", 0.0) is None and limiter.take("a", 0.0) is not None
    limiter.give_back("a", 0.0)
    limiter.give_back("a", 0.0)
    limiter.give_back("a", 0.0)  # more than was taken: the budget is whole, not more
    assert [limiter.take("a", 0.0) for _ in range(3)][2] is not None
    limiter.give_back("unknown", 0.0)  # nothing taken: nothing to give


def test_a_late_give_back_returns_only_what_time_has_not():
    """Taken at 0, refused one taken at 12 (interval 10): given back at 15, the first was
    paid by time at 10 and returning it whole erased the refusal (a 2nd guess at 15)."""
    limiter = RateLimiter(RateLimit(requests=1, per=10, burst=1))
    assert limiter.take("a", 0.0) is None
    assert limiter.take("a", 12.0) is None
    limiter.give_back("a", 15.0, unpaid(limiter.interval, 15.0))
    assert limiter.take("a", 15.0) is not None
    assert unpaid(10.0, 4.0) == 6.0 and unpaid(10.0, 11.0) < 0


def test_refusals_count_apart_from_every_request_key():
    policy = RateLimit(requests=1, per=1, key="ip")
    ordinary = limit_key(policy, client="10.0.0.1", tenant=None, header=None)
    assert refusal_key("10.0.0.1") != ordinary
    assert refusal_key("10.0.0.1") != refusal_key("10.0.0.2")


def test_long_header_keys_that_share_a_prefix_are_different_callers():
    """Tokens of one issuer share their first few hundred bytes: cut to a prefix, one
    caller's requests spent another's budget."""
    policy = RateLimit(1, key="header:authorization")
    first = limit_key(policy, client="ip", tenant=None, header="A" * 256 + "alice")
    second = limit_key(policy, client="ip", tenant=None, header="A" * 256 + "bob")
    assert first != second
    assert first == limit_key(policy, client="ip2", tenant=None, header="A" * 256 + "alice")
    assert len(first) < 64  # a digest: memory per key stays bounded
    assert limit_key(policy, client="ip", tenant=None, header="k" * 64) == "h:" + "k" * 64


def test_a_header_key_sent_twice_is_no_key():
    """The upstream may act on either value: the request counts against its address."""
    headers = [("X-Api-Key", "random"), ("x-api-key", "real")]
    assert header_value(headers, "x-api-key") is None
    assert header_value([("X-API-KEY", "k1"), ("Other", "v")], "x-api-key") == "k1"
    assert header_value([("Other", "v")], "x-api-key") is None
