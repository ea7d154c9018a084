"""config_warnings: valid settings that have no effect or are risky are pointed out."""

from __future__ import annotations

from proxy.config.loader import config_warnings, parse_config

HEAD = """\
version: 1
upstreams:
  legacy: {url: "http://127.0.0.1:8000"}
  customers: {url: "http://127.0.0.1:8101"}
"""


def warnings_for(text: str) -> list[str]:
    return config_warnings(parse_config(text, "routes.yaml"))


def test_a_clean_table_has_no_warnings():
    text = HEAD + (
        "routes:\n  - name: c\n    match: {prefix: /api/customers}\n    mode: canary\n"
        "    target: customers\n    fallback: legacy\n    canary: {percent: 5}\n"
    )
    assert warnings_for(text) == []


def test_settings_without_effect_in_their_mode_are_named_with_line_and_route():
    text = HEAD + (
        "routes:\n"
        "  - name: stays\n    match: {prefix: /a}\n    target: customers\n"
        "    fallback: legacy\n    canary: {percent: 50}\n"
    )
    found = warnings_for(text)
    assert found == [
        "routes.yaml:6: route 'stays': fallback has no effect in mode 'legacy' "
        "(only canary and extracted fall back)",
        "routes.yaml:6: route 'stays': target has no effect in mode 'legacy' "
        "(nothing is sent to the target)",
        "routes.yaml:6: route 'stays': canary settings have no effect in mode 'legacy'",
    ]


def test_shadow_settings_outside_shadow_mode_and_zero_sample():
    text = HEAD + (
        "routes:\n"
        "  - name: e\n    match: {prefix: /e}\n    mode: extracted\n    target: customers\n"
        "    shadow: {sample: 0.5}\n"
        "  - name: s\n    match: {prefix: /s}\n    mode: shadow\n    target: customers\n"
        "    shadow: {sample: 0}\n"
    )
    found = warnings_for(text)
    assert any("'e': shadow settings have no effect in mode 'extracted'" in w for w in found)
    assert any("'s': shadow.sample is 0: nothing is shadowed" in w for w in found)


def test_target_equal_to_default_and_unused_upstreams():
    text = HEAD + (
        "  spare: {url: 'http://127.0.0.1:9'}\n"
        "routes:\n  - name: self\n    match: {prefix: /x}\n    mode: extracted\n"
        "    target: legacy\n"
    )
    found = warnings_for(text)
    assert any("'self': target 'legacy' is the default upstream" in w for w in found)
    assert "routes.yaml: upstreams.spare: not used by any route or as default" in found
    assert "routes.yaml: upstreams.customers: not used by any route or as default" in found


def test_ip_stickiness_without_trusted_proxies():
    route = (
        "routes:\n  - name: c\n    match: {prefix: /c}\n    mode: canary\n    target: customers\n"
        "    canary: {percent: 5, sticky: ip}\n"
    )
    assert any("list the balancer in trusted_proxies" in w for w in warnings_for(HEAD + route))
    assert warnings_for(HEAD + route + "trusted_proxies: [10.0.0.0/8]\n") == []


def test_admin_beyond_loopback_and_read_longer_than_total():
    text = (
        "version: 1\nupstreams:\n  legacy:\n    url: http://h:1\n"
        "    timeout: {read: 120, total: 60}\nadmin: {host: 0.0.0.0, port: 9001}\n"
    )
    found = warnings_for(text)
    assert any(
        w.startswith("routes.yaml: admin.host: the admin API listens on 0.0.0.0") for w in found
    )
    assert any("upstreams.legacy.timeout: read (120.0s) exceeds total (60.0s)" in w for w in found)


def test_a_listen_port_that_is_the_admin_apis_default_is_pointed_out():
    """`admin:` left out is 127.0.0.1:8081: a proxy moved to 8081 passed `strangler check`
    and then could not start (its admin API's bind blamed another process)."""
    text = "version: 1\nlisten: {port: 8081}\nupstreams: {legacy: 'http://h:1'}\n"
    found = [w for w in warnings_for(text) if "listen.port" in w]
    assert found == [
        "routes.yaml: listen.port: 8081 is also the admin API's port (admin is 127.0.0.1:8081 "
        "when not set), so `strangler serve` cannot start; add `admin: {port: 8082}` or pass "
        "--admin-port"
    ]
    assert not [w for w in warnings_for(text.replace("8081", "8080")) if "listen.port" in w]
    elsewhere = text.replace("{port: 8081}", "{host: 127.0.0.2, port: 8081}")
    assert not [w for w in warnings_for(elsewhere) if "listen.port" in w]


def test_a_total_timeout_alone_is_not_warned_about_the_default_read_timeout():
    """`total: 10` alone: the default read (30 s) still bounds a streamed upload's stalls,
    which `total` does not; nobody wrote it, so nothing to warn about."""
    text = "version: 1\nupstreams:\n  legacy: {url: 'http://h:1', timeout: {total: 10}}\n"
    config = parse_config(text, "routes.yaml")
    assert config.upstreams["legacy"].timeout.read == 30.0
    assert not [w for w in config_warnings(config) if "exceeds total" in w]


