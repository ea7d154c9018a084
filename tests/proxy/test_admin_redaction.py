"""The admin API shows the running proxy without what may be a secret, and says so when
something is off rather than answering empty."""

from __future__ import annotations

import httpx

from tests.proxy.conftest import base_config

ROUTES = """\
- name: partner
  match: {prefix: /partner, headers: {X-Api-Key: MATCHSECRET}}
  mode: extracted
  target: svc
"""
AUTH = """\
auth: {upstream: legacy, path: "/auth/check?client_secret=CHECKSECRET&realm=shop"}
"""


def test_config_view_masks_secret_values(start_proxy, upstreams):
    p = start_proxy(routes=ROUTES, extra=AUTH)
    view = httpx.get(p.admin + "/-/config").json()
    text = str(view)
    assert "MATCHSECRET" not in text and "CHECKSECRET" not in text
    assert view["config"]["auth"]["path"] == "/auth/check?client_secret=[REDACTED]&realm=shop"
    # A reload that fails on a secret-bearing value shows the error without the secret.
    broken = base_config(upstreams, p.port, p.admin_port, ROUTES, AUTH)
    broken = broken.replace('"/auth/check?', '"auth/check?api_key=RELOADSECRET&')
    p.write_config(broken)
    answer = httpx.post(p.admin + "/-/reload")
    assert answer.status_code == 422 and "auth.path" in answer.text
    assert "RELOADSECRET" not in answer.text
    view = httpx.get(p.admin + "/-/config").json()
    assert "auth.path" in view["last_reload_error"] and "RELOADSECRET" not in str(view)
    assert "RELOADSECRET" not in p.log.read_text()


def test_metrics_switched_off_is_a_404_not_an_empty_scrape(start_proxy, upstreams):
    p = start_proxy(extra="telemetry: {metrics: false}\n")
    off = httpx.get(p.admin + "/metrics")
    assert off.status_code == 404 and "telemetry.metrics" in off.text
    p.write_config(
        base_config(upstreams, p.port, p.admin_port, extra="telemetry: {metrics: true}\n")
    )
    assert httpx.post(p.admin + "/-/reload").status_code == 200
    on = httpx.get(p.admin + "/metrics")
    assert on.status_code == 200 and "strangler_requests_total" in on.text
