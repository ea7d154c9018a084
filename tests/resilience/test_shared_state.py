"""Breaker state shared through real Redis: replicas trip and recover together; when Redis
goes away they keep deciding locally, and they share again once it is back."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import MappingProxyType

import pytest
import redis

from proxy.config.model import BreakerPolicy, Config, Upstream
from proxy.upstream import BreakerOpen, GuardRegistry, UpstreamGuard
from tests.support.procs import PYTHON, ROOT, free_port, running, stop, wait_until

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def config(state: str, open_for: float) -> Config:
    breaker = BreakerPolicy(consecutive_failures=3, open_for=open_for)
    ups = {n: Upstream(name=n, url="http://127.0.0.1:1", breaker=breaker) for n in ("x", "y")}
    return Config(version=1, upstreams=MappingProxyType(ups), routes=(), state=state)


async def fail(guard: UpstreamGuard, n: int) -> None:
    for _ in range(n):
        async with guard.slot() as slot:
            slot.done(status=503)


async def eventually(predicate, timeout: float = 5.0, what: str = "condition"):
    """Poll an async-world predicate without blocking the loop the syncs run on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Child:
    """The other replica: tests/resilience/guard_child.py in its own process."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def ask(self, command: str):
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child replica exited ({self.proc.poll()}) on {command!r}")
        return json.loads(line)


@contextmanager
def child_replica(url: str, prefix: str, open_for: float) -> Iterator[Child]:
    proc = subprocess.Popen(
        [PYTHON, "-m", "tests.resilience.guard_child", url, prefix, str(open_for)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield Child(proc)
        proc.stdin.write("quit\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        proc.wait(10)
    finally:
        stop(proc)


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"strangler-test-{uuid.uuid4().hex[:10]}:"
    yield name
    client = redis.Redis.from_url(SHARED_REDIS)
    keys = list(client.scan_iter(match=f"{name}*"))
    if keys:
        client.delete(*keys)
    client.close()


async def ask(child: Child, command: str):
    return await asyncio.to_thread(child.ask, command)


async def test_two_processes_trip_together_probe_once_and_recover_together(prefix: str) -> None:
    open_for = 1.0
    registry = GuardRegistry(config(SHARED_REDIS, open_for), key_prefix=prefix, sync_interval=0.05)
    await registry.start()
    try:
        with child_replica(SHARED_REDIS, prefix, open_for) as child:
            assert await ask(child, "state x") == "closed"
            here = registry.get("x")

            # Failures seen by this replica alone open the breaker in the other one too.
            await fail(here, 3)
            assert here.breaker.state == "open"
            deadline = time.monotonic() + 3
            while await ask(child, "state x") != "open":
                assert time.monotonic() < deadline, "the child never saw the breaker open"
                await asyncio.sleep(0.02)
            assert await ask(child, "admit x") == "breaker_open"
            assert await ask(child, "state y") == "closed"  # another upstream is unaffected

            # After open_for, the fleet sends ONE probe: ours; the child is refused meanwhile.
            await eventually(lambda: here.breaker.state == "half_open", 3, "half-open here")
            probe = here.slot()
            await probe.__aenter__()
            assert probe.probe
            deadline = time.monotonic() + 3
            while await ask(child, "state x") != "half_open":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            assert await ask(child, "admit x") == "breaker_open"
            probe.done(status=200)
            await probe.__aexit__(None, None, None)
            assert here.breaker.state == "closed"
            deadline = time.monotonic() + 3
            while await ask(child, "state x") != "closed":
                assert time.monotonic() < deadline, "the child never saw the breaker close"
                await asyncio.sleep(0.02)
            assert await ask(child, "admit x") == "ok"

            # Retry budgets see the fleet's load: the child's 25 in-flight requests count here.
            assert await ask(child, "hold y 25") == 25
            await eventually(lambda: registry.get("y").others_active == 25, 3, "fleet load")
            assert registry.get("y").snapshot()["retries"]["allowed"] == 5
            assert await ask(child, "release y") == 0
            await eventually(lambda: registry.get("y").others_active == 0, 3, "fleet load drop")
    finally:
        await registry.close()


@contextmanager
def own_redis(port: int) -> Iterator[subprocess.Popen]:
    args = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    with running(args) as proc:
        client = redis.Redis(port=port, socket_timeout=1)
        wait_until(client.ping, timeout=10, what=f"redis-server on port {port}")
        client.close()
        yield proc


async def test_redis_going_away_falls_back_to_local_state_and_resumes(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="strangler.upstream.state")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    a = GuardRegistry(config(url, 60), key_prefix="t:", sync_interval=0.05, redis_timeout=0.1)
    b = GuardRegistry(config(url, 60), key_prefix="t:", sync_interval=0.05, redis_timeout=0.1)
    with own_redis(port) as server:
        await a.start()
        await b.start()
        try:
            assert a.state is not None and b.state is not None
            assert a.state.healthy and b.state.healthy
            await fail(a.get("x"), 3)
            await eventually(lambda: b.get("x").breaker.state == "open", 3, "shared trip")

            stop(server, signal.SIGKILL)  # Redis dies mid-test
            await eventually(lambda: not a.state.healthy and not b.state.healthy, 3, "fallback")
            syncs_failed = a.state.failures
            await eventually(lambda: a.state.failures >= syncs_failed + 5, 3, "more attempts")

            # Requests keep flowing, decided locally and without waiting on Redis.
            started = time.monotonic()
            for _ in range(50):
                async with b.get("y").slot() as slot:
                    slot.done(status=200)
            assert time.monotonic() - started < 1.0  # a wait on Redis: 0.1 s each, 5 s in all
            with pytest.raises(BreakerOpen):  # the open breaker stays open locally
                async with b.get("x").slot():
                    pass
            # A trip now is local only: the other replica cannot hear about it.
            await fail(a.get("y"), 3)
            assert a.get("y").breaker.state == "open"
            tried = b.state.failures  # several sync attempts later, nothing leaked across
            await eventually(lambda: b.state.failures >= tried + 5, 3, "sync attempts")
            assert b.get("y").breaker.state == "closed"
            downs = [r for r in caplog.records if "unreachable" in r.getMessage()]
            assert len(downs) == 2, "each replica logs the outage once, not once per attempt"
            assert "fall back to per-process state" in downs[0].getMessage()

            with own_redis(port):  # Redis is back (empty: it kept nothing)
                await eventually(lambda: a.state.healthy and b.state.healthy, 5, "reconnect")
                # A's local verdict is pushed to the fleet: B now sees y open as well.
                await eventually(lambda: b.get("y").breaker.state == "open", 3, "resumed share")
                ups = [r for r in caplog.records if "reachable again" in r.getMessage()]
                assert len(ups) == 2
                snap = b.get("y").snapshot()
                assert snap["shared"] is True and snap["breaker"]["state"] == "open"
        finally:
            await a.close()
            await b.close()


async def test_a_late_sync_is_not_an_outage_until_several_in_a_row(caplog) -> None:
    """A sync that times out may be this process's own event loop running late: sharing
    goes on until `DOWN_AFTER_TIMEOUTS` syncs in a row time out (a stalled Redis)."""
    from proxy.upstream.state import DOWN_AFTER_TIMEOUTS, RedisState

    caplog.set_level(logging.WARNING, logger="strangler.upstream.state")
    port = free_port()
    registry = GuardRegistry(config(f"redis://127.0.0.1:{port}/0", 60), key_prefix="t:")
    guard = registry.get("x")
    store = RedisState(f"redis://127.0.0.1:{port}/0", lambda: [guard], timeout=0.1)
    with own_redis(port) as server:
        try:
            assert await store.sync_once() and store.healthy  # no background loop: by hand
            server.send_signal(signal.SIGSTOP)
            try:
                for _ in range(DOWN_AFTER_TIMEOUTS - 1):
                    assert not await store.sync_once()
                    assert store.healthy and guard.shared is store
                assert not [r for r in caplog.records if "unreachable" in r.getMessage()]
                assert not await store.sync_once()
                assert not store.healthy
                (down,) = [r for r in caplog.records if "unreachable" in r.getMessage()]
                assert "Timeout" in down.getMessage()
            finally:
                server.send_signal(signal.SIGCONT)
            assert await store.sync_once() and store.healthy
            # One late sync, then an answer: the count starts again.
            server.send_signal(signal.SIGSTOP)
            try:
                assert not await store.sync_once() and store.healthy
            finally:
                server.send_signal(signal.SIGCONT)
            assert await store.sync_once()
            server.send_signal(signal.SIGSTOP)
            try:
                for _ in range(DOWN_AFTER_TIMEOUTS - 1):
                    assert not await store.sync_once()
                assert store.healthy
            finally:
                server.send_signal(signal.SIGCONT)
            # Requests asking for the fleet's probe that time out (several can in one late
            # tick) decide locally and leave the verdict on Redis to the syncs.
            assert await store.sync_once()
            server.send_signal(signal.SIGSTOP)
            try:
                for _ in range(DOWN_AFTER_TIMEOUTS + 2):
                    assert await store.acquire_probe(guard) == ("granted", 0.0)  # locally
                assert store.healthy
                for _ in range(DOWN_AFTER_TIMEOUTS):
                    assert not await store.sync_once()
                assert not store.healthy
            finally:
                server.send_signal(signal.SIGCONT)
        finally:
            await store.close()


async def test_failure_ratio_counts_the_whole_fleet(prefix: str) -> None:
    # Neither replica alone reaches min_requests; together they do, at 50% failures.
    breaker = BreakerPolicy(consecutive_failures=0, failure_ratio=0.5, min_requests=20)
    ups = {"x": Upstream(name="x", url="http://127.0.0.1:1", breaker=breaker)}
    cfg = Config(version=1, upstreams=MappingProxyType(ups), routes=(), state=SHARED_REDIS)
    a = GuardRegistry(cfg, key_prefix=prefix, sync_interval=0.05)
    b = GuardRegistry(cfg, key_prefix=prefix, sync_interval=0.05)
    await a.start()
    await b.start()
    try:
        for registry, n in ((a, 6), (b, 4)):
            for status in [200] * n + [503] * n:
                async with registry.get("x").slot() as slot:
                    slot.done(status=status)
        assert a.get("x").breaker.failure_ratio() == 0.5  # but only 12 requests here
        await eventually(lambda: a.get("x").breaker.state == "open", 3, "fleet ratio trip on A")
        await eventually(lambda: b.get("x").breaker.state == "open", 3, "fleet ratio trip on B")
    finally:
        await a.close()
        await b.close()


async def test_a_probe_lost_with_its_replica_is_granted_again_after_open_for(prefix: str) -> None:
    a = GuardRegistry(config(SHARED_REDIS, 0.4), key_prefix=prefix, sync_interval=0.05)
    b = GuardRegistry(config(SHARED_REDIS, 0.4), key_prefix=prefix, sync_interval=0.05)
    await a.start()
    await b.start()
    try:
        await fail(a.get("x"), 3)
        await eventually(lambda: b.get("x").breaker.state == "open", 3, "shared trip")
        await eventually(lambda: a.get("x").breaker.state == "half_open", 3, "half-open")
        lost = a.get("x").slot()
        await lost.__aenter__()  # A takes the fleet's only probe ...
        assert lost.probe
        await a.close()  # ... and vanishes without an answer
        await eventually(lambda: b.get("x").breaker.state == "half_open", 3, "B half-open")
        with pytest.raises(BreakerOpen):
            async with b.get("x").slot():
                pass
        started = time.monotonic()
        while True:  # B gets a probe once the lost one is older than open_for
            try:
                async with b.get("x").slot() as probe:
                    assert probe.probe
                    probe.done(status=200)
                break
            except BreakerOpen:
                assert time.monotonic() - started < 3, "the lost probe was never forgotten"
                await asyncio.sleep(0.02)
        assert b.get("x").breaker.state == "closed"
    finally:
        await a.close()
        await b.close()


async def test_a_probe_given_back_without_an_answer_frees_the_fleet_at_once(prefix: str) -> None:
    """The probe's client left (or the bulkhead refused it): no verdict, so the fleet's
    grant is handed back and the next replica to ask probes now, not after `open_for`."""
    a = GuardRegistry(config(SHARED_REDIS, 30.0), key_prefix=prefix, sync_interval=0.05)
    b = GuardRegistry(config(SHARED_REDIS, 30.0), key_prefix=prefix, sync_interval=0.05)
    await a.start()
    await b.start()
    try:
        await fail(a.get("x"), 3)
        await eventually(lambda: b.get("x").breaker.state == "open", 3, "shared trip")
        client = redis.Redis.from_url(SHARED_REDIS)
        try:
            (key,) = [k for k in client.scan_iter(match=f"{prefix}*:breaker") if b"{x" in k]
            client.hset(key, "opened_at", 0)  # open_for is over: probe time
        finally:
            client.close()
        for guard in (a.get("x"), b.get("x")):
            guard.breaker.force_open(0.0)
        with pytest.raises(asyncio.CancelledError):
            async with a.get("x").slot() as probe:
                assert probe.probe  # A holds the fleet's probe ... and its client leaves
                raise asyncio.CancelledError
        started = time.monotonic()
        while True:
            try:
                async with b.get("x").slot() as second:
                    assert second.probe
                    second.done(status=200)
                break
            except BreakerOpen:
                assert time.monotonic() - started < 3, "the grant was never handed back"
                await asyncio.sleep(0.02)
        await eventually(lambda: a.get("x").breaker.state == "closed", 3, "A closes too")
    finally:
        await a.close()
        await b.close()


async def test_a_wiped_redis_does_not_close_an_open_breaker(prefix: str) -> None:
    a = GuardRegistry(config(SHARED_REDIS, 30.0), key_prefix=prefix, sync_interval=0.05)
    await a.start()
    try:
        await fail(a.get("x"), 3)
        assert a.get("x").breaker.state == "open"
        client = redis.Redis.from_url(SHARED_REDIS)
        try:

            def shared_state() -> bytes | None:
                keys = [k for k in client.scan_iter(match=f"{prefix}*:breaker") if b"{x" in k]
                return client.hget(keys[0], "state") if keys else None

            await eventually(lambda: shared_state() == b"open", 3, "the fleet sees it open")
            client.delete(*client.scan_iter(match=f"{prefix}*"))  # FLUSHALL, for this test
            syncs = a.state.syncs
            await eventually(lambda: a.state.syncs >= syncs + 3, 3, "syncs after the wipe")
            assert a.get("x").breaker.state == "open"
            assert shared_state() == b"open"
        finally:
            client.close()
    finally:
        await a.close()


async def test_two_deployments_on_one_redis_keep_their_breakers_apart(prefix: str) -> None:
    """Both tables have an upstream named `x` (every table has a `legacy`); only the
    deployment whose `x` failed opens its breaker."""
    breaker = BreakerPolicy(consecutive_failures=3, open_for=30.0)
    other = Config(
        version=1,
        upstreams=MappingProxyType(
            {"x": Upstream(name="x", url="http://10.9.9.9:8000", breaker=breaker)}
        ),
        routes=(),
        state=SHARED_REDIS,
    )
    a = GuardRegistry(config(SHARED_REDIS, 30.0), key_prefix=prefix, sync_interval=0.05)
    b = GuardRegistry(other, key_prefix=prefix, sync_interval=0.05)
    await a.start()
    await b.start()
    try:
        await fail(a.get("x"), 3)
        syncs = b.state.syncs
        await eventually(lambda: b.state.syncs >= syncs + 5, 3, "syncs on B")
        assert a.get("x").breaker.state == "open"
        assert b.get("x").breaker.state == "closed"
    finally:
        await a.close()
        await b.close()


async def test_a_queue_of_budget_calls_is_answered_by_redis_not_counted_locally(
    prefix: str, monkeypatch
) -> None:
    """One call at a time (instead of 32) and 2,000 requests at once: the queue takes far
    longer than a call's timeout, yet every request gets Redis's verdict, so exactly the
    budget passes. (Counting the queued ones locally let a burst through many times over.)"""
    from proxy.upstream import state as state_mod

    monkeypatch.setattr(state_mod, "MAX_BUDGET_CALLS", 1)
    registry = GuardRegistry(config(SHARED_REDIS, 30.0), key_prefix=prefix, sync_interval=0.05)
    await registry.start()
    try:
        store = registry.state
        assert store is not None and store.healthy

        async def one() -> bool:
            try:
                return await store.take_budget("burst", 60.0, 60.0 * 9) is None  # 10 per 10 min
            except state_mod.SharedStateDown:
                return False

        verdicts = await asyncio.gather(*(one() for _ in range(2000)))
        assert sum(verdicts) == 10 and store.budget_failures == 0
    finally:
        await registry.close()


async def test_a_fleet_waiting_for_its_probe_reports_no_flapping(prefix: str) -> None:
    """Once the open period is over, a replica that asks for the probe and is denied (or
    only syncs, without traffic) stays open in its reports: the fleet's breaker went
    closed -> open -> half_open -> closed once, and the metrics must say just that, not
    open -> half_open -> open every sync and every denied ask."""
    seen: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}

    def registry(name: str) -> GuardRegistry:
        def on_transition(upstream: str, old: str, new: str) -> None:
            if upstream == "x":
                seen[name].append((old, new))

        return GuardRegistry(
            config(SHARED_REDIS, 0.3),
            key_prefix=prefix,
            sync_interval=0.02,
            on_transition=on_transition,
        )

    a, b = registry("a"), registry("b")
    await a.start()
    await b.start()
    try:
        await fail(a.get("x"), 3)
        await eventually(lambda: b.get("x").breaker.state == "open", 3, "shared trip")
        over = time.monotonic() + 0.3  # open_for, on Redis's clock too
        syncs = b.state.syncs
        await eventually(
            lambda: time.monotonic() > over + 0.1 and b.state.syncs > syncs + 10,
            5,
            "syncs after the open period",
        )
        assert b.snapshot()["x"]["breaker"]["state"] == "open"
        async with a.get("x").slot() as probe:  # the fleet's one probe
            assert probe.probe
            for _ in range(3):
                with pytest.raises(BreakerOpen):
                    async with b.get("x").slot():
                        pass
                b.get("x").breaker.force_open(0.0)  # ask again now, not in a second
            probe.done(status=200)
        await eventually(lambda: b.get("x").breaker.state == "closed", 3, "B closes too")
        assert seen["a"] == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
        assert seen["b"] == [("closed", "open"), ("open", "closed")]
    finally:
        await a.close()
        await b.close()


async def test_a_denied_second_probe_keeps_the_replicas_first_one(prefix: str) -> None:
    """`half_open_probes: 2`, one probe out in each replica: A asking for a third is denied,
    and the verdict of the probe A already sent still closes the fleet's breaker."""
    breaker = BreakerPolicy(consecutive_failures=3, open_for=0.3, half_open_probes=2)
    ups = {"x": Upstream(name="x", url="http://127.0.0.1:1", breaker=breaker)}
    cfg = Config(version=1, upstreams=MappingProxyType(ups), routes=(), state=SHARED_REDIS)
    a = GuardRegistry(cfg, key_prefix=prefix, sync_interval=0.02)
    b = GuardRegistry(cfg, key_prefix=prefix, sync_interval=0.02)
    await a.start()
    await b.start()
    held = b.get("x").slot()
    try:
        await fail(a.get("x"), 3)
        await eventually(lambda: b.get("x").breaker.state == "open", 3, "shared trip")
        await eventually(lambda: a.get("x").breaker.state != "open", 3, "probe time")
        async with a.get("x").slot() as first:
            assert first.probe
            await eventually(lambda: b.get("x").breaker.state != "open", 3, "B's turn")
            await held.__aenter__()  # the fleet's second probe: B's, still out
            assert held.probe
            with pytest.raises(BreakerOpen):  # none left for A
                async with a.get("x").slot():
                    pass
            first.done(status=200)
        await eventually(lambda: b.get("x").breaker.state == "closed", 3, "A's verdict")
    finally:
        if held.ticket is not None:
            held.close(cancelled=True)
        await a.close()
        await b.close()


async def test_a_queue_of_budget_calls_stops_asking_a_redis_found_down() -> None:
    """Redis stalls (SIGSTOP) under a burst of 640 shared rate-limit calls: 32 at a time,
    each waiting the state timeout, the last would wait 2 s. Once the sync loop finds
    Redis down, the calls still queued are counted locally at once, as the docs say."""
    from proxy.upstream import state as state_mod

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    registry = GuardRegistry(config(url, 30.0), key_prefix="t:", sync_interval=0.05)
    with own_redis(port) as server:
        await registry.start()
        try:
            store = registry.state
            assert store is not None and store.healthy
            server.send_signal(signal.SIGSTOP)
            try:

                async def one() -> None:
                    with pytest.raises(state_mod.SharedStateDown):
                        await store.take_budget("burst", 60.0, 60.0 * 9)

                await asyncio.gather(*(one() for _ in range(640)))
                assert not store.healthy
                # Calls that reached the stalled Redis: those before the sync loop noticed.
                assert store.budget_failures < 320, store.budget_failures
            finally:
                server.send_signal(signal.SIGCONT)
        finally:
            await registry.close()
