"""`manage.py seed`: the deterministic demo dataset, in one transaction, idempotently.

Rerunning replaces the demo tables' rows with the identical generated rows (same ids), so two
runs leave the same data. Tenants, API tokens and the demo superuser are upserted.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.management.color import no_style
from django.db import connection, transaction

from legacy_demo.shop import seeddata
from legacy_demo.shop.legacy_format import to_ts
from legacy_demo.shop.models import (
    ApiToken,
    Customer,
    Invoice,
    Order,
    OrderLine,
    Product,
    Tenant,
    hash_token,
)

DEMO_TOKENS = {code: f"demo-token-{code}" for code in seeddata.TENANT_CODES}
BATCH = 2000


class Command(BaseCommand):
    help = "Create the deterministic Acme Shop demo data (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customers", type=int, default=1000)
        parser.add_argument("--products", type=int, default=200)
        parser.add_argument("--orders", type=int, default=10_000)
        parser.add_argument("--seed", type=int, default=seeddata.DEFAULT_SEED)
        parser.add_argument("--admin-user", default=os.environ.get("DEMO_ADMIN_USER", "admin"))
        parser.add_argument(
            "--admin-password", default=os.environ.get("DEMO_ADMIN_PASSWORD", "admin")
        )

    def handle(self, *args, **opts) -> None:
        for name in ("customers", "products", "orders"):
            if opts[name] < 0:
                raise CommandError(f"--{name} must be >= 0 (got {opts[name]})")
        started = time.perf_counter()
        try:
            data = seeddata.generate(
                opts["seed"], opts["customers"], opts["products"], opts["orders"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        with transaction.atomic():
            self._tenants_and_tokens()
            self._replace(data)
            self._superuser(opts["admin_user"], opts["admin_password"])
        self._reset_sequences()
        self.stdout.write(
            f"seeded {len(data.customers)} customers, {len(data.products)} products, "
            f"{len(data.orders)} orders ({len(data.lines)} lines), {len(data.invoices)} invoices "
            f"for tenants {', '.join(seeddata.TENANT_CODES)} in {time.perf_counter() - started:.1f}s"
        )

    def _tenants_and_tokens(self) -> None:
        now = to_ts(datetime.now(UTC))
        for code, name in seeddata.TENANTS:
            Tenant.objects.update_or_create(code=code, defaults={"name": name})
            key = DEMO_TOKENS[code]
            ApiToken.objects.update_or_create(
                key_hash=hash_token(key),
                defaults={"prefix": key[:12], "tenant_id": code, "label": "demo"},
                create_defaults={"prefix": key[:12], "tenant_id": code, "label": "demo",
                                 "created_ts": now},
            )  # fmt: skip

    def _replace(self, data: seeddata.Dataset) -> None:
        """Delete then bulk-insert: raw DELETEs skip Django's per-row cascade collection."""
        with connection.cursor() as cursor:
            for model in (Invoice, OrderLine, Order, Customer, Product):
                cursor.execute(f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)}")
        Product.objects.bulk_create((Product(**p) for p in data.products), batch_size=BATCH)
        Customer.objects.bulk_create((Customer(**c) for c in data.customers), batch_size=BATCH)
        Order.objects.bulk_create(
            (Order(customer_id=o.pop("cust_id"), **o) for o in (dict(x) for x in data.orders)),
            batch_size=BATCH,
        )
        OrderLine.objects.bulk_create(
            (OrderLine(order_id=ln["order_no"], **_without(ln, "order_no")) for ln in data.lines),
            batch_size=BATCH,
        )
        Invoice.objects.bulk_create(
            (Invoice(order_id=i["order_no"], **_without(i, "order_no")) for i in data.invoices),
            batch_size=BATCH,
        )

    def _superuser(self, username: str, password: str) -> None:
        user, created = get_user_model().objects.get_or_create(
            username=username,
            defaults={"is_staff": True, "is_superuser": True, "email": f"{username}@example.com"},
        )
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])

    def _reset_sequences(self) -> None:
        """Explicit ids leave PostgreSQL sequences behind; move them past the seeded rows."""
        statements = connection.ops.sequence_reset_sql(
            no_style(), [Customer, Product, Order, OrderLine, Invoice, ApiToken]
        )
        if statements:
            with connection.cursor() as cursor:
                for sql in statements:
                    cursor.execute(sql)


def _without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}
