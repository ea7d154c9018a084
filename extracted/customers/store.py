"""SQL for the customers table; every function takes an open transaction."""

from __future__ import annotations

from extracted.customers import model
from extracted.db import Tx

_COLS = ", ".join(model.COLUMNS)
_MARKS = ", ".join("?" for _ in model.COLUMNS)
_UPDATABLE = [c for c in model.COLUMNS if c not in ("id", "tenant", "created_at")]


def list_page(tx: Tx, tenant: str, q: model.ListQuery) -> tuple[list[dict], int]:
    where, params, order, page_params = model.list_sql(tenant, q, tx.dialect)
    total = tx.one(f"SELECT COUNT(*) AS n FROM customers WHERE {where}", params)["n"]
    rows = tx.all(f"SELECT {_COLS} FROM customers WHERE {where} {order}", params + page_params)
    return rows, total


def get(tx: Tx, tenant: str, customer_id: int) -> dict | None:
    return tx.one(
        f"SELECT {_COLS} FROM customers WHERE tenant = ? AND id = ?", (tenant, customer_id)
    )


def insert(tx: Tx, tenant: str, fields: dict) -> dict:
    """New ids go above the highest id held (backfilled legacy ids included)."""
    top = tx.one("SELECT COALESCE(MAX(id), 0) AS top FROM customers")["top"]
    row = {**fields, "id": int(top) + 1, "tenant": tenant, "created_at": model.now_iso()}
    tx.execute(
        f"INSERT INTO customers ({_COLS}) VALUES ({_MARKS})", [row[c] for c in model.COLUMNS]
    )
    return row


def replace(tx: Tx, current: dict, fields: dict) -> dict:
    row = {**current, **fields}
    assignments = ", ".join(f"{c} = ?" for c in _UPDATABLE)
    tx.execute(
        f"UPDATE customers SET {assignments} WHERE tenant = ? AND id = ?",
        [row[c] for c in _UPDATABLE] + [row["tenant"], row["id"]],
    )
    return row


def delete(tx: Tx, tenant: str, customer_id: int) -> int:
    return tx.execute("DELETE FROM customers WHERE tenant = ? AND id = ?", (tenant, customer_id))


def upsert_many(tx: Tx, rows: list[dict]) -> None:
    """Insert or overwrite by id (backfill reruns converge instead of duplicating)."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in model.COLUMNS if c != "id")
    tx.executemany(
        f"INSERT INTO customers ({_COLS}) VALUES ({_MARKS}) ON CONFLICT (id) DO UPDATE SET {updates}",
        [[row[c] for c in model.COLUMNS] for row in rows],
    )
