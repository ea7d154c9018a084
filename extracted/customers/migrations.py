"""The customers service's own schema, as numbered steps tracked in `schema_migrations`.

Portable SQL: it runs unchanged on SQLite and PostgreSQL. Never edit a released step; add one.
"""

from extracted.db import Migration

MIGRATIONS = (
    Migration(
        1,
        "create customers",
        (
            """CREATE TABLE customers (
                id BIGINT PRIMARY KEY,
                tenant TEXT NOT NULL,
                given_name TEXT NOT NULL,
                family_name TEXT NOT NULL,
                email TEXT NOT NULL,
                phone TEXT NOT NULL DEFAULT '',
                line1 TEXT NOT NULL DEFAULT '',
                city TEXT NOT NULL DEFAULT '',
                postal_code TEXT NOT NULL DEFAULT '',
                active BOOLEAN NOT NULL DEFAULT TRUE,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX ix_customers_tenant_id ON customers (tenant, id)",
        ),
    ),
    Migration(
        2,
        "list indexes",
        (
            "CREATE INDEX ix_customers_tenant_family ON customers (tenant, family_name, given_name, id)",
            "CREATE INDEX ix_customers_tenant_created ON customers (tenant, created_at, id)",
            "CREATE INDEX ix_customers_tenant_city ON customers (tenant, city, id)",
        ),
    ),
)
