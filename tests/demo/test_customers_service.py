"""The customers service as a real process against its own SQLite database."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import httpx
import pytest

from tests.support.procs import PYTHON, free_port, running
from tests.support.world import (
    TENANTS,
    backfill_customers,
    customers_db,
    legacy_headers,
    start_customers,
)


def person(family: str, given: str = "Jane", **extra) -> dict:
    return {
        "name": {"given": given, "family": family},
        "email": f"{given}.{family}@example.com".lower(),
        **extra,
    }


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with (
        start_customers(tmp_path_factory.mktemp("customers")) as url,
        httpx.Client(base_url=url) as client,
    ):
        yield client


@pytest.fixture
def tenant() -> dict[str, str]:
    """A tenant of its own per test: the shared service holds no rows for it yet."""
    return {"X-Tenant-ID": f"t-{secrets.token_hex(4)}"}


def test_crud_cycle(svc, tenant):
    created = svc.post("/v1/customers", json=person("Doe", phone="555-0100"), headers=tenant)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == {"given": "Jane", "family": "Doe"} and body["active"] is True
    assert body["tenant"] == tenant["X-Tenant-ID"] and body["created_at"].endswith("Z")
    url = f"/v1/customers/{body['id']}"
    assert svc.get(url, headers=tenant).json() == body
    replacement = {**body, "email": "new@example.com", "active": False}
    put = svc.put(url, json=replacement, headers=tenant)
    assert (
        put.status_code == 200
        and put.json()["email"] == "new@example.com"
        and not put.json()["active"]
    )
    patch = svc.patch(
        url, json={"address": {"city": "Ogdenville"}, "name": {"given": "Joan"}}, headers=tenant
    )
    assert patch.status_code == 200, patch.text
    assert patch.json()["name"] == {"given": "Joan", "family": "Doe"}
    assert (
        patch.json()["address"]["city"] == "Ogdenville"
        and patch.json()["email"] == "new@example.com"
    )
    deleted = svc.delete(url, headers=tenant)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert svc.get(url, headers=tenant).status_code == 404


def test_cursor_pagination_walks_every_row_once(svc, tenant):
    ids = [
        svc.post("/v1/customers", json=person(f"Fam{i}"), headers=tenant).json()["id"]
        for i in range(7)
    ]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = svc.get("/v1/customers", params=params, headers=tenant).json()
        assert page["total_count"] == 7
        seen += [c["id"] for c in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (ids, 3)


def test_filters_and_ordering(svc, tenant):
    made = [
        svc.post("/v1/customers", json=person(fam, given, active=active, address={"city": city}), headers=tenant).json()
        for fam, given, active, city in [
            ("Zeta", "Al", True, "Springfield"), ("alpha", "Bo", False, "Springfield"),
            ("Mu", "Cy", True, "Brockway"), ("Alpha", "Al", True, "Brockway"),
        ]
    ]  # fmt: skip

    def ids(**params):
        return [
            c["id"] for c in svc.get("/v1/customers", params=params, headers=tenant).json()["items"]
        ]

    assert ids(active="false") == [made[1]["id"]]
    assert ids(city="Brockway") == [made[2]["id"], made[3]["id"]]
    assert ids(q="ALPHA, a") == [made[3]["id"]]  # the legacy "FAMILY, Given" haystack
    assert ids(order_by="family") == [made[3]["id"], made[1]["id"], made[2]["id"], made[0]["id"]]
    assert ids(order_by="-id") == [m["id"] for m in reversed(made)]


def test_errors_have_the_documented_shapes(svc, tenant):
    missing_tenant = svc.get("/v1/customers")
    assert missing_tenant.status_code == 400 and "X-Tenant-ID" in missing_tenant.json()["detail"]
    malformed = svc.post(
        "/v1/customers", content=b"{nope", headers={**tenant, "Content-Type": "application/json"}
    )
    assert malformed.status_code == 400 and malformed.json()["error"] == "bad_request"
    invalid = svc.post("/v1/customers", json={"name": {"given": "J"}, "email": "x"}, headers=tenant)
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "validation_failed"
    assert {f["field"] for f in invalid.json()["fields"]} == {"name.family", "email"}
    bad_query = svc.get("/v1/customers", params={"limit": 500, "cursor": "%%%"}, headers=tenant)
    assert bad_query.status_code == 422
    assert {f["field"] for f in bad_query.json()["fields"]} == {"limit", "cursor"}
    missing = svc.get("/v1/customers/999999", headers=tenant)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    other = svc.post(
        "/v1/customers", json=person("Other"), headers={"X-Tenant-ID": "someone-else"}
    ).json()
    assert svc.get(f"/v1/customers/{other['id']}", headers=tenant).status_code == 404
    assert svc.delete(f"/v1/customers/{other['id']}", headers=tenant).status_code == 404
    assert svc.get("/v1/nothing", headers=tenant).json()["error"] == "not_found"


def test_backfill_keeps_legacy_ids_and_new_ids_go_above(legacy_url, tmp_path):
    backfill_customers(customers_db(tmp_path), legacy_url)
    backfill_customers(customers_db(tmp_path), legacy_url, tenants=("acme",))  # rerun converges
    with start_customers(tmp_path) as url:
        for tenant in TENANTS:
            legacy = httpx.get(
                f"{legacy_url}/api/customers",
                params={"page_size": 100},
                headers=legacy_headers(tenant),
            ).json()
            mine = httpx.get(
                f"{url}/v1/customers", params={"limit": 100}, headers={"X-Tenant-ID": tenant}
            ).json()
            assert mine["total_count"] == legacy["total"]
            for old, new in zip(legacy["results"], mine["items"], strict=False):
                family, given = old["cust_nm"].split(", ")
                assert new["id"] == old["cust_id"]
                assert new["name"] == {"given": given, "family": family.title()}
                assert new["email"] == old["email_addr"] and new["active"] == (
                    old["status_cd"] == "A"
                )
                assert (
                    new["created_at"].replace("-", "").replace(":", "").replace("T", "").rstrip("Z")
                    == old["created_ts"]
                )
        created = httpx.post(
            f"{url}/v1/customers", json=person("Newcomer"), headers={"X-Tenant-ID": "acme"}
        )
        assert created.json()["id"] == 200 + 1  # SMALL seeds 200 customers: ids 1..200


def test_backfill_reports_a_bad_token(legacy_url, tmp_path):
    import subprocess

    result = subprocess.run(
        [PYTHON, "-m", "extracted.customers.backfill", "--legacy-url", legacy_url, "--token", "wrong",
         "--tenant", "acme", "--db", str(tmp_path / "x.sqlite3")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "401" in result.stderr and "--token" in result.stderr


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shadow_flagged_writes_leave_the_db_file_byte_for_byte_unchanged(tmp_path):
    db = customers_db(tmp_path)
    shadow = {"X-Tenant-ID": "acme", "X-Strangler-Shadow": "1"}
    plain = {"X-Tenant-ID": "acme"}
    with start_customers(tmp_path) as url, httpx.Client(base_url=url) as c:
        first = c.post("/v1/customers", json=person("Keep"), headers=plain).json()
        before = sha256(db)
        posted = c.post("/v1/customers", json=person("Ghost"), headers=shadow)
        assert posted.status_code == 201 and posted.json()["id"] == first["id"] + 1
        put = c.put(
            f"/v1/customers/{first['id']}",
            json={**first, "email": "ghost@example.com"},
            headers=shadow,
        )
        assert put.status_code == 200 and put.json()["email"] == "ghost@example.com"
        patched = c.patch(f"/v1/customers/{first['id']}", json={"active": False}, headers=shadow)
        assert patched.status_code == 200 and patched.json()["active"] is False
        assert c.delete(f"/v1/customers/{first['id']}", headers=shadow).status_code == 204
        assert sha256(db) == before
        assert c.get(f"/v1/customers/{first['id']}", headers=plain).json() == first
        assert c.get("/v1/customers", headers=plain).json()["total_count"] == 1
        # Control: the same write without the flag does change the file.
        assert (
            c.patch(
                f"/v1/customers/{first['id']}", json={"active": False}, headers=plain
            ).status_code
            == 200
        )
        assert sha256(db) != before


def test_server_span_continues_the_callers_trace(tmp_path):
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    out = tmp_path / "spans.txt"
    with (
        out.open("w") as sink,
        start_customers(tmp_path, env={"OTEL_EXPORTER": "console"}, stdout=sink) as url,
    ):
        r = httpx.get(
            f"{url}/v1/customers/1",
            headers={"X-Tenant-ID": "acme", "traceparent": f"00-{trace_id}-{parent}-01"},
        )
        assert r.status_code == 404
    text = out.read_text()
    assert f'"trace_id": "0x{trace_id}"' in text
    assert f'"parent_id": "0x{parent}"' in text
    assert '"name": "GET /v1/customers/{id}"' in text and '"kind": "SpanKind.SERVER"' in text


def test_service_against_postgresql(tmp_path):
    import psycopg

    name = f"strangler_customers_{secrets.token_hex(4)}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        port = free_port()
        db_url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        args = [PYTHON, "-m", "extracted.customers", "--port", str(port), "--db", db_url]
        with (
            running(args, ready_url=f"http://127.0.0.1:{port}/health"),
            httpx.Client(base_url=f"http://127.0.0.1:{port}") as c,
        ):
            h = {"X-Tenant-ID": "acme"}
            a = c.post("/v1/customers", json=person("Pg", active=False), headers=h).json()
            assert a["active"] is False and a["id"] == 1
            ghost = c.post(
                "/v1/customers", json=person("Ghost"), headers={**h, "X-Strangler-Shadow": "1"}
            )
            assert ghost.status_code == 201 and ghost.json()["id"] == 2
            assert (
                c.get("/v1/customers", params={"active": "false", "q": "pg"}, headers=h).json()[
                    "total_count"
                ]
                == 1
            )
            assert c.get("/v1/customers", headers=h).json()["total_count"] == 1
            # As Django's icontains on PostgreSQL (UPPER on both sides): every script folds.
            c.post("/v1/customers", json=person("Müller", "Jürgen"), headers=h)
            for q in ("MÜLLER, J", "müller", "jürgen", "ÜLL"):
                found = c.get("/v1/customers", params={"q": q}, headers=h).json()["items"]
                assert [x["name"]["family"] for x in found] == ["Müller"], q
            assert c.get("/v1/customers", headers=h).json()["total_count"] == 2
            assert (
                c.patch(f"/v1/customers/{a['id']}", json={"active": True}, headers=h).json()[
                    "active"
                ]
                is True
            )
        with psycopg.connect(db_url) as conn:
            versions = [
                r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")
            ]
            assert versions == [1, 2]
            assert conn.execute("SELECT active FROM customers WHERE id = 1").fetchone()[0] is True
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrations_are_tracked_and_not_reapplied(tmp_path):
    import sqlite3

    db = customers_db(tmp_path)
    for _ in range(2):
        with start_customers(tmp_path):
            pass
    rows = (
        sqlite3.connect(db)
        .execute("SELECT version, name FROM schema_migrations ORDER BY version")
        .fetchall()
    )
    assert rows == [(1, "create customers"), (2, "list indexes")]
