"""The repository's routes.yaml is the demo's table (docs/demo-contracts.md) and loads clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proxy.config import model
from proxy.config.loader import config_warnings, load_config
from proxy.routing import RouteTable
from proxy.server import load_translators

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo() -> model.Config:
    return load_config(ROOT / "routes.yaml")


def test_listeners_and_upstreams_match_the_demo_contract(demo):
    assert demo.listen == model.Endpoint("127.0.0.1", 8080)
    assert demo.admin == model.Endpoint("127.0.0.1", 8081)
    assert {name: (u.host, u.port) for name, u in demo.upstreams.items()} == {
        "legacy": ("127.0.0.1", 8000),
        "customers": ("127.0.0.1", 8101),
        "catalog": ("127.0.0.1", 8102),
    }
    assert demo.default == "legacy"
    assert demo.tenant == model.TenantSource(header="x-tenant-id")
    assert demo.shadow.store == f"sqlite:///{ROOT}/strangler-shadow.db"


def test_customers_are_a_zero_percent_canary_and_products_are_shadowed(demo):
    table = RouteTable(demo.routes)

    def owner(method: str, path: str) -> model.Route | None:
        found = table.match(method, path, "127.0.0.1", {})
        return found.route if found else None

    listing, detail = owner("GET", "/api/customers"), owner("PUT", "/api/customers/17")
    assert listing is not None and detail is not None and listing is not detail
    for route in (listing, detail):
        assert (route.mode, route.target, route.fallback) == ("canary", "customers", "legacy")
        assert route.canary.percent == 0
    assert listing.rewrite == "/v1/customers"
    assert detail.rewrite == "/v1/customers/{id}"

    products = owner("GET", "/api/products/3")
    assert products is not None and products is owner("GET", "/api/products")
    assert (products.mode, products.target) == ("shadow", "catalog")
    assert products.shadow.noise == "primary-twice"
    assert set(products.shadow.ignore) == {"$.generated_at", "$.trace_id"}
    assert products.shadow.unsafe == "skip"

    for method, path in (("GET", "/api/orders"), ("GET", "/api/invoices/4"), ("GET", "/")):
        assert owner(method, path) is None, path  # everything else: default legacy


def test_demo_table_has_no_warnings(demo):
    assert config_warnings(demo) == []


def test_acl_names_are_the_installed_translators():
    path = ROOT / "routes.yaml"
    loaded, problems = load_translators(path)
    assert problems == []
    translators = set(loaded)
    config = load_config(path, translators=translators)
    used = {route.acl for route in config.routes if route.acl}
    assert used == {"customers", "catalog"} and used <= translators


def test_strangler_check_accepts_the_demo_and_lists_every_problem_of_a_broken_copy(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "proxy", "check", str(ROOT / "routes.yaml")],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "routes.yaml"
    text = (ROOT / "routes.yaml").read_text(encoding="utf-8")
    text = text.replace("percent: 0 ", "percent: 150 ", 1).replace(
        "noise: primary-twice", "noise: twice"
    )
    broken.write_text(text, encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, "-m", "proxy", "check", str(broken)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1
    lines = text.splitlines()
    percent_line = next(i for i, line in enumerate(lines, 1) if "percent: 150" in line)
    noise_line = next(i for i, line in enumerate(lines, 1) if line == "      noise: twice")
    assert (
        f"{broken}:{percent_line}: route 'customers-list': canary.percent: 150 is out of range"
        in bad.stdout
    )
    assert (
        f"{broken}:{noise_line}: route 'catalog-products': shadow.noise: unknown noise source"
        in bad.stdout
    )


def test_a_broken_translator_file_refuses_only_a_table_that_names_it(tmp_path):
    """A half-written translator nobody uses yet must not block every other change to
    routes.yaml; one a route names must."""
    folder = tmp_path / "acl" / "translators"
    folder.mkdir(parents=True)
    (folder / "draft.yaml").write_text("translator: draft\nrecord: [unclosed\n")
    config = tmp_path / "routes.yaml"
    head = "version: 1\nupstreams: {legacy: 'http://127.0.0.1:9', svc: 'http://127.0.0.1:8'}\n"
    config.write_text(head + "routes:\n  - {name: a, match: {prefix: /a}, target: svc}\n")

    def check() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "proxy", "check", str(config)],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip

    ok = check()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "warning: ACL translator not loaded (no route names it)" in ok.stdout
    assert "draft.yaml:" in ok.stdout
    config.write_text(
        head + "routes:\n  - {name: a, match: {prefix: /a}, target: svc, acl: draft}\n"
    )
    bad = check()
    assert bad.returncode == 1 and "draft.yaml:" in bad.stdout + bad.stderr, bad.stdout
    # A route naming a translator that simply is not there is told so, by route, while the
    # unrelated broken draft stays a warning.
    config.write_text(
        head + "routes:\n  - {name: a, match: {prefix: /a}, target: svc, acl: customers}\n"
    )
    absent = check()
    assert absent.returncode == 1
    assert "route 'a': acl: unknown translator 'customers'" in absent.stdout, absent.stdout
    assert "draft.yaml" not in absent.stdout.split("unknown translator")[0]
    # A Python translator registers any name: one that fails to import may be the missing
    # one, so its error is shown rather than "unknown translator".
    (folder / "orders_translator.py").write_text("import not_a_module_anywhere\n")
    broken_py = check()
    assert broken_py.returncode == 1
    assert "orders_translator.py" in broken_py.stdout + broken_py.stderr, broken_py.stdout


def test_strangler_routes_prints_the_effective_table(tmp_path):
    config = tmp_path / "routes.yaml"
    config.write_text(
        """version: 1
upstreams:
  legacy: {url: "http://127.0.0.1:8000"}
  svc: {url: "http://127.0.0.1:8101"}
default: legacy
tenant: {header: X-Tenant-ID}
routes:
  - name: item
    match: {path: "/api/items/{id}", methods: [GET], headers: {X-Tenant: acme}}
    mode: extracted
    target: svc
    rewrite: "/v1/items/{id}"
  - name: beta
    match: {prefix: /beta, headers: {X-Beta: {regex: "on|yes"}}}
    mode: canary
    target: svc
    canary: {percent: 10}
  - name: pilot
    match: {prefix: /pilot}
    target: svc
    tenants: {extracted: [acme]}
"""
    )
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "routes", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == [
        "ROUTE",
        "MATCH",
        "METHODS",
        "MODE",
        "ANSWERS",
        "REWRITE",
        "ACL",
    ]
    item = next(line for line in lines if line.startswith("item "))
    assert "/api/items/{id} [x-tenant: acme]" in item and "GET" in item
    assert "extracted" in item and "svc" in item and "/v1/items/{id}" in item
    beta = next(line for line in lines if line.startswith("beta "))
    assert "/beta/* [x-beta ~on|yes]" in beta and "canary 10%" in beta
    assert "svc / legacy" in beta  # who answers: the target for 10%, legacy for the rest
    pilot = next(line for line in lines if line.startswith("pilot "))
    assert "legacy; svc for acme" in pilot  # a legacy route with a pilot tenant
    assert lines[-1].split()[:2] == ["(default)", "*"] and "legacy" in lines[-1]


def test_check_takes_several_files_and_reports_each(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\nupstreams: {legacy: 'http://127.0.0.1:9'}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nupstreams: {legacy: 'http://127.0.0.1:9'}\nmetods: [GET]\n")
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "check", str(good), str(bad), str(good)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stdout.count(f"{good}: OK") == 2
    assert f"{bad}:3: " in out.stdout and "metods" in out.stdout
