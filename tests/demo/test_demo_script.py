"""scripts/demo.py: comes up healthy, works twice in a row, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import yaml

from tests.support.procs import PYTHON, ROOT, free_port, wait_until
from tests.support.world import proxy_config

NAMES = ("legacy", "customers", "catalog", "proxy", "admin")


def template(tmp_path) -> str:
    """A valid route table; the demo rewrites its ports and upstream URLs."""
    routes = [
        {"name": "customer-detail", "match": {"path": "/api/customers/{id}"}, "mode": "canary",
         "target": "customers", "rewrite": "/v1/customers/{id}", "acl": "customers",
         "fallback": "legacy", "canary": {"percent": 0, "sticky": "tenant"}},
        {"name": "product", "match": {"path": "/api/products/{id}", "methods": ["GET"]},
         "mode": "extracted", "target": "catalog", "rewrite": "/v1/products/{id}"},
    ]  # fmt: skip
    upstreams = {
        n: f"http://127.0.0.1:{p}"
        for n, p in (("legacy", 8000), ("customers", 8101), ("catalog", 8102))
    }
    config = proxy_config(upstreams, routes, tmp_path, port=8080, admin_port=8081)
    config["shadow"] = {"store": "sqlite:///strangler-shadow.db"}
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def demo_args(tmp_path, ports: dict[str, int], *extra: str) -> list[str]:
    args = [PYTHON, str(ROOT / "scripts" / "demo.py"), "--routes", template(tmp_path),
            "--var-dir", str(tmp_path / "var"), "--customers", "60", "--products", "12",
            "--orders", "90", *extra]  # fmt: skip
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    return args


def answers(url: str) -> bool:
    import httpx

    try:
        httpx.get(url, timeout=0.5)
        return True
    except httpx.HTTPError:
        return False


def test_demo_runs_twice_in_a_row_and_stops_on_sigterm(tmp_path):
    import httpx

    ports = {name: free_port() for name in NAMES}
    # First run: up, healthy, banner, then a clean stop (--once).
    result = subprocess.run(
        demo_args(tmp_path, ports, "--once"), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Strangler demo is up." in result.stdout
    curl = f"-H 'Authorization: Token demo-token-acme' -H 'X-Tenant-ID: acme' http://127.0.0.1:{ports['proxy']}/api/customers/1"
    assert curl in result.stdout
    for name in ("legacy", "customers", "catalog", "proxy"):
        assert f"stopped {name}" in result.stdout
    assert not any(answers(f"http://127.0.0.1:{p}/") for p in ports.values())
    derived = yaml.safe_load((tmp_path / "var" / "routes.yaml").read_text())
    assert derived["upstreams"]["customers"]["url"] == f"http://127.0.0.1:{ports['customers']}"

    # Second run on the same state: serves until SIGTERM, then stops everything.
    out = tmp_path / "demo.out"
    with out.open("w") as log:
        proc = subprocess.Popen(
            demo_args(tmp_path, ports), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until(
                lambda: "demo is up" in out.read_text() or proc.poll() is not None,
                timeout=90,
                what="the demo",
            )
            assert proc.poll() is None, out.read_text()
            headers = {"Authorization": "Token demo-token-acme", "X-Tenant-ID": "acme"}
            product = httpx.get(
                f"http://127.0.0.1:{ports['proxy']}/api/products/1", headers=headers
            )
            assert (
                product.status_code == 200 and "generated_at" not in product.json()
            )  # the catalog
            customer = httpx.get(
                f"http://127.0.0.1:{ports['proxy']}/api/customers/1", headers=headers
            )
            assert customer.status_code == 200 and customer.json()["cust_id"] == 1
            # An extracted service that stops leaves the demo running (fallback is to be
            # tried there): the monolith still answers through the proxy.
            pid = re.search(r"customers: healthy at \S+ \(pid (\d+)\)", out.read_text())
            assert pid, out.read_text()
            os.kill(int(pid.group(1)), signal.SIGTERM)
            wait_until(
                lambda: "customers exited" in out.read_text() or proc.poll() is not None,
                what="the demo to notice",
            )
            assert "still running without it" in out.read_text(), out.read_text()
            assert proc.poll() is None, out.read_text()
            customer = httpx.get(
                f"http://127.0.0.1:{ports['proxy']}/api/customers/1", headers=headers
            )
            assert customer.status_code == 200 and customer.json()["cust_id"] == 1
            assert proc.poll() is None, out.read_text()
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, out.read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert not any(answers(f"http://127.0.0.1:{p}/") for p in ports.values())
