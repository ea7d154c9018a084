"""`python -m extracted.catalog.seed --db URL --products 200`: the monolith's products, upserted."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from extracted.catalog import products, store
from extracted.catalog.migrations import MIGRATIONS
from extracted.db import Database


def seed(db: Database, count: int, seed_value: int = products.DEFAULT_SEED) -> int:
    db.migrate_sync(MIGRATIONS)
    rows = [products.to_row(products.product(seed_value, i)) for i in range(1, count + 1)]

    def write(tx):
        tx.execute("DELETE FROM products WHERE id > ?", (count,))
        store.upsert_many(tx, rows)

    db.transaction_sync(write)
    return len(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extracted.catalog.seed")
    parser.add_argument("--db", default="var/catalog.sqlite3")
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--seed", type=int, default=products.DEFAULT_SEED)
    args = parser.parse_args(argv)
    if args.products < 0:
        parser.error(f"--products must be >= 0 (got {args.products})")
    db = Database(args.db)
    try:
        count = seed(db, args.products, args.seed)
    finally:
        db.close_sync()
    print(f"seeded {count} products into {args.db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
