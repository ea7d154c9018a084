"""The proxy's own HTML error pages, served on the application's origin, in headless Chromium."""

from __future__ import annotations

import httpx

from tests.telemetry.browser import chromium
from tests.telemetry.test_admin_browser_security import demo_config, serve


def test_error_pages_render_and_allow_nothing_to_run(tmp_path):
    config, port, admin = demo_config(tmp_path)
    base = f"http://127.0.0.1:{port}"
    with serve(config, admin), chromium() as driver:
        # The demo's monolith is not running here: a 502 from the proxy itself.
        driver.get(
            base + "/shop/<img src=x onerror=window.__xss=1>?q=</p><script>window.__xss=2</script>"
        )
        assert driver.find_element("tag name", "h1").text == "502 Bad Gateway"
        assert "upstream legacy unreachable" in driver.find_element("tag name", "body").text
        assert driver.execute_script("return window.__xss === undefined")
        # A refusal that quotes the request target.
        driver.get(base + "/a%2fb")
        assert driver.find_element("tag name", "h1").text == "400 Bad Request"
        assert "%2f" in driver.find_element("tag name", "body").text
        browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        for path in ("/shop/x", "/a%2fb"):
            resp = httpx.get(base + path, headers=browser, timeout=10)
            assert resp.headers["content-type"].startswith("text/html")
            assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
            assert resp.headers.get("Content-Security-Policy") == "default-src 'none'", path
