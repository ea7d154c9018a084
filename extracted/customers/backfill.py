"""Import one tenant's customers from the monolith's JSON API, keeping legacy ids.

`python -m extracted.customers.backfill --legacy-url http://127.0.0.1:8000 --token KEY
 --tenant acme --db URL`. Rerunnable: rows are upserted by id.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence

import httpx

from extracted.customers import model, store
from extracted.customers.migrations import MIGRATIONS
from extracted.db import Database

PAGE_SIZE = 100
Mapper = Callable[[dict], dict]


def legacy_pages(client: httpx.Client, tenant: str, token: str) -> Iterator[list[dict]]:
    page = 1
    while True:
        response = client.get(
            "/api/customers",
            params={"page": page, "page_size": PAGE_SIZE, "ordering": "id"},
            headers={"Authorization": f"Token {token}", "X-Tenant-ID": tenant},
        )
        if response.status_code != 200:
            raise RuntimeError(
                f"legacy GET {response.request.url} answered {response.status_code}: "
                f"{response.text[:300]} (check --token and --tenant)"
            )
        results = response.json()["results"]
        if not results:
            return
        yield results
        page += 1


def backfill(
    db: Database, legacy_url: str, token: str, tenant: str, mapper: Mapper = model.from_legacy
) -> int:
    """Copy every customer of `tenant`; returns how many. `mapper` is where the ACL plugs in."""
    db.migrate_sync(MIGRATIONS)
    count = 0
    with httpx.Client(base_url=legacy_url, timeout=30.0) as client:
        for page in legacy_pages(client, tenant, token):
            rows = [mapper(item) for item in page]
            db.transaction_sync(lambda tx, rows=rows: store.upsert_many(tx, rows))
            count += len(rows)
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extracted.customers.backfill")
    parser.add_argument("--legacy-url", required=True)
    parser.add_argument("--token", required=True, help="legacy API token for --tenant")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--db", default="var/customers.sqlite3")
    args = parser.parse_args(argv)
    db = Database(args.db)
    try:
        count = backfill(db, args.legacy_url, args.token, args.tenant)
    except (RuntimeError, httpx.HTTPError) as exc:
        print(f"backfill failed: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close_sync()
    print(f"backfilled {count} customers of tenant {args.tenant} into {args.db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
