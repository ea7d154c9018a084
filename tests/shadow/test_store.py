"""Diff stores against real backends: SQLite files and the real Redis at 127.0.0.1:6379."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest
import redis

from proxy.config.model import Config, ShadowStoreConfig
from proxy.shadow.store import SQLiteStore, open_store, store_from_config
from proxy.shadow.store.redis import RedisStore
from tests.shadow.writer_proc import make_record
from tests.support.procs import PYTHON, ROOT


def run_writer(url: str, route: str, count: int, tag: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "tests.shadow.writer_proc", url, route, str(count), tag],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> None:
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err


def test_sqlite_survives_a_restart_of_the_writer(tmp_path):
    url = f"sqlite:///{tmp_path / 'shadow.db'}"  # four slashes: absolute
    finish(run_writer(url, "customers", 120, "first"))
    finish(run_writer(url, "customers", 30, "second"))
    store = open_store(url)
    records = list(store.records())
    assert len(records) == 150
    assert records[0].request_id == "first-0" and records[-1].request_id == "second-29"
    assert records[0].differences[0].path == "$.items[1].total"
    assert store.count() == 150
    store.close()


def test_sqlite_retention_by_count_and_age(tmp_path):
    store = SQLiteStore(tmp_path / "r.db", retention_count=50, retention_days=1.0)
    now = time.time()
    old = [make_record("r", i, "old", ts=now - 2 * 86_400) for i in range(10)]
    store.write(old)  # older than a day: pruned on write
    assert store.count() == 0
    for i in range(80):
        assert store.add(make_record("r", i, "new"))
    assert store.flush()
    store.write([])  # prune now rather than on the next 1-second tick
    ids = [r.request_id for r in store.records()]
    assert ids == [f"new-{i}" for i in range(30, 80)]
    store.close()


def test_sqlite_filters_by_route_and_time(tmp_path):
    store = SQLiteStore(tmp_path / "f.db")
    now = time.time()
    store.write(
        [make_record("a", 1, "a", ts=now - 100), make_record("b", 2, "b", ts=now - 10)]
        + [make_record("a", 3, "a", ts=now - 5)]
    )
    assert [r.request_id for r in store.records(routes=["a"])] == ["a-1", "a-3"]
    assert [r.request_id for r in store.records(since=now - 50)] == ["b-2", "a-3"]
    store.close()


def test_add_never_blocks_and_counts_drops_when_the_buffer_is_full(tmp_path):
    store = SQLiteStore(tmp_path / "d.db", max_pending=5, flush_interval=10.0, batch_size=1000)
    started = time.perf_counter()
    accepted = [store.add(make_record("r", i, "x")) for i in range(50)]
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5
    assert sum(accepted) >= 5 and store.dropped == 50 - sum(accepted)
    store.close()
    assert store.count() == sum(accepted)


def test_store_from_config_defaults_beside_routes_yaml(tmp_path):
    config = Config(
        version=1,
        upstreams={},
        routes=(),
        source=str(tmp_path / "routes.yaml"),
        shadow=ShadowStoreConfig(retention_count=7, retention_days=2.0),
    )
    store = store_from_config(config)
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "strangler-shadow.db"
    assert (store.retention_count, store.retention_days) == (7, 2.0)
    store.close()
    with pytest.raises(ValueError, match="unknown scheme"):
        open_store("mysql://x/y")


@pytest.fixture
def redis_url():
    prefix = f"strangler-test-{uuid.uuid4().hex[:12]}:"
    url = f"redis://127.0.0.1:6379/0?prefix={prefix}"
    yield url
    client = redis.Redis(host="127.0.0.1", port=6379, db=0)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def test_redis_two_writer_processes_share_one_stream(redis_url):
    procs = [run_writer(redis_url, "customers", 200, tag) for tag in ("replica-a", "replica-b")]
    for proc in procs:
        finish(proc)
    store = open_store(redis_url)
    assert isinstance(store, RedisStore) and store.key.startswith("strangler-test-")
    records = list(store.records())
    assert len(records) == 400
    assert {r.request_id.split("-")[1] for r in records} == {"a", "b"}
    assert len(list(store.records(routes=["other"]))) == 0
    store.close()


def test_redis_retention(redis_url):
    store = open_store(redis_url, retention_count=20, retention_days=1.0)
    now = time.time()
    store.write([make_record("r", i, "x", ts=now) for i in range(30)])
    assert store.count() == 20
    assert [r.request_id for r in store.records()][0] == "x-10"
    assert list(store.records(since=now + 60)) == []
    store.close()


def test_sqlite_url_forms(tmp_path):
    from proxy.shadow.store import sqlite_path

    assert str(sqlite_path("sqlite:////var/x.db")) == "/var/x.db"
    assert sqlite_path("sqlite:///rel.db", tmp_path) == tmp_path / "rel.db"
    assert sqlite_path("rel.db", tmp_path) == tmp_path / "rel.db"
    with pytest.raises(ValueError, match="sqlite:///relative.db"):
        sqlite_path("sqlite://host/x.db")
    with pytest.raises(ValueError, match="names no file"):
        sqlite_path("sqlite:///:memory:")


def test_the_wal_switch_waits_out_another_worker_holding_the_file(tmp_path):
    """Workers starting together race to switch a new store to WAL; SQLite may answer
    "database is locked" at once (no busy wait): the loser tries again, not crash."""
    import sqlite3
    import threading

    from proxy.shadow.store.sqlite import _wal

    path = tmp_path / "shadow.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    loser = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        loser.execute("PRAGMA journal_mode=WAL")  # what the loser meets
    release = threading.Timer(0.2, holder.execute, args=("COMMIT",))  # the other one is done
    release.start()
    try:
        _wal(loser)
    finally:
        release.join()
    assert loser.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    loser.close()
    holder.close()


def test_a_store_that_cannot_write_says_so_once_not_per_batch(caplog):
    """Redis gone (here: a port nothing listens on): diffs are lost, and the log says it,
    once for the cause, not once per batch."""
    from tests.support.procs import free_port, wait_until

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", flush_interval=0.01, batch_size=1)
    try:
        with caplog.at_level("WARNING", logger="strangler.shadow.store"):
            for i in range(5):
                store.add(make_record("r", i, "x"))
                wait_until(lambda i=i: store.failed >= i + 1, timeout=10, what="a failed write")
        warnings = [r for r in caplog.records if r.name == "strangler.shadow.store"]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "failed to write 1 diff(s)" in warnings[0].getMessage()
        assert "ConnectionError" in warnings[0].getMessage()
    finally:
        store.close(timeout=1)


def test_close_keeps_one_deadline_when_the_store_is_locked(tmp_path):
    """A writer stuck on a file another process holds (SQLite's busy wait is 10 s per
    batch) is waited for once, up to the deadline: shutdown is not flush time plus join
    time."""
    import sqlite3

    path = tmp_path / "shadow.db"
    store = SQLiteStore(path, flush_interval=0.01)
    store.write([make_record("r", 0, "x")])  # the file and table exist
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(1, 4):
            assert store.add(make_record("r", i, "x"))
        writer = store._thread
        assert writer is not None
        waits: list[float | None] = []
        join = writer.join
        writer.join = lambda timeout=None: (waits.append(timeout), join(timeout))[1]
        started = time.monotonic()
        store.close(timeout=1.5)
        assert time.monotonic() - started >= 1.5  # the flush waited its deadline out
        # ...and the join got what was left of it: nothing, not another 1.5 s
        assert len(waits) == 1 and waits[0] < 0.5, waits
        assert writer.is_alive()  # left behind
    finally:
        holder.execute("ROLLBACK")
        holder.close()