def test_regex_that_cannot_match_a_path():
    text = "version: 1\nupstreams: {legacy: 'http://h:1'}\nroutes:\n"
    text += "  - name: r\n    match: {regex: 'api/.*'}\n"
    assert warnings_for(text) == [
        "routes.yaml:4: route 'r': match.regex must match the whole path, which starts with "
        "'/'; this one starts with 'a' and can never match"
    ]


def test_target_on_a_legacy_route_with_extracted_pins_is_used():
    text = HEAD + (
        "tenant: {header: X-Tenant-ID}\n"
        "routes:\n  - name: early\n    match: {prefix: /c}\n    target: customers\n"
        "    rewrite: /v1/c\n    tenants: {extracted: [acme]}\n"
    )
    assert warnings_for(text) == []
    unpinned = text.replace("tenants: {extracted: [acme]}", "tenants: {legacy: [acme]}")
    assert warnings_for(unpinned) == [
        "routes.yaml:7: route 'early': target, rewrite have no effect in mode 'legacy' "
        "(nothing is sent to the target)"
    ]


def test_a_method_that_is_no_http_method_is_pointed_out():
    text = HEAD + (
        "routes:\n  - name: m\n    match: {prefix: /a, methods: [GET, ON, yes, PROPFIND]}\n"
        "    mode: extracted\n    target: customers\n"
    )
    assert warnings_for(text) == [
        "routes.yaml:6: route 'm': match.methods: ON, YES: not a standard HTTP method "
        "(a typo, or a YAML word like ON or YES?)"
    ]


def test_a_rate_limit_key_the_client_chooses_is_pointed_out_and_the_auth_upstream_is_used():
    text = HEAD + (
        "auth: {upstream: customers, path: /check, copy: [X-Auth-User]}\n"
        "routes:\n"
        "  - name: open\n    match: {prefix: /a}\n"
        "    rate_limit: {requests: 5, key: 'header:X-Api-Key'}\n"
        "  - name: vouched\n    match: {prefix: /b}\n    mode: extracted\n    target: customers\n"
        "    rate_limit: {requests: 5, key: 'header:X-Auth-User'}\n"
    )
    found = warnings_for(text)
    assert len(found) == 1 and "route 'open'" in found[0] and "fresh budget" in found[0]


def test_header_conditions_on_values_the_client_cannot_vouch_for():
    """Routing runs before the auth check and believes forwarding headers only from
    trusted proxies: conditions on those are pointed out."""
    text = HEAD + (
        "auth: {upstream: legacy, path: /check, copy: [X-Authenticated-Tenant]}\n"
        "routes:\n  - name: t\n    match: {prefix: /t, headers: {X-Authenticated-Tenant: acme}}\n"
        "    mode: extracted\n    target: customers\n"
        "  - name: s\n    match: {prefix: /s, headers: {X-Forwarded-Proto: https}}\n"
        "    mode: extracted\n    target: customers\n"
    )
    found = warnings_for(text)
    assert any(
        "'t': match.headers: x-authenticated-tenant is set by the auth check" in w for w in found
    ), found
    assert any(
        "'s': match.headers: x-forwarded-proto is only believed from trusted_proxies" in w
        for w in found
    ), found
    trusted = warnings_for(text + "trusted_proxies: [10.0.0.0/8]\n")
    assert not any("only believed from trusted_proxies" in w for w in trusted), trusted


def test_header_conditions_on_headers_the_proxy_never_forwards():
    text = HEAD + (
        "routes:\n  - name: k\n    match: {prefix: /k, headers: {Keep-Alive: '5'}}\n"
        "    mode: extracted\n    target: customers\n"
        "  - name: w\n    match: {prefix: /w, headers: {Upgrade: websocket}}\n"
        "    mode: extracted\n    target: customers\n"
    )
    found = warnings_for(text)
    assert any(
        "'k': match.headers: keep-alive is the proxy's to drop or set" in w for w in found
    ), found
    assert not any("'w'" in w for w in found), found


def test_a_canary_that_sends_nobody_to_the_target():
    canary = (
        "routes:\n  - name: c\n    match: {prefix: /c}\n    mode: canary\n    target: customers\n"
    )
    found = warnings_for(HEAD + canary)
    assert found == [
        "routes.yaml:6: route 'c': canary.percent is 0 (also when left out) and no tenant is "
        "pinned to extracted: nothing reaches the target; set canary.percent (say 5) or list "
        "tenants.extracted"
    ]
    staged = canary + "    canary: {percent: 0, sticky: tenant}\n"
    assert warnings_for(HEAD + "tenant: {header: X-Tenant-ID}\n" + staged) == []
    pinned = canary + "    tenants: {extracted: [acme]}\n"
    assert warnings_for(HEAD + "tenant: {header: X-Tenant-ID}\n" + pinned) == []
