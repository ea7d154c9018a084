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


async def test_reachability_lines_say_each_change_without_flooding(caplog, monkeypatch) -> None:
    """Down at startup then up: both said. A new kind of failure: said. Flapping: two
    lines per 10 s, then the latest state, with how many changes were skipped."""
    from redis.exceptions import AuthenticationError, ConnectionError

    from proxy.upstream import state as state_mod

    now = [1000.0]
    monkeypatch.setattr(state_mod.time, "monotonic", lambda: now[0])
    caplog.set_level("WARNING", logger="strangler.upstream.state")
    store = RedisState("redis://:pw@127.0.0.1:1/0", lambda: [])
    try:

        def said() -> list[str]:
            return [r.getMessage() for r in caplog.records]

        store._lost(ConnectionError("refused"), [])  # noqa: SLF001 - driving the transitions
        store._lost(ConnectionError("refused again"), [])  # noqa: SLF001
        now[0] += 20
        store._lost(AuthenticationError("wrong password"), [])  # noqa: SLF001
        now[0] += 20
        store._regained([])  # noqa: SLF001
        assert len(said()) == 3
        assert "(ConnectionError: refused)" in said()[0] and ":***@" in said()[0]
        assert "AuthenticationError" in said()[1]
        assert said()[2].startswith("state store redis://:***@127.0.0.1:1/0 reachable;")
        caplog.clear()
        now[0] += 20
        for _ in range(10):  # flapping every 0.1 s
            now[0] += 0.1
            store._lost(ConnectionError("maxmemory"), [])  # noqa: SLF001
            now[0] += 0.1
            store._regained([])  # noqa: SLF001
        assert len(said()) == 2  # a down and an up, then held back
        now[0] += 10
        store._say_held()  # noqa: SLF001 - the sync loop does this after each sync
        assert len(said()) == 3
        assert "reachable again" in said()[2] and "(17 more changes in between)" in said()[2]
    finally:
        await store.client.aclose()
