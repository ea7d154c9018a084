"""The dashboard page in a real headless Chromium: it renders the JSON and follows changes."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By

from proxy.config.model import TelemetryConfig
from proxy.telemetry import Telemetry
from proxy.telemetry.http import dashboard_routes
from proxy.telemetry.metrics import MULTIPROC_ENV
from tests.support.procs import ROOT, wait_until
from tests.telemetry.browser import chromium, dashboard_server
from tests.telemetry.helpers import make_config

ARTIFACTS = ROOT / "artifacts"


ROWS_JS = """
const out = {};
for (const tr of document.querySelectorAll('#routes tbody tr')) {
  const cell = (cls) => tr.querySelector('td.' + cls);
  out[tr.dataset.route] = {
    mode: cell('mode').textContent, canary: cell('canary').textContent,
    shadow: cell('shadow').textContent, 'errors-legacy': cell('errors-legacy').textContent,
    'errors-extracted': cell('errors-extracted').textContent,
    refused: cell('refused').textContent, 'refused-class': cell('refused').className,
    share: cell('split-cell').dataset.extractedShare,
  };
}
return out;
"""


def rows(driver) -> dict[str, dict[str, str]]:
    """The route table as the user sees it, read in one go (the page redraws every poll)."""
    return driver.execute_script(ROWS_JS)


def test_dashboard_renders_routes_and_follows_changes(monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    t = Telemetry(TelemetryConfig(), configure_logs=False)
    config = make_config(
        [("customers", "/api/customers/{id}", "canary"), ("orders", "/api/orders", "shadow")],
        canary={"customers": 10.0},
    )
    t.reconfigure(config)
    for side, n in (("legacy", 9), ("extracted", 1)):
        for _ in range(n):
            t.request_started()
            t.request_finished("customers", "canary", side, "GET", 200, 0.01, 1)
    t.count("shadow_comparison", 3.0, route="orders", result="match")
    t.count("shadow_comparison", 1.0, route="orders", result="mismatch")
    t.reload_finished(True, version=1, at=1_700_000_000.0)
    state = {"config": config}
    routes = dashboard_routes(lambda: state["config"], t, shadow_report_url="/-/shadow/report")

    with dashboard_server(routes) as base, chromium() as driver:
        driver.get(base + "/?interval=200")
        seen = wait_until(
            lambda: rows(driver) if len(rows(driver)) == 2 else None, timeout=15, what="rows"
        )
        assert seen["customers"]["mode"] == "canary"
        assert seen["customers"]["canary"] == "10%"
        assert seen["customers"]["share"] == "0.1000"
        assert seen["orders"]["mode"] == "shadow"
        assert seen["orders"]["shadow"] == "75.0% of 4"
        assert driver.find_element(By.ID, "status").text == "live"
        link = driver.find_element(By.ID, "shadow-report").get_attribute("href")
        assert link == base + "/-/shadow/report"
        assert "applied" in driver.find_element(By.ID, "reloads").text
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dashboard-before.png"))

        # The operator promotes customers to extracted and adds a route; a reload is rejected.
        state["config"] = make_config(
            [
                ("customers", "/api/customers/{id}", "extracted"),
                ("orders", "/api/orders", "shadow"),
                ("invoices", "/api/invoices", "legacy"),
            ],
            version=2,
        )
        t.reload_finished(True, version=2, at=1_700_000_060.0)
        t.reload_finished(False, error="routes.yaml:7: routes[2].mode: 'canry' is not a mode")
        for _ in range(30):
            t.request_started()
            t.request_finished("customers", "extracted", "extracted", "GET", 500, 0.01, 1)
        for _ in range(5):  # the auth check is down: the proxy answers 503 itself
            t.request_started()
            t.request_finished("customers", "extracted", "proxy", "GET", 503, 0.01, 1)

        def updated():
            r = rows(driver)
            return r if "invoices" in r and r["customers"]["mode"] == "extracted" else None

        after = wait_until(updated, timeout=15, what="the page to show the new config")
        assert seen["customers"]["refused"] == "–"
        assert after["customers"]["refused"] == "5" and "bad" in after["customers"]["refused-class"]
        assert after["invoices"]["mode"] == "legacy"
        assert after["customers"]["canary"] == "–"
        assert after["customers"]["share"] == "1.0000"  # the recent traffic is all extracted
        assert after["customers"]["errors-extracted"] == "100.00%"
        assert driver.find_element(By.ID, "config-version").text == "2"
        reloads = driver.find_element(By.ID, "reloads").text
        assert "rejected" in reloads and "'canry' is not a mode" in reloads
        driver.save_screenshot(str(ARTIFACTS / "dashboard-after.png"))
        assert Path(ARTIFACTS / "dashboard-after.png").stat().st_size > 10_000
