"""`response_headers`: a route sets or removes fields on every answer an upstream gives, so an
extracted service's answers carry the monolith's security headers."""

from __future__ import annotations

import httpx
import pytest

ROUTES = """\
- name: svc
  match: {prefix: /svc}
  mode: extracted
  target: svc
  fallback: legacy
  response_headers: {X-Frame-Options: DENY, X-Content-Type-Options: nosniff, X-Upstream: null}
- name: plain
  match: {prefix: /plain}
  mode: extracted
  target: svc
"""


@pytest.mark.parametrize("lane", ["express", "aiohttp"])
def test_a_route_sets_and_removes_answer_fields_on_every_lane(start_proxy, lane):
    p = start_proxy(routes=ROUTES)

    def call(path: str) -> httpx.Response:
        if lane == "aiohttp":  # a chunked body takes the aiohttp lane
            return httpx.post(p.url + path, content=iter([b"hi"]))
        return httpx.get(p.url + path)

    answer = call("/svc/x")
    assert answer.status_code == 200 and answer.json()["server"] == "svc"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers.get_list("X-Content-Type-Options") == ["nosniff"]
    assert "X-Upstream" not in answer.headers  # the upstream sent it; the route removes it
    other = call("/plain/x")
    assert "X-Frame-Options" not in other.headers and other.headers["X-Upstream"] == "svc"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{Content-Length: '3'}", "Content-Length is set by the proxy"),
        ("{X-Request-ID: abc}", "X-Request-ID is set by the proxy"),
        ("{'Bad Name': x}", "invalid header name"),
        ('{X-Split: "a\\r\\nInjected: 1"}', "not a valid header value"),
        ("[X-Frame-Options]", "expected a mapping of header name to value"),
        ("{X-Frame-Options: DENY, x-frame-options: SAMEORIGIN}", "appears twice"),
        ("!!omap [{X-A: b}]", "unsupported YAML tag"),
    ],
)
def test_response_headers_the_proxy_owns_or_cannot_send_are_refused(block, message):
    from proxy.config.loader import parse_config
    from proxy.config.problems import ConfigError

    text = (
        "version: 1\nupstreams:\n  legacy: {url: 'http://127.0.0.1:8000'}\nroutes:\n"
        f"  - name: r\n    match: {{prefix: /a}}\n    response_headers: {block}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "routes.yaml")
    (problem,) = info.value.problems
    assert message in problem.message and problem.line == 7, str(problem)
    assert problem.field.startswith("routes[0].response_headers"), str(problem)
