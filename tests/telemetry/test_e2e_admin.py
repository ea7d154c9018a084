"""End to end through `strangler serve`: /metrics across workers, the live admin dashboard."""

from __future__ import annotations

import glob
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import yaml

from proxy.telemetry.metrics import samples_from_text
from tests.support.procs import PYTHON, ROOT, free_port, running, wait_until
from tests.telemetry.browser import chromium

ARTIFACTS = ROOT / "artifacts"


def routes_doc(upstream: str, port: int, admin: int, routes: list[dict], version: int = 1):
    return {
        "version": version,
        "listen": {"host": "127.0.0.1", "port": port},
        "admin": {"host": "127.0.0.1", "port": admin},
        "upstreams": {"legacy": {"url": upstream}, "customers": {"url": upstream}},
        "default": "legacy",
        "routes": routes,
        "telemetry": {"traces": {"exporter": "none"}, "metrics": True, "log_format": "json"},
    }


def route(name: str, prefix: str, mode: str, **extra) -> dict:
    doc = {"name": name, "match": {"prefix": prefix}, "mode": mode, **extra}
    if mode != "legacy":
        doc["target"] = "customers"
    return doc


def total(text: str, name: str, **labels: str) -> float:
    return sum(
        v
        for n, lab, v in samples_from_text(text)
        if n == name and all(lab.get(k) == want for k, want in labels.items())
    )


def start_upstream():
    port = free_port()
    return port, running(
        [PYTHON, "-m", "tests.support.upstream", str(port)], ready_url=f"http://127.0.0.1:{port}/"
    )


def test_metrics_of_two_workers_are_served_together(tmp_path):
    up_port, upstream = start_upstream()
    port, admin = free_port(), free_port()
    config = tmp_path / "routes.yaml"
    config.write_text(
        yaml.safe_dump(
            routes_doc(f"http://127.0.0.1:{up_port}", port, admin, [route("api", "/api", "legacy")])
        )
    )
    mp = tmp_path / "metrics"
    mp.mkdir()
    args = [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config), "--workers", "2"]
    with (
        upstream,
        running(
            args,
            ready_url=f"http://127.0.0.1:{admin}/-/ready",
            env={"PROMETHEUS_MULTIPROC_DIR": str(mp)},
            stderr=subprocess.DEVNULL,
        ),
    ):
        sent = 0

        def counting_workers() -> set[str]:
            return {
                os.path.basename(f).split("_")[-1].split(".")[0]
                for f in glob.glob(str(mp / "counter_*.db"))
            }

        def both_workers_counted() -> bool:
            # Worker 1 may still be starting when worker 0's admin port says ready: keep
            # sending (a new connection each time, so SO_REUSEPORT spreads them) until both
            # have counted something.
            nonlocal sent
            for i in range(10):
                resp = httpx.get(f"http://127.0.0.1:{port}/api/items/{i}", timeout=10)
                assert resp.status_code == 200
                sent += 1
            return len(counting_workers()) == 2

        wait_until(both_workers_counted, timeout=30, what="both workers to serve requests")
        n = sent
        text = httpx.get(f"http://127.0.0.1:{admin}/metrics", timeout=10).text
        assert total(text, "strangler_requests_total", route="api", side="legacy") == n
        assert total(text, "strangler_request_duration_seconds_count", route="api") == n
        assert total(text, "strangler_upstream_attempts_total", upstream="legacy") == n
        assert 'route="/api/items' not in text  # route names, never raw paths


def rows(driver) -> dict[str, str]:
    return driver.execute_script(
        "const o = {};"
        "for (const tr of document.querySelectorAll('#routes tbody tr'))"
        "  o[tr.dataset.route] = tr.dataset.mode;"
        "return o;"
    )


