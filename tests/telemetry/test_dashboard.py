"""The dashboard's JSON: the route table joined with live figures."""

from __future__ import annotations

import pytest

from proxy.admin.dashboard import ASSETS, asset, build_dashboard
from proxy.config.model import TelemetryConfig
from proxy.telemetry import Telemetry
from proxy.telemetry.metrics import MULTIPROC_ENV
from tests.telemetry.helpers import make_config

ROUTES = [
    ("customers", "/api/customers/{id}", "canary"),
    ("orders", "/api/orders", "shadow"),
    ("products", "/api/products", "extracted"),
]


@pytest.fixture
def telemetry(monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    t = Telemetry(TelemetryConfig(), configure_logs=False)
    t.reconfigure(make_config(ROUTES, canary={"customers": 25.0}))
    return t


def hit(t, route, mode, side, status=200, n=1):
    for _ in range(n):
        t.request_started()
        t.request_finished(route, mode, side, "GET", status, 0.01, 1)


def test_routes_show_mode_split_error_rates_and_shadow_match(telemetry):
    t = telemetry
    hit(t, "customers", "canary", "legacy", n=6)
    hit(t, "customers", "canary", "legacy", status=502, n=2)
    hit(t, "customers", "canary", "extracted", n=1)
    hit(t, "customers", "canary", "extracted", status=500, n=1)
    hit(t, "customers", "canary", "proxy", status=503, n=3)  # the auth check is down
    hit(t, "customers", "canary", "proxy", status=429, n=1)
    hit(t, "orders", "shadow", "legacy", n=4)
    for result, n in (("match", 7), ("mismatch", 2), ("noise", 1)):
        t.count("shadow_comparison", float(n), route="orders", result=result)
    t.count("shadow_drop", route="orders", reason="queue_full")
    t.count("fallback", route="customers", reason="timeout")
    t.breaker_changed("customers", "closed", "open")
    t.reload_finished(True, version=1, at=1_700_000_000.0)
    config = make_config(ROUTES, canary={"customers": 25.0})
    data = build_dashboard(
        config, t.samples(), t.reloads(), now=1_700_000_100.0, shadow_report_url="/-/shadow/report"
    )
    routes = {r["name"]: r for r in data["routes"]}
    assert list(routes) == ["customers", "orders", "products"]
    c = routes["customers"]
    assert c["mode"] == "canary" and c["canary_percent"] == 25.0
    assert c["match"] == "/api/customers/{id}"
    assert c["requests"] == 14
    assert c["sides"]["legacy"] == {"requests": 8, "errors": 2, "error_rate": 0.25}
    assert c["sides"]["extracted"] == {"requests": 2, "errors": 1, "error_rate": 0.5}
    # What the proxy answered itself is shown apart, not hidden or folded into a side.
    assert c["sides"]["proxy"] == {"requests": 4, "errors": 3, "error_rate": 0.75}
    assert c["split"] == {"legacy": 0.8, "extracted": 0.2}
    assert c["fallbacks"] == 1
    o = routes["orders"]
    assert o["match"] == "/api/orders/*"
    assert o["shadow"]["compared"] == 10
    assert o["shadow"]["match_rate"] == pytest.approx(7 / 9, abs=1e-4)  # noise left out
    assert o["shadow"]["dropped"] == 1
    p = routes["products"]
    assert p["requests"] == 0 and p["split"] == {"legacy": None, "extracted": None}
    assert p["sides"]["legacy"]["error_rate"] is None
    ups = {u["name"]: u for u in data["upstreams"]}
    assert ups["customers"]["breaker"] == "open"
    assert ups["legacy"]["breaker"] == "closed"
    assert data["reloads"] == [
        {
            "at": "2023-11-14T22:13:20Z",
            "ok": True,
            "version": 1,
            "generation": None,
            "trigger": "file",
            "error": None,
        }
    ]
    assert data["shadow_report_url"] == "/-/shadow/report"
    assert data["generated_at"] == "2023-11-14T22:15:00Z"
    assert data["config"]["version"] == 1


def test_unmatched_traffic_gets_a_default_row_only_when_there_is_some(telemetry):
    config = make_config(ROUTES)
    names = [r["name"] for r in build_dashboard(config, telemetry.samples(), now=0)["routes"]]
    assert "default" not in names
    hit(telemetry, None, "legacy", "legacy", status=404)
    rows = build_dashboard(config, telemetry.samples(), now=0)["routes"]
    assert rows[-1]["name"] == "default" and rows[-1]["requests"] == 1


def test_routes_removed_by_a_reload_disappear_and_new_ones_appear(telemetry):
    hit(telemetry, "orders", "shadow", "legacy")
    config = make_config([("invoices", "/api/invoices", "legacy")], version=2)
    rows = build_dashboard(config, telemetry.samples(), now=0)["routes"]
    assert [r["name"] for r in rows] == ["invoices"]


def test_assets_are_an_allow_list():
    for name, content_type in ASSETS.items():
        data, ctype = asset(name)
        assert data and ctype == content_type
    html = asset("index.html")[0].decode()
    assert "/dashboard/app.js" in html and "/dashboard/style.css" in html
    assert "http://" not in html and "https://" not in html  # no CDN
    with pytest.raises(KeyError):
        asset("../dashboard.py")


def test_live_breaker_states_win_over_the_gauge(telemetry):
    telemetry.breaker_changed("customers", "closed", "open")
    config = make_config(ROUTES)
    ups = build_dashboard(config, telemetry.samples(), now=0)["upstreams"]
    assert {u["name"]: u["breaker"] for u in ups} == {"legacy": "closed", "customers": "open"}
    live = {"customers": "half_open"}
    ups = build_dashboard(config, telemetry.samples(), now=0, breakers=live)["upstreams"]
    assert {u["name"]: u["breaker"] for u in ups} == {"legacy": "closed", "customers": "half_open"}
