"""The admin port as a browser sees it, through a real `strangler serve` of the demo's
routes.yaml: the dashboard works under its Content-Security-Policy, and a page of another
site can neither frame it nor change anything on the admin port."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest
import yaml
from aiohttp import web

from proxy.telemetry.http import dashboard_routes
from tests.support.procs import PYTHON, ROOT, free_port, running, wait_until
from tests.telemetry.browser import chromium, dashboard_server

DEMO_MODES = {
    "customers-list": "canary",
    "customer-detail": "canary",
    "catalog-products": "shadow",
}


def demo_config(tmp_path) -> tuple[str, int, int]:
    """The repository's routes.yaml on ephemeral ports, its shadow store in `tmp_path`."""
    doc = yaml.safe_load((ROOT / "routes.yaml").read_text())
    port, admin = free_port(), free_port()
    doc["listen"] = {"host": "127.0.0.1", "port": port}
    doc["admin"] = {"host": "127.0.0.1", "port": admin}
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path), port, admin


def serve(config: str, admin: int):
    return running(
        [PYTHON, "-m", "proxy.cli", "serve", "-c", config],
        ready_url=f"http://127.0.0.1:{admin}/-/ready",
        stderr=subprocess.DEVNULL,
    )


def modes(driver) -> dict[str, str]:
    return driver.execute_script(
        "const o = {};"
        "for (const tr of document.querySelectorAll('#routes tbody tr'))"
        "  o[tr.dataset.route] = tr.dataset.mode;"
        "return o;"
    )


