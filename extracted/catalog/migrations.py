"""The catalog's own schema (portable SQL for SQLite and PostgreSQL)."""

from extracted.db import Migration

MIGRATIONS = (
    Migration(
        1,
        "create products",
        (
            """CREATE TABLE products (
                id BIGINT PRIMARY KEY,
                tenant TEXT NOT NULL,
                sku TEXT NOT NULL,
                name TEXT NOT NULL,
                price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
                tax_rate TEXT NOT NULL
            )""",
            "CREATE UNIQUE INDEX uq_products_tenant_sku ON products (tenant, sku)",
            "CREATE INDEX ix_products_tenant_id ON products (tenant, id)",
        ),
    ),
)