def test_the_admin_dashboard_follows_routes_yaml(tmp_path):
    up_port, upstream = start_upstream()
    port, admin = free_port(), free_port()
    up_url = f"http://127.0.0.1:{up_port}"
    config = tmp_path / "routes.yaml"
    first = [
        route("customers", "/api/customers", "shadow"),
        route("orders", "/api/orders", "legacy"),
    ]
    config.write_text(yaml.safe_dump(routes_doc(up_url, port, admin, first)))
    args = [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)]
    with (
        upstream,
        running(args, ready_url=f"http://127.0.0.1:{admin}/-/ready", stderr=subprocess.DEVNULL),
        chromium() as driver,
    ):
        for _ in range(5):
            httpx.get(f"http://127.0.0.1:{port}/api/orders", timeout=10)
        driver.get(f"http://127.0.0.1:{admin}/?interval=200")
        wait_until(
            lambda: rows(driver) == {"customers": "shadow", "orders": "legacy"},
            timeout=15,
            what="the dashboard to show routes.yaml",
        )
        assert driver.execute_script(
            "return document.querySelector('tr[data-route=orders] td.rps').title"
        ).startswith("5 requests")

        second = [
            route("customers", "/api/customers", "canary", canary={"percent": 30}),
            route("orders", "/api/orders", "extracted"),
            route("invoices", "/api/invoices", "legacy"),
        ]
        config.write_text(yaml.safe_dump(routes_doc(up_url, port, admin, second, version=1)))
        wait_until(
            lambda: (
                rows(driver) == {"customers": "canary", "orders": "extracted", "invoices": "legacy"}
            ),
            timeout=15,
            what="the dashboard to follow the reload",
        )
        canary = driver.execute_script(
            "return document.querySelector('tr[data-route=customers] td.canary').textContent"
        )
        assert canary == "30%"

        config.write_text("version: 1\nroutes: [{name: broken, mode: sideways}]\n")
        wait_until(
            lambda: "rejected" in driver.find_element("id", "reloads").text,
            timeout=15,
            what="the rejected reload on the dashboard",
        )
        assert rows(driver) == {"customers": "canary", "orders": "extracted", "invoices": "legacy"}
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dashboard-e2e.png"))


def test_requests_in_flight_are_gauged_in_each_worker_and_summed(tmp_path):
    """`strangler_requests_in_flight` counts requests waiting on their upstream, in every
    worker, as `/-/ready` does for the worker it asks. The upstream holds the six answers
    until the gauge has said 6 (they used to take 4 s: on a slow machine they could be
    answered before the sixth was in flight)."""
    up_port, upstream = start_upstream()
    port, admin = free_port(), free_port()
    config = tmp_path / "routes.yaml"
    doc = routes_doc(f"http://127.0.0.1:{up_port}", port, admin, [])
    config.write_text(yaml.safe_dump(doc))
    mp = tmp_path / "metrics"
    mp.mkdir()
    args = [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config), "--workers", "2"]
    metrics = f"http://127.0.0.1:{admin}/metrics"
    with (
        upstream,
        running(
            args,
            ready_url=f"http://127.0.0.1:{admin}/-/ready",
            env={"PROMETHEUS_MULTIPROC_DIR": str(mp)},
            stderr=subprocess.DEVNULL,
        ),
        ThreadPoolExecutor(8) as pool,
    ):
        # New connections each, so SO_REUSEPORT spreads them over both workers.
        slow = [
            pool.submit(httpx.get, f"http://127.0.0.1:{port}/slow?gate=held", timeout=30)
            for _ in range(6)
        ]

        def gauge() -> float:
            return total(httpx.get(metrics, timeout=10).text, "strangler_requests_in_flight")

        try:
            wait_until(lambda: gauge() == 6, what="6 requests in flight")
        finally:
            httpx.post(f"http://127.0.0.1:{up_port}/gates/held", timeout=10).raise_for_status()
        assert all(f.result().status_code == 200 for f in slow)
        wait_until(lambda: gauge() == 0, timeout=15, what="none in flight")
