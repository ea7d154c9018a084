"""The monolith under gunicorn: real HTTP login with CSRF, the API, and its OTel spans."""

from __future__ import annotations

import re
import secrets

import httpx

from tests.support.world import legacy_headers, start_legacy


def test_browser_style_login_with_csrf_then_pages(legacy_url):
    with httpx.Client(base_url=legacy_url) as browser:
        assert browser.get("/").headers["location"].startswith("/accounts/login/")
        form = browser.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        forged = httpx.post(
            f"{legacy_url}/accounts/login/", data={"username": "admin", "password": "admin"}
        )
        assert forged.status_code == 403
        login = browser.post(
            "/accounts/login/",
            data={"username": "admin", "password": "admin", "csrfmiddlewaretoken": token},
            headers={"Referer": f"{legacy_url}/accounts/login/"},
        )
        assert (login.status_code, login.headers["location"]) == (302, "/")
        home = browser.get("/")
        assert home.status_code == 200 and 'id="tenant-initech"' in home.text
        assert browser.get("/orders/1/").status_code == 200
        assert browser.get("/admin/").status_code == 200


def test_api_over_http_and_health(legacy_url):
    health = httpx.get(f"{legacy_url}/health")
    assert health.json() == {"status": "ok", "db": "ok", "service": "legacy"}
    listing = httpx.get(
        f"{legacy_url}/api/customers", params={"page_size": 5}, headers=legacy_headers("globex")
    )
    assert listing.status_code == 200 and {c["tenant_id"] for c in listing.json()["results"]} == {
        "globex"
    }
    denied = httpx.get(
        f"{legacy_url}/api/customers", headers={**legacy_headers("acme"), "X-Tenant-ID": "globex"}
    )
    assert denied.json() == {
        "error": {"code": "FORBIDDEN", "message": "This token may not act for tenant 'globex'."}
    }


def test_django_spans_continue_the_callers_trace(tmp_path):
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    out = tmp_path / "spans.txt"
    with (
        out.open("w") as sink,
        start_legacy(tmp_path, env={"OTEL_EXPORTER": "console"}, stdout=sink) as url,
    ):
        r = httpx.get(
            f"{url}/api/customers/1",
            headers={**legacy_headers(), "traceparent": f"00-{trace_id}-{parent}-01"},
        )
        assert r.status_code == 200
    text = out.read_text()
    assert f'"trace_id": "0x{trace_id}"' in text and f'"parent_id": "0x{parent}"' in text
    assert '"kind": "SpanKind.SERVER"' in text
