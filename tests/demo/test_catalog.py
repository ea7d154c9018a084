"""The catalog service: same products as the monolith, half-even price_with_tax."""

from __future__ import annotations

import re
import subprocess
from decimal import Decimal
from pathlib import Path

import httpx

from extracted.catalog import products
from tests.support.procs import PYTHON, ROOT
from tests.support.world import SMALL, TENANTS, catalog_db, legacy_headers, start_catalog


def test_half_even_differs_from_half_up_only_on_exact_half_cents():
    assert products.price_with_tax(115, "0.1000") == "1.26"  # 126.5 cents, even 6 stays
    assert products.price_with_tax(125, "0.1000") == "1.38"  # 137.5 cents, odd 7 goes up
    assert products.price_with_tax(1999, "0.0825") == "21.64"  # not a half: both agree


def test_no_module_in_extracted_imports_the_monolith():
    offenders = []
    for path in (ROOT / "extracted").rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if (
                re.match(r"\s*(from|import)\s+legacy_demo\b", line)
                or 'import_module("legacy_demo' in line
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
    # The check itself detects an import when there is one.
    assert re.match(r"\s*(from|import)\s+legacy_demo\b", "from legacy_demo.shop import seeddata")


def test_products_match_the_monolith_except_rounding(legacy_url, tmp_path):
    total = differing = 0
    with start_catalog(tmp_path) as url:
        for tenant in TENANTS:
            legacy = httpx.get(
                f"{legacy_url}/api/products",
                params={"page_size": 100},
                headers=legacy_headers(tenant),
            ).json()
            mine = httpx.get(
                f"{url}/v1/products", params={"page_size": 100}, headers={"X-Tenant-ID": tenant}
            ).json()
            assert set(mine) == {"page", "page_size", "total", "results"}
            assert mine["total"] == legacy["total"]
            for old, new in zip(legacy["results"], mine["results"], strict=True):
                assert {k: v for k, v in old.items() if k != "price_with_tax"} == {
                    k: v for k, v in new.items() if k != "price_with_tax"
                }
                total += 1
                if old["price_with_tax"] != new["price_with_tax"]:
                    differing += 1
                    # Half-up only ever rounds one cent above half-even.
                    assert Decimal(old["price_with_tax"]) - Decimal(
                        new["price_with_tax"]
                    ) == Decimal("0.01")
        detail = httpx.get(f"{url}/v1/products/1", headers={"X-Tenant-ID": "acme"}).json()
        assert detail["prod_id"] == 1 and "generated_at" not in detail
        # A page past SQL's integers is a page past the end on both sides, not a 500.
        far = {"page": str(10**30), "page_size": "5"}
        legacy = httpx.get(f"{legacy_url}/api/products", params=far, headers=legacy_headers())
        mine = httpx.get(f"{url}/v1/products", params=far, headers={"X-Tenant-ID": "acme"})
        assert legacy.status_code == mine.status_code == 200, (legacy.text, mine.text)
        assert legacy.json()["results"] == mine.json()["results"] == []
    assert total == SMALL.products
    assert 0 < differing < total


def test_catalog_errors_use_the_legacy_shape(tmp_path):
    with start_catalog(tmp_path) as url:
        no_tenant = httpx.get(f"{url}/v1/products")
        assert (no_tenant.status_code, no_tenant.json()["error"]["code"]) == (400, "BAD_TENANT")
        foreign = httpx.get(f"{url}/v1/products/2", headers={"X-Tenant-ID": "acme"})  # globex's
        assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "NOT_FOUND")
        bad = httpx.get(
            f"{url}/v1/products", params={"page_size": 0}, headers={"X-Tenant-ID": "acme"}
        )
        assert bad.status_code == 400 and "page_size" in bad.json()["error"]["fields"]
        post = httpx.post(f"{url}/v1/products", json={}, headers={"X-Tenant-ID": "acme"})
        assert post.status_code == 405 and post.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_catalog_seed_is_idempotent(tmp_path):
    db = catalog_db(tmp_path)

    def seed(count: int) -> bytes:
        subprocess.run([PYTHON, "-m", "extracted.catalog.seed", "--db", str(db), "--products", str(count)],
                       cwd=ROOT, check=True, capture_output=True, timeout=60)  # fmt: skip
        import sqlite3

        with sqlite3.connect(db) as conn:
            return repr(conn.execute("SELECT * FROM products ORDER BY id").fetchall()).encode()

    once = seed(12)
    assert seed(12) == once
    assert seed(6) != once and len(seed(12)) == len(once)


def test_extracted_package_has_its_own_copy_of_the_formula():
    # Same formula, independent code: the copy reproduces the first products exactly.
    legacy = (ROOT / "legacy_demo" / "shop" / "seeddata.py").read_text()
    mine = (Path(products.__file__)).read_text()
    body = re.compile(
        r"def product\(seed: int, i: int\) -> dict:\n    \"\"\".*?\"\"\"\n(.*?)\n\n", re.S
    )
    assert body.search(legacy).group(1) == body.search(mine).group(1)
