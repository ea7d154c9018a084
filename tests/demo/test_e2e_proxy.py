"""The whole world as real processes: gunicorn monolith, both services, and the proxy in front."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from tests.support.world import (
    SMALL,
    TENANTS,
    legacy_headers,
    proxy_config,
    start_catalog,
    start_customers,
    start_proxy,
)

NOISE = ("generated_at", "trace_id")


def quiet(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in NOISE}


@pytest.fixture(scope="module")
def world(legacy_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    with start_customers(tmp, backfill_from=legacy_url) as customers, start_catalog(tmp) as catalog:
        routes = [
            {"name": "products", "match": {"path": "/api/products", "methods": ["GET", "HEAD"]},
             "mode": "extracted", "target": "catalog", "rewrite": "/v1/products"},
            {"name": "product", "match": {"path": "/api/products/{id}", "methods": ["GET", "HEAD"]},
             "mode": "extracted", "target": "catalog", "rewrite": "/v1/products/{id}"},
            {"name": "customers-v1", "match": {"prefix": "/v1/customers"},
             "mode": "extracted", "target": "customers"},
        ]  # fmt: skip
        config = proxy_config(
            {"legacy": legacy_url, "customers": customers, "catalog": catalog}, routes, tmp
        )
        with start_proxy(tmp, config) as proxy:
            yield {
                "proxy": proxy.base,
                "legacy": legacy_url,
                "customers": customers,
                "catalog": catalog,
            }


def test_unrouted_paths_reach_the_monolith_unchanged(world):
    via = httpx.get(f"{world['proxy']}/api/orders/1", headers=legacy_headers())
    direct = httpx.get(f"{world['legacy']}/api/orders/1", headers=legacy_headers())
    assert via.status_code == direct.status_code == 200
    assert quiet(via.json()) == quiet(direct.json())
    denied = httpx.get(f"{world['proxy']}/api/orders/1", headers={"X-Tenant-ID": "acme"})
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "AUTH"


def test_extracted_products_come_from_the_catalog(world):
    differing = 0
    with httpx.Client() as http:
        for i in range(1, SMALL.products + 1):
            headers = legacy_headers(TENANTS[(i - 1) % len(TENANTS)])
            via = http.get(f"{world['proxy']}/api/products/{i}", headers=headers)
            assert via.status_code == 200, via.text
            body = via.json()
            assert "generated_at" not in body  # the catalog answered, not the monolith
            legacy = http.get(f"{world['legacy']}/api/products/{i}", headers=headers).json()
            assert quiet(legacy) | {"price_with_tax": body["price_with_tax"]} == body
            delta = Decimal(legacy["price_with_tax"]) - Decimal(body["price_with_tax"])
            assert delta in (Decimal("0"), Decimal("0.01"))
            differing += delta != 0
        assert 0 < differing < SMALL.products
        page = httpx.get(
            f"{world['proxy']}/api/products", params={"page_size": 3}, headers=legacy_headers()
        )
        assert page.json()["total"] == len([i for i in range(SMALL.products) if i % 3 == 0])
        assert "trace_id" not in page.json()


def test_customers_service_behind_the_proxy(world):
    h = {"X-Tenant-ID": "globex"}
    via = httpx.get(
        f"{world['proxy']}/v1/customers", params={"limit": 5, "order_by": "family"}, headers=h
    )
    direct = httpx.get(
        f"{world['customers']}/v1/customers", params={"limit": 5, "order_by": "family"}, headers=h
    )
    assert via.status_code == 200 and via.json() == direct.json()
    legacy_total = httpx.get(
        f"{world['legacy']}/api/customers", headers=legacy_headers("globex")
    ).json()["total"]
    assert via.json()["total_count"] == legacy_total


def test_shadowing_products_finds_exactly_the_rounding_differences(legacy_url, tmp_path):
    """The demo's story: the monolith answers, the catalog is compared, and only products whose
    gross price ends in an exact half cent (after an even digit) are reported as different."""
    from tests.support.procs import wait_until

    with start_catalog(tmp_path) as catalog:
        routes = [
            {"name": "product-shadow", "match": {"path": "/api/products/{id}", "methods": ["GET"]},
             "mode": "shadow", "target": "catalog", "rewrite": "/v1/products/{id}", "acl": "catalog",
             "shadow": {"sample": 1.0, "noise": "primary-twice",
                        "ignore": ["$.generated_at", "$.trace_id"], "unsafe": "skip"}},
        ]  # fmt: skip
        config = proxy_config({"legacy": legacy_url, "catalog": catalog}, routes, tmp_path)
        with start_proxy(tmp_path, config) as proxy, httpx.Client() as http:
            expected = 0
            for i in range(1, SMALL.products + 1):
                headers = legacy_headers(TENANTS[(i - 1) % len(TENANTS)])
                via = http.get(f"{proxy.base}/api/products/{i}", headers=headers)
                assert (
                    via.status_code == 200 and "generated_at" in via.json()
                )  # the monolith answered
                mine = http.get(f"{catalog}/v1/products/{i}", headers=headers).json()
                expected += via.json()["price_with_tax"] != mine["price_with_tax"]

            def summary():
                routes = httpx.get(f"{proxy.admin}/-/shadow").json()["routes"]
                done = [
                    r
                    for r in routes
                    if r["route"] == "product-shadow" and r["compared"] == SMALL.products
                ]
                return done[0] if done else None

            report = wait_until(summary, timeout=20, what="all shadow comparisons")
    assert 0 < expected < SMALL.products
    assert report["results"].get("mismatch", 0) == expected
    assert report["results"].get("match", 0) == SMALL.products - expected


def test_shadowed_writes_are_dry_runs_in_the_customers_service(legacy_url, tmp_path):
    """A POST shadowed with `unsafe: dry-run` is executed by the monolith for real, and by the
    customers service inside a rolled-back transaction: its database file does not change."""
    import hashlib

    from tests.support.procs import wait_until
    from tests.support.world import customers_db, start_legacy

    def digest() -> str:
        return hashlib.sha256(customers_db(tmp_path).read_bytes()).hexdigest()

    with (
        start_legacy(tmp_path) as legacy,
        start_customers(tmp_path, backfill_from=legacy) as customers,
    ):
        routes = [
            {"name": "customers-shadow", "match": {"path": "/api/customers"}, "mode": "shadow",
             "target": "customers", "rewrite": "/v1/customers", "acl": "customers",
             "shadow": {"sample": 1.0, "ignore": ["$.generated_at", "$.trace_id", "$.cust_id", "$.created_ts"],
                        "unsafe": "dry-run"}},
        ]  # fmt: skip
        config = proxy_config({"legacy": legacy, "customers": customers}, routes, tmp_path)
        before = digest()
        with start_proxy(tmp_path, config) as proxy:
            body = {
                "cust_nm": "DRYRUN, Dora",
                "email_addr": "dora@example.com",
                "addr_zip": "12345",
            }
            created = httpx.post(f"{proxy.base}/api/customers", json=body, headers=legacy_headers())
            assert created.status_code == 201, created.text

            def compared():
                routes = httpx.get(f"{proxy.admin}/-/shadow").json()["routes"]
                return [
                    r for r in routes if r["route"] == "customers-shadow" and r["compared"] >= 1
                ]

            report = wait_until(compared, timeout=20, what="the shadowed POST")[0]
        assert report["results"] == {"match": 1}, report  # the service answered the same customer
        found = httpx.get(
            f"{legacy}/api/customers", params={"q": "dryrun"}, headers=legacy_headers()
        )
        assert found.json()["total"] == 1  # the monolith really wrote it
        mine = httpx.get(
            f"{customers}/v1/customers", params={"q": "dryrun"}, headers={"X-Tenant-ID": "acme"}
        )
        assert mine.json()["total_count"] == 0  # the service did not
        assert digest() == before
