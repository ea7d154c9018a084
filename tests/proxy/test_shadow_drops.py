"""Every shadow call not made is counted with its reason, the handler's own included."""

from __future__ import annotations

import httpx

from tests.support.procs import wait_until


def shadow_route(prefix: str) -> str:
    return f"""\
- name: shadowed
  match: {{prefix: {prefix}}}
  mode: shadow
  target: svc
  shadow: {{sample: 1.0}}
"""


def stats(proxy) -> dict:
    routes = httpx.get(proxy.admin + "/-/shadow").json()["routes"]
    return next((r for r in routes if r["route"] == "shadowed"), {})


def test_a_primary_answer_too_big_to_compare_is_a_counted_drop(start_proxy):
    proxy = start_proxy(routes=shadow_route("/bytes"))
    big = httpx.get(proxy.url + "/bytes?n=9000000&length=1", timeout=30)  # over 8 MiB
    assert big.status_code == 200 and len(big.content) == 9_000_000  # relayed all the same
    wait_until(
        lambda: stats(proxy).get("dropped", {}).get("primary_too_large") == 1,
        what="the drop to be counted",
    )


def test_with_auth_a_request_legacy_refuses_is_not_shadowed(start_proxy):
    """The service would never have been asked (the check refuses whom legacy refuses): its
    answer to an unauthenticated request is not compared, nor kept in the diff store."""
    auth = "auth: {upstream: legacy, path: /auth/check, send: [Authorization]}\n"
    proxy = start_proxy(routes=shadow_route("/status"), extra=auth)
    assert httpx.get(proxy.url + "/status/401").status_code == 401
    assert httpx.get(proxy.url + "/status/200").status_code == 200
    wait_until(lambda: stats(proxy).get("dropped", {}).get("unauthenticated") == 1, what="the drop")
    wait_until(lambda: stats(proxy).get("compared") == 1, what="the authenticated comparison")
