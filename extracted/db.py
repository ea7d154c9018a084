"""One database connection per service, driven from a single worker thread.

SQLite (stdlib `sqlite3`) or PostgreSQL (`psycopg`) behind the same tiny interface: SQL is
written with `?` placeholders and rewritten to `%s` for psycopg. A single thread owns the
connection, so the event loop never blocks on I/O and no two transactions interleave.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Migration:
    """A numbered schema step; `statements` run in one transaction, in order."""

    version: int
    name: str
    statements: tuple[str, ...]


def parse_db_url(url: str) -> tuple[str, str]:
    """`("sqlite", path)` or `("postgresql", url)`; a bare path means SQLite."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql", url
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        if not path:
            raise ValueError(f"database URL {url!r} has no path; use sqlite:///abs/path.db")
        return "sqlite", path
    if "://" in url:
        raise ValueError(
            f"unsupported database URL {url!r}: use sqlite:///path, a plain file path, "
            "or postgresql://user@host/db"
        )
    return "sqlite", url


class Tx:
    """A connection inside a transaction (or autocommit), with dict rows."""

    def __init__(self, conn: Any, dialect: str):
        self._conn, self.dialect = conn, dialect

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self._conn.execute(self._sql(sql), tuple(params))
        return cur.rowcount

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        cur = self._conn.execute(self._sql(sql), tuple(params))
        return [dict(row) for row in cur.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self.dialect == "postgresql":
            with self._conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
        else:
            self._conn.executemany(sql, rows)


class Database:
    def __init__(self, url: str):
        self.url = url
        self.dialect, self._target = parse_db_url(url)
        self._conn: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db")

    # --- synchronous API (runs on the calling thread; use from the worker or from scripts) --

    def _connect(self) -> Any:
        if self._conn is None:
            if self.dialect == "sqlite":
                Path(self._target).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self._target, isolation_level=None, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA busy_timeout = 5000")
            else:
                import psycopg
                from psycopg.rows import dict_row

                conn = psycopg.connect(self._target, autocommit=True, row_factory=dict_row)
            self._conn = conn
        return self._conn

    def transaction_sync(self, fn: Callable[[Tx], T], *, rollback: bool = False) -> T:
        """Run `fn` in one transaction; `rollback=True` discards its writes (shadow dry-run)."""
        conn = self._connect()
        conn.execute("BEGIN")
        try:
            result = fn(Tx(conn, self.dialect))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("ROLLBACK" if rollback else "COMMIT")
        return result

    def migrate_sync(self, migrations: Sequence[Migration]) -> list[int]:
        """Apply the migrations not yet recorded in `schema_migrations`; returns their versions."""
        versions = [m.version for m in migrations]
        if versions != sorted(set(versions)):
            raise ValueError(f"migration versions must be unique and ascending, got {versions}")

        def applied(tx: Tx) -> set[int]:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            return {row["version"] for row in tx.all("SELECT version FROM schema_migrations")}

        done = self.transaction_sync(applied)
        newly = []
        for migration in migrations:
            if migration.version in done:
                continue

            def apply(tx: Tx, m: Migration = migration) -> None:
                for statement in m.statements:
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, datetime.now(UTC).isoformat(timespec="seconds")),
                )

            try:
                self.transaction_sync(apply)
            except Exception as exc:
                raise RuntimeError(
                    f"migration {migration.version} ({migration.name}) failed on {self.url}: {exc}"
                ) from exc
            newly.append(migration.version)
        return newly

    def close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- asynchronous API (for the aiohttp handlers) --------------------------------------

    async def transaction(self, fn: Callable[[Tx], T], *, rollback: bool = False) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: self.transaction_sync(fn, rollback=rollback)
        )

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.close_sync)
        self._executor.shutdown(wait=True)
