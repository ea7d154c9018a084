"""The demo's story through the real proxy and `strangler report --format json`: shadowing the
catalog (monolith vs extracted service) reports exactly the half-even rounding differences, and
the monolith's per-response fields as noise.

tests/demo/test_e2e_proxy.py checks the live match counts at GET /-/shadow for single products;
this test checks the durable JSON report (its documented schema), noise cancellation without
`ignore`, and the list endpoint alongside the detail endpoint.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

import httpx

from tests.shadow_e2e.support import report_json, wait_compared
from tests.support.world import (
    SMALL,
    TENANTS,
    legacy_headers,
    proxy_config,
    start_catalog,
    start_legacy,
    start_proxy,
)

PAGE_SIZE = 3
NOISE = ["$.generated_at", "$.trace_id"]


def rounded(product: dict) -> tuple[str, str]:
    """(half-up, half-even) gross price in dollars, from the monolith's own price and rate."""
    gross = (
        Decimal(product["price_cents"]) * (Decimal(1) + Decimal(product["tax_rate"])) / Decimal(100)
    )
    cent = Decimal("0.01")
    return (
        str(gross.quantize(cent, rounding=ROUND_HALF_UP)),
        str(gross.quantize(cent, rounding=ROUND_HALF_EVEN)),
    )


def test_catalog_shadow_report_names_exactly_the_rounding_differences(tmp_path):
    routes = [
        {"name": "product", "match": {"path": "/api/products/{id}", "methods": ["GET"]},
         "mode": "shadow", "target": "catalog", "rewrite": "/v1/products/{id}", "acl": "catalog",
         "shadow": {"noise": "primary-twice"}},
        {"name": "products", "match": {"path": "/api/products", "methods": ["GET"]},
         "mode": "shadow", "target": "catalog", "rewrite": "/v1/products", "acl": "catalog",
         "shadow": {"noise": "primary-twice"}},
    ]  # fmt: skip
    with start_legacy(tmp_path) as legacy, start_catalog(tmp_path) as catalog:
        # the expectation, computed from the monolith's data alone
        products: dict[int, dict] = {}
        with httpx.Client(base_url=legacy) as direct:
            for i in range(1, SMALL.products + 1):
                tenant = TENANTS[(i - 1) % len(TENANTS)]
                products[i] = direct.get(
                    f"/api/products/{i}", headers=legacy_headers(tenant)
                ).json()
        pairs = {i: rounded(p) for i, p in products.items()}
        assert all(products[i]["price_with_tax"] == up for i, (up, _) in pairs.items())
        differing = {i for i, (up, even) in pairs.items() if up != even}
        assert 0 < len(differing) < SMALL.products  # the seed data makes both kinds

        pages: list[tuple[str, int, set[int]]] = []  # (tenant, page, product ids on it)
        for tenant in TENANTS:
            ids = sorted(i for i, p in products.items() if p["tenant_id"] == tenant)
            for n, start in enumerate(range(0, len(ids), PAGE_SIZE), start=1):
                pages.append((tenant, n, set(ids[start : start + PAGE_SIZE])))

        config = proxy_config({"legacy": legacy, "catalog": catalog}, routes, tmp_path)
        with start_proxy(tmp_path, config) as proxy, httpx.Client(base_url=proxy.base) as http:
            for i, product in products.items():
                resp = http.get(f"/api/products/{i}", headers=legacy_headers(product["tenant_id"]))
                assert resp.status_code == 200
                body = resp.json()
                assert body["price_with_tax"] == pairs[i][0] and "trace_id" in body  # monolith's
            for tenant, page, ids in pages:
                resp = http.get(
                    "/api/products",
                    params={"page": page, "page_size": PAGE_SIZE},
                    headers=legacy_headers(tenant),
                )
                assert resp.status_code == 200
                assert {r["prod_id"] for r in resp.json()["results"]} == ids
            wait_compared(proxy.admin, "product", len(products))
            wait_compared(proxy.admin, "products", len(pages))

    report = report_json(tmp_path / "routes.yaml")
    endpoints = {(e["route"], e["method"], e["endpoint"]): e for e in report["endpoints"]}
    assert set(endpoints) == {
        ("product", "GET", "/api/products/{id}"),
        ("products", "GET", "/api/products"),
    }

    detail = endpoints[("product", "GET", "/api/products/{id}")]
    n = len(products)
    assert (detail["samples"], detail["noise_samples"]) == (n, n)
    assert detail["matches"] == n - len(differing)
    assert detail["match_rate"] == round((n - len(differing)) / n, 4)
    assert detail["statuses"] == {"200/200": n}
    (price,) = detail["fields"]  # nothing but the price differs
    assert price["path"] == "$.price_with_tax"
    assert price["count"] == len(differing) and price["verdict"] == "failure"
    assert price["noise_count"] == 0 and price["kinds"] == {"value": len(differing)}
    expected_pairs = {pairs[i] for i in differing}
    assert (price["example"]["primary"], price["example"]["candidate"]) in expected_pairs
    for example in price["examples"]:
        assert (example["primary"], example["candidate"]) in expected_pairs
    # the monolith stamps every answer; two monolith answers differ there: noise, not blamed
    assert detail["noise"] == NOISE
    noise = {d["path"]: d for d in detail["noise_detail"]}
    assert set(noise) == set(NOISE)
    assert all(d["raw"] == n and d["noise"] == n for d in noise.values())

    listing = endpoints[("products", "GET", "/api/products")]
    pages_differing = [ids for _, _, ids in pages if ids & differing]
    assert listing["samples"] == len(pages)
    assert listing["matches"] == len(pages) - len(pages_differing)
    assert listing["match_rate"] == round(listing["matches"] / len(pages), 4)
    (price,) = listing["fields"]
    assert price["path"] == "$.results[*].price_with_tax"
    assert price["count"] == len(pages_differing) and price["verdict"] == "failure"
    assert (price["example"]["primary"], price["example"]["candidate"]) in expected_pairs
    assert listing["noise"] == NOISE

    assert report["schema"] == 1
    assert report["totals"]["samples"] == n + len(pages)
    assert report["totals"]["matches"] == detail["matches"] + listing["matches"]
