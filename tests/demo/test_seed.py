"""The monolith's `seed` command at full size: fast, idempotent, and right on PostgreSQL too."""

from __future__ import annotations

import secrets
import sqlite3
import subprocess
import time

import pytest

from legacy_demo.settings import database_from_url
from tests.support.procs import PYTHON, ROOT
from tests.support.world import legacy_env

SHOP_TABLES = {
    "tbl_tenant": "code", "tbl_customer": "cust_id", "tbl_product": "prod_id",
    "tbl_order": "order_no", "tbl_order_line": "line_id", "tbl_invoice": "inv_id",
    "tbl_api_token": "id", "auth_user": "id",
}  # fmt: skip


def manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "legacy_demo/manage.py", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120, check=True,
    )  # fmt: skip


def dump(path) -> dict[str, list]:
    with sqlite3.connect(path) as conn:
        return {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY {pk}").fetchall()
            for t, pk in SHOP_TABLES.items()
        }


def test_full_seed_is_fast_and_idempotent(tmp_path):
    db = tmp_path / "full.sqlite3"
    env = legacy_env(db)
    manage(env, "migrate", "-v0")
    started = time.perf_counter()
    out = manage(
        env, "seed", "--customers", "1000", "--products", "200", "--orders", "10000"
    ).stdout
    elapsed = time.perf_counter() - started
    assert elapsed < 15, f"full seed took {elapsed:.1f}s"
    first = dump(db)
    assert len(first["tbl_customer"]) == 1000 and len(first["tbl_product"]) == 200
    assert len(first["tbl_order"]) == 10_000 and len(first["tbl_order_line"]) > 10_000
    assert {row[1] for row in first["tbl_customer"]} == {"acme", "globex", "initech"}
    assert len(first["tbl_api_token"]) == 3 and len(first["auth_user"]) == 1
    assert "10000 orders" in out
    manage(env, "seed", "--customers", "1000", "--products", "200", "--orders", "10000")
    assert dump(db) == first
    # A different seed would change the data: the comparison above can fail.
    manage(
        env, "seed", "--customers", "1000", "--products", "200", "--orders", "10000", "--seed", "7"
    )
    assert dump(db)["tbl_customer"] != first["tbl_customer"]


def test_seed_rejects_impossible_counts(tmp_path):
    env = legacy_env(tmp_path / "x.sqlite3")
    manage(env, "migrate", "-v0")
    with pytest.raises(subprocess.CalledProcessError) as info:
        manage(env, "seed", "--customers", "2", "--orders", "5")
    assert "at least 3 customers" in info.value.stderr


def test_database_url_parsing():
    cfg = database_from_url("postgresql://shop:p%40ss@db.example:5433/acme?sslmode=require")
    assert (cfg["NAME"], cfg["USER"], cfg["PASSWORD"], cfg["HOST"], cfg["PORT"]) == (
        "acme", "shop", "p@ss", "db.example", "5433",
    )  # fmt: skip
    assert cfg["OPTIONS"] == {"sslmode": "require"}
    for bad, message in (("mysql://x/db", "scheme"), ("postgresql://host/", "no database name")):
        with pytest.raises(ValueError, match=message):
            database_from_url(bad)


def test_seed_on_postgresql_resets_sequences(tmp_path):
    import psycopg

    name = f"strangler_legacy_{secrets.token_hex(4)}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {
            **legacy_env(tmp_path / "unused.sqlite3"),
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}",
        }
        manage(env, "migrate", "-v0")
        for _ in range(2):
            manage(env, "seed", "--customers", "30", "--products", "9", "--orders", "20")
        code = (
            "import django; django.setup();"
            "from legacy_demo.shop.models import Customer;"
            "c = Customer.objects.create(tenant_id='acme', cust_nm='NEW, One', email_addr='n@x.io', created_ts='20240101000000');"
            "print(c.cust_id, Customer.objects.count())"
        )
        out = subprocess.run(
            [PYTHON, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert out.stdout.split() == ["31", "31"]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
