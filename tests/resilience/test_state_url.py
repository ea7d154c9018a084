"""The state URL: passwords never logged, `?prefix=` taken out, non-Redis URLs refused."""

from __future__ import annotations

import pytest

from proxy.upstream.state import RedisState, redact_url, split_prefix


def test_password_is_redacted() -> None:
    assert redact_url("redis://:hunter2@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("rediss://app:hunter2@cache:6380/1") == "rediss://app:***@cache:6380/1"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"
    # A password in the query, or one with a raw '@' (the last '@' ends the userinfo).
    assert (
        redact_url("redis://cache:6379/0?password=hunter2") == "redis://cache:6379/0?password=***"
    )
    assert redact_url("redis://app:hun@ter2@cache:6379/0") == "redis://app:***@cache:6379/0"
    assert redact_url("redis://cache/0?prefix=s&db=1") == "redis://cache/0?prefix=s&db=1"


def test_prefix_comes_out_of_the_query() -> None:
    assert split_prefix("redis://h:1/0?prefix=blue:&ssl_cert_reqs=none", "strangler:") == (
        "redis://h:1/0?ssl_cert_reqs=none",
        "blue:",
    )
    assert split_prefix("redis://h:1/0", "strangler:") == ("redis://h:1/0", "strangler:")


def test_a_non_redis_state_url_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"state: 'postgres://u:\*\*\*@db/x' is not a Redis URL"):
        RedisState("postgres://u:pw@db/x", lambda: [])
