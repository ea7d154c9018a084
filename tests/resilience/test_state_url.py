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


def test_socket_timeout_on_the_url_is_the_state_timeout() -> None:
    """One timeout for redis-py's sockets and for every deadline the proxy derives from it
    (a budget call, a probe, a sync): the URL's, else the default."""
    from proxy.config.values import check_redis_url

    state = RedisState("redis://127.0.0.1:1/0?prefix=p:&socket_timeout=0.5", lambda: [])
    assert state.timeout == 0.5 and state.prefix == "p:"
    assert RedisState("redis://127.0.0.1:1/0", lambda: []).timeout == 0.1
    assert check_redis_url("redis://h/0?socket_timeout=0.25") is None
    for bad in ("0", "-1", "31", "nan", "inf"):
        problem = check_redis_url(f"redis://h/0?socket_timeout={bad}")
        assert problem is not None and "socket_timeout" in problem, bad
        assert "above 0 and at most 30" in problem, problem


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


def test_tls_options_are_checked_where_the_file_says_them(tmp_path) -> None:
    """redis-py passes ssl_* to a plain connection too, and only fails (TypeError) at the
    first connect; a bad ssl_cert_reqs or a missing CA file likewise. All refused here."""
    from proxy.config.values import check_redis_url

    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    assert check_redis_url(f"rediss://:pw@h:6380/0?ssl_ca_certs={ca}") is None
    assert check_redis_url("rediss://h:6380/0?ssl_cert_reqs=none") is None
    problem = check_redis_url("redis://:pw@h:6379/0?ssl_cert_reqs=none")
    assert problem is not None and "write rediss://" in problem and "pw" not in problem
    assert "is for TLS" in (check_redis_url("redis://h/0?ssl_check_hostname=false") or "")
    assert "none, optional, required" in (check_redis_url("rediss://h/0?ssl_cert_reqs=bogus") or "")
    missing = check_redis_url(f"rediss://h/0?ssl_ca_certs={tmp_path}/nope.pem")
    assert missing is not None and "nope.pem" in missing and "not a file" in missing


async def test_a_client_that_cannot_even_connect_does_not_stop_the_proxy(caplog) -> None:
    """Whatever the Redis client raises (here the TypeError of an ssl_* option on a plain
    redis:// URL, had it got past the check), the guards start, stay local, and say why."""
    from types import MappingProxyType

    from proxy.config.model import Config, Upstream
    from proxy.upstream import GuardRegistry

    caplog.set_level("WARNING", logger="strangler.upstream.state")
    url = "redis://:pw@127.0.0.1:1/0?ssl_cert_reqs=none"
    ups = {"x": Upstream(name="x", url="http://127.0.0.1:1")}
    registry = GuardRegistry(
        Config(version=1, upstreams=MappingProxyType(ups), routes=(), state=url)
    )
    await registry.start()  # raised TypeError, and `strangler serve` exited
    try:
        assert registry.state is not None and not registry.state.healthy
        (line,) = [r.getMessage() for r in caplog.records]
        assert "unreachable (TypeError" in line and ":***@" in line
    finally:
        await registry.close()
