"""SQL for the products table; every function takes an open transaction."""

from __future__ import annotations

from extracted.db import MAX_OFFSET, Tx

COLUMNS = ("id", "tenant", "sku", "name", "price_cents", "tax_rate")
_COLS = ", ".join(COLUMNS)


def list_page(tx: Tx, tenant: str, limit: int, offset: int) -> tuple[list[dict], int]:
    total = tx.one("SELECT COUNT(*) AS n FROM products WHERE tenant = ?", (tenant,))["n"]
    rows = tx.all(
        f"SELECT {_COLS} FROM products WHERE tenant = ? ORDER BY id LIMIT ? OFFSET ?",
        (tenant, limit, min(offset, MAX_OFFSET)),
    )
    return rows, total


def get(tx: Tx, tenant: str, product_id: int) -> dict | None:
    return tx.one(f"SELECT {_COLS} FROM products WHERE tenant = ? AND id = ?", (tenant, product_id))


def upsert_many(tx: Tx, rows: list[dict]) -> None:
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "id")
    marks = ", ".join("?" for _ in COLUMNS)
    tx.executemany(
        f"INSERT INTO products ({_COLS}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}",
        [[row[c] for c in COLUMNS] for row in rows],
    )
