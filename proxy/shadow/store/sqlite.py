"""SQLite diff store: the default, one file beside routes.yaml, survives restarts.

WAL mode lets `strangler report` read while the proxy writes. The writer thread owns one
connection; readers open their own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..model import DiffRecord
from .base import DiffStore, StoreUnusable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS comparisons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    route TEXT NOT NULL,
    method TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    request_id TEXT NOT NULL,
    primary_status INTEGER NOT NULL,
    candidate_status INTEGER,
    primary_latency REAL NOT NULL,
    candidate_latency REAL,
    match INTEGER NOT NULL,
    fields TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS comparisons_ts ON comparisons (ts);
CREATE INDEX IF NOT EXISTS comparisons_route_ts ON comparisons (route, ts);
"""


class SQLiteStore(DiffStore):
    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self._local = threading.local()
        if self.readonly:
            if not self.path.is_file():
                raise FileNotFoundError(
                    f"no shadow diff store at {str(self.path)!r}: nothing has been recorded yet "
                    "(is a route in mode: shadow receiving traffic?) or shadow.store / --store "
                    "points elsewhere"
                )
            return
        self._created = False
        if not self.lazy:
            self._create()

    def _create(self) -> None:
        """The file, WAL mode and the table (once; at the first write when `lazy`)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        try:
            conn.executescript(_SCHEMA)
            conn.commit()
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None
        self._created = True

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(str(self.path), timeout=10.0)
                _wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise self._unusable(exc) from None
            self._local.conn = conn
        return conn

    def _unusable(self, exc: sqlite3.Error) -> StoreUnusable:
        """What is wrong with the file, naming it and the fix."""
        where = str(self.path)
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text
        ):
            return StoreUnusable(
                f"the shadow diff store {where!r} is not a SQLite database, or a damaged one "
                f"({text}); move it aside (the proxy starts a new one at its next start) or "
                "point shadow.store / --store at the right file"
            )
        if "no such table" in text:
            return StoreUnusable(
                f"{where!r} holds no shadow comparisons ({text}): it is not a diff store "
                "written by `strangler serve`; point shadow.store / --store at the proxy's "
                "store (by default strangler-shadow.db beside routes.yaml)"
            )
        if self.readonly:
            return StoreUnusable(
                f"cannot read the shadow diff store {where!r}: {text}; check the file's "
                "permissions, or point shadow.store / --store at the proxy's store"
            )
        return StoreUnusable(
            f"cannot open the shadow diff store {where!r}: {text}; set shadow.store in "
            "routes.yaml to a writable sqlite:///path or redis:// URL"
        )

    def _write_batch(self, records: list[DiffRecord]) -> None:
        if not self._created:
            self._create()
        conn = self._conn()
        rows = [
            (
                r.ts,
                r.route,
                r.method,
                r.endpoint,
                r.request_id,
                r.primary_status,
                r.candidate_status,
                r.primary_latency,
                r.candidate_latency,
                int(r.match),
                json.dumps(sorted({d.field for d in r.differences})),
                r.dumps(),
            )
            for r in records
        ]
        with conn:
            conn.executemany(
                "INSERT INTO comparisons (ts, route, method, endpoint, request_id, primary_status,"
                " candidate_status, primary_latency, candidate_latency, match, fields, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _prune(self, now: float) -> None:
        if not self._created:
            return  # nothing written yet: no file to prune
        conn = self._conn()
        with conn:
            conn.execute("DELETE FROM comparisons WHERE ts < ?", (self._cutoff(now),))
            # AUTOINCREMENT ids never repeat and only the oldest rows are ever deleted, so
            # the newest N rows are exactly those with id > max(id) - N.
            (top,) = conn.execute("SELECT MAX(id) FROM comparisons").fetchone()
            if top is not None and top > self.retention_count:
                conn.execute(
                    "DELETE FROM comparisons WHERE id <= ?", (top - max(self.retention_count, 0),)
                )

    def records(
        self, *, routes: Sequence[str] | None = None, since: float | None = None
    ) -> Iterator[DiffRecord]:
        sql = "SELECT record FROM comparisons"
        where, args = [], []
        if routes:
            where.append(f"route IN ({','.join('?' * len(routes))})")
            args.extend(routes)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        conn = sqlite3.connect(str(self.path), timeout=10.0)
        try:
            try:
                rows = conn.execute(sql, args)
            except sqlite3.Error as exc:
                raise self._unusable(exc) from None
            while True:
                try:
                    row = rows.fetchone()
                except sqlite3.Error as exc:
                    raise self._unusable(exc) from None
                if row is None:
                    return
                yield DiffRecord.loads(row[0])
        finally:
            conn.close()

    def count(self) -> int:
        conn = sqlite3.connect(str(self.path), timeout=10.0)
        try:
            return conn.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0]
        finally:
            conn.close()

    def _close_backend(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _wal(conn: sqlite3.Connection, tries: int = 100) -> None:
    """Switch to WAL. Workers starting together (`--workers N`) race to switch a new file,
    and SQLite may answer "database is locked" at once instead of waiting its busy
    timeout: try again for up to about two seconds."""
    for attempt in range(tries):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.02)
