"""One database connection per service, driven from a single worker thread.

SQLite (stdlib `sqlite3`) or PostgreSQL (`psycopg`) behind the same tiny interface: SQL is
written with `?` placeholders and rewritten to `%s` for psycopg. A single thread owns the
connection, so the event loop never blocks on I/O and no two transactions interleave.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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


# OFFSET beyond any table, and within SQL's 64-bit integers: a page number or cursor past it
# (`page=10**30`) is a page after the last, empty, as for any offset past the end, not a 500.
MAX_OFFSET = 2**62


def _unicode_upper(text: object) -> object:
    return text.upper() if isinstance(text, str) else text


# The first word of a statement, as OpenTelemetry's `db.operation.name` and span name.
_OPERATIONS = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "DROP", "WITH", "PRAGMA"}
)


@contextmanager
def query_span(tracer: Any, system: str, sql: str) -> Iterator[None]:
    """A CLIENT span for one statement, child of the request's span (OpenTelemetry database
    conventions): `db.system.name`, `db.operation.name` and `db.query.text`, the statement
    with its placeholders; the parameters (customer data) are never recorded."""
    from opentelemetry.trace import SpanKind, Status, StatusCode

    words = sql.split(None, 1)
    operation = words[0].upper() if words else ""
    attributes = {"db.system.name": system, "db.query.text": sql}
    if operation in _OPERATIONS:
        attributes["db.operation.name"] = operation
    with tracer.start_as_current_span(
        operation if operation in _OPERATIONS else system,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
            raise


class Tx:
    """A connection inside a transaction (or autocommit), with dict rows. With a `tracer`
    (the service traces requests) each statement is a span."""

    def __init__(self, conn: Any, dialect: str, tracer: Any = None):
        self._conn, self.dialect, self._tracer = conn, dialect, tracer

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def _cursor(self, sql: str, params: Sequence[Any]) -> Any:
        if self._tracer is None:
            return self._conn.execute(self._sql(sql), tuple(params))
        with query_span(self._tracer, self.dialect, sql):
            return self._conn.execute(self._sql(sql), tuple(params))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._cursor(sql, params).rowcount

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        cur = self._cursor(sql, params)
        return [dict(row) for row in cur.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self._tracer is None:
            self._executemany(sql, rows)
            return
        with query_span(self._tracer, self.dialect, sql):
            self._executemany(sql, rows)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
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
        # An OpenTelemetry tracer when the service traces (extracted.web.build_app sets it):
        # statements run in transactions started from a request become its child spans.
        self.tracer: Any = None

    # --- synchronous API (runs on the calling thread; use from the worker or from scripts) --

    def _connect(self) -> Any:
        if self._conn is None:
            if self.dialect == "sqlite":
                Path(self._target).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self._target, isolation_level=None, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                # SQLite's upper() folds ASCII only; queries that must upper-case as the
                # monolith stored its text (Python's str.upper) call this instead.
                conn.create_function("unicode_upper", 1, _unicode_upper, deterministic=True)
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
            result = fn(Tx(conn, self.dialect, self.tracer))
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
        call = lambda: self.transaction_sync(fn, rollback=rollback)  # noqa: E731
        if self.tracer is not None:  # the request's span is the statements' parent
            return await loop.run_in_executor(self._executor, contextvars.copy_context().run, call)
        return await loop.run_in_executor(self._executor, call)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.close_sync)
        self._executor.shutdown(wait=True)