def severe(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_the_dashboard_works_under_its_content_security_policy(tmp_path):
    config, port, admin = demo_config(tmp_path)
    base = f"http://127.0.0.1:{admin}"
    with serve(config, admin), chromium() as driver:
        for path in ("/", "/dashboard/app.js", "/-/dashboard.json", "/-/config", "/nothing"):
            headers = httpx.get(base + path, timeout=10).headers
            assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", ""), path
            assert headers.get("X-Content-Type-Options") == "nosniff", path
            assert headers.get("X-Frame-Options") == "DENY", path
            assert headers.get("Cross-Origin-Resource-Policy") == "same-origin", path
        # Browsers ask for an icon on their own: a 404 would be a console error.
        assert httpx.get(base + "/favicon.ico", timeout=10).status_code == 204
        # Traffic for the split bar (the demo's upstreams are not running: 502s from legacy).
        for _ in range(3):
            httpx.get(f"http://127.0.0.1:{port}/api/products", timeout=10)
        driver.get(base + "/?interval=200")
        wait_until(
            lambda: {k: v for k, v in modes(driver).items() if k in DEMO_MODES} == DEMO_MODES,
            timeout=15,
            what="the demo's routes on the dashboard",
        )
        bar = wait_until(
            lambda: driver.execute_script(
                "const s = document.querySelector("
                "  'tr[data-route=catalog-products] .split span.legacy');"
                "return s && s.style.width;"
            ),
            timeout=15,
            what="the traffic split bar",
        )
        assert bar == "100%"  # drawn through the CSSOM: the policy refuses style attributes
        assert driver.find_element("id", "status").text == "live"
        assert severe(driver) == []


ATTACKER_PAGE = """<!doctype html><html><body>
<iframe id="dash" src="http://127.0.0.1:{admin}/" width="600" height="300"></iframe>
<form id="plain" method="POST" action="http://127.0.0.1:{admin}/-/reload"
      enctype="text/plain" target="sink-plain"><input name="a" value="b"></form>
<form id="urlenc" method="POST" action="http://localhost:{admin}/-/reload"
      target="sink-urlenc"><input name="a" value="b"></form>
<form id="multi" method="POST" action="http://127.0.0.1:{admin}/-/reload"
      enctype="multipart/form-data" target="sink-multi"><input name="a" value="b"></form>
<iframe name="sink-plain"></iframe><iframe name="sink-urlenc"></iframe>
<iframe name="sink-multi"></iframe>
<script>
window.results = {{}};
(async () => {{
  for (const type of ["text/plain", "application/json", "application/x-www-form-urlencoded"]) {{
    try {{
      await fetch("http://127.0.0.1:{admin}/-/reload",
                  {{method: "POST", mode: "no-cors", headers: {{"Content-Type": type}}, body: "{{}}"}});
      results[type] = "sent";
    }} catch (e) {{ results[type] = "failed"; }}
  }}
  try {{
    const r = await fetch("http://127.0.0.1:{admin}/-/config");
    results.read = await r.text();
  }} catch (e) {{ results.read = "failed"; }}
  // A form's answer loads in its frame: the parent sees that frame's load event.
  const answered = ["plain", "urlenc", "multi"].map((id) => new Promise((resolve) => {{
    document.querySelector(`iframe[name=sink-${{id}}]`).addEventListener("load", resolve);
    document.getElementById(id).submit();
  }}));
  await Promise.all(answered);
  results.done = true;
}})();
</script></body></html>
"""


def test_a_page_of_another_site_can_neither_frame_nor_reload_the_admin_port(tmp_path):
    config, _, admin = demo_config(tmp_path)
    site = tmp_path / "evil"
    site.mkdir()
    (site / "index.html").write_text(ATTACKER_PAGE.format(admin=admin))
    evil_port = free_port()
    attacker = running(
        [PYTHON, "-m", "http.server", str(evil_port), "--bind", "127.0.0.1", "-d", str(site)],
        ready_url=f"http://127.0.0.1:{evil_port}/",
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{admin}"
    with (
        serve(config, admin),
        attacker,
        chromium("--host-resolver-rules=MAP evil.test 127.0.0.1") as driver,
    ):
        driver.get(f"http://evil.test:{evil_port}/")
        wait_until(
            lambda: driver.execute_script("return window.results.done"), timeout=15, what="page"
        )
        assert driver.execute_script("return window.results.read") == "failed"
        # Every form and fetch was answered; a reload the admin port accepted, or tried and
        # found invalid, would count here.
        config_now = httpx.get(base + "/-/config", timeout=10).json()
        assert config_now["reloads"] == {"ok": 0, "failed": 0}

        # The framed dashboard is refused: Chromium shows its own error page there.
        driver.switch_to.frame("dash")
        try:
            framed = driver.execute_script(
                "return [location.href, document.querySelectorAll('#routes').length]"
            )
        finally:
            driver.switch_to.default_content()
        assert framed[1] == 0, framed
        assert not framed[0].startswith(base), framed

        # DNS rebinding: the attacker's name resolving to the admin port's address.
        driver.get(f"http://evil.test:{admin}/")
        assert "host_refused" in driver.page_source
        assert httpx.get(base + "/-/config", timeout=10).json()["reloads"] == {
            "ok": 0,
            "failed": 0,
        }


# Records each timer's delay as app.js asks for it (before the page's own scripts run).
RECORD_DELAYS = """window.__delays = [];
const setTimer = window.setTimeout;
window.setTimeout = function (f, delay, ...args) {
  window.__delays.push(String(delay));
  return setTimer(f, delay, ...args);
};"""


@pytest.mark.parametrize("asked", ["1", "0", "Infinity", "4294967297", "-Infinity", "1e400"])
def test_no_interval_in_a_link_gets_past_the_polling_floor(asked):
    """`?interval=1` from a link had an operator's tab poll the admin port (worker 0's event
    loop, shared with proxied traffic) hundreds of times a second; and a timer's delay is a
    32-bit integer: `?interval=Infinity` (0 ms) or 4294967297 (2**32 + 1, so 1 ms) passed
    `Math.max(200, ...)`. The delay app.js asks for is checked, not a rate."""

    async def data(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "generated_at": "-",
                "now": time.time(),
                "config": {"version": 1, "source": "-", "default": "legacy"},
                "routes": [],
                "upstreams": [],
                "reloads": [],
                "shadow_report_url": "/-/shadow",
            }
        )

    page = [r for r in dashboard_routes(lambda: None, None) if r.path != "/-/dashboard.json"]
    with dashboard_server([*page, web.get("/-/dashboard.json", data)]) as base, chromium() as d:
        d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_DELAYS})
        d.get(base + "/?interval=" + asked)
        delays = wait_until(
            lambda: d.execute_script("return window.__delays.length && window.__delays"),
            timeout=15,
            what="the first poll's timer",
        )
    assert all(200 <= float(delay) <= 2**31 - 1 for delay in delays), delays
