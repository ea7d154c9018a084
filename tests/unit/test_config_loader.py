"""routes.yaml -> Config: values, defaults, normalization, immutability, file handling."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest

from proxy.config import model
from proxy.config.loader import load_config, parse_config
from proxy.config.problems import ConfigError, Problem
from proxy.config.upstream_reader import BREAKER_SPEC, BULKHEAD_SPEC, RETRY_SPEC, TIMEOUT_SPEC
from proxy.config.values import resolve_store

FULL = """\
version: 1
listen: {host: 0.0.0.0, port: 9080}
admin: {host: 127.0.0.1, port: 9081}
upstreams:
  legacy:
    url: http://127.0.0.1:8000/
    timeout: {connect: 2, read: null, total: 90}
    host_header: Shop.Example
    retry: {retries: 2, backoff_base: 0.05, backoff_max: 1, budget_percent: 10,
            budget_min_concurrent: 5, retry_on_status: [503, 429]}
    breaker: {consecutive_failures: 3, failure_ratio: 0.25, window: 5, min_requests: 10,
              open_for: 15, half_open_probes: 2}
    bulkhead: {max_concurrent: 64, max_queued: 0, queue_timeout: 0.5}
  customers: https://Customers.Internal/api/
  catalog: {url: "http://[::1]:8102"}
  legacy2: {url: "http://127.0.0.1:8001"}
default: legacy
tenant: {header: X-Tenant-ID}
routes:
  - name: customers
    match:
      path: /api/customers/{id}
      methods: [get, Put]
      headers:
        X-Beta: "1"
        X-Client: {regex: 'web|ios'}
      host: Shop.Example:8080
    mode: canary
    target: customers
    rewrite: /v1/customers/{id}
    acl: customers
    fallback: legacy
    canary: {percent: 12.5, sticky: header:X-User-Id}
    tenants: {extracted: [acme, no], legacy: [globex]}
  - name: products
    match: {prefix: /api/products/}
    mode: shadow
    target: catalog
    shadow:
      sample: 0.25
      noise: legacy2
      ignore: [generated_at, "$.items[*].etag", "..trace_id"]
      unsafe: dry-run
      max_body: 4096
      tolerance: 0.01
      unordered: {results: prod_id}
      case_insensitive: [$.sku]
      ignore_list_order: true
      headers: [Content-Type, ETag]
      concurrency: 4
      queue: 8
  - name: orders-by-regex
    match: {regex: '^/api/orders/(?P<no>[0-9]+)$'}
    mode: extracted
    target: customers
    rewrite: /v1/orders/{no}
state: rediss://cache.internal:6380/2
shadow: {store: "sqlite:///diffs/shadow.db", retention_count: 500, retention_days: 1.5}
telemetry:
  traces: {exporter: otlp, endpoint: "http://127.0.0.1:4318/v1/traces", sample: 0.1}
  metrics: false
  log_format: text
  redact: [X-Api-Key, ssn]
trusted_proxies: [10.0.0.0/8, 192.168.1.7, "fd00::/8"]
limits: {max_request_line: 4096, max_header_size: 16384, max_headers: 50}
grace_period: 5
"""


@pytest.fixture(scope="module")
def config() -> model.Config:
    return parse_config(FULL, "full.yaml", base_dir=Path("/srv/strangler"))


def test_every_top_level_section_is_read(config):
    assert config.version == 1
    assert config.source == "full.yaml"
    assert config.listen == model.Endpoint("0.0.0.0", 9080)
    assert config.admin == model.Endpoint("127.0.0.1", 9081)
    assert config.default == "legacy"
    assert config.tenant == model.TenantSource(header="x-tenant-id")
    assert config.state == "rediss://cache.internal:6380/2"
    assert config.shadow == model.ShadowStoreConfig(
        store="sqlite:////srv/strangler/diffs/shadow.db", retention_count=500, retention_days=1.5
    )
    assert config.telemetry == model.TelemetryConfig(
        traces=model.TracesConfig("otlp", "http://127.0.0.1:4318/v1/traces", 0.1),
        metrics=False,
        log_format="text",
        redact=("X-Api-Key", "ssn"),
    )
    assert config.trusted_proxies == ("10.0.0.0/8", "192.168.1.7/32", "fd00::/8")
    assert config.limits == model.Limits(4096, 16384, 50)
    assert config.grace_period == 5.0


def test_upstream_url_parts_policies_and_defaults(config):
    legacy = config.upstreams["legacy"]
    assert (legacy.scheme, legacy.host, legacy.port, legacy.base_path) == (
        "http",
        "127.0.0.1",
        8000,
        "",
    )
    assert legacy.url == "http://127.0.0.1:8000"
    assert legacy.timeout == model.Timeouts(connect=2.0, read=None, total=90.0)
    assert legacy.host_header == "shop.example"
    assert legacy.retry == model.RetryPolicy(2, 0.05, 1.0, 10.0, 5, frozenset({503, 429}))
    assert legacy.breaker == model.BreakerPolicy(3, 0.25, 5.0, 10, 15.0, 2, "gateway")
    assert legacy.bulkhead == model.BulkheadPolicy(64, 0, 0.5)
    customers = config.upstreams["customers"]  # the `name: URL` shorthand
    assert (customers.scheme, customers.host, customers.port, customers.base_path) == (
        "https",
        "customers.internal",
        443,
        "/api",
    )
    assert customers.timeout == model.Timeouts() and customers.retry == model.RetryPolicy()
    # Not the default upstream: any 5xx counts, as Envoy's consecutive_5xx.
    assert customers.breaker == model.BreakerPolicy(failures="5xx")
    catalog = config.upstreams["catalog"]
    assert (catalog.host, catalog.port, catalog.url) == ("::1", 8102, "http://[::1]:8102")


def test_breaker_failures_default_by_role_and_can_be_set():
    text = (
        "version: 1\nupstreams:\n  legacy: {url: 'http://a', breaker: {failures: 5xx}}\n"
        "  svc: {url: 'http://b', breaker: {failures: gateway}}\n  other: http://c\n"
    )
    ups = parse_config(text).upstreams
    assert [ups[n].breaker.failures for n in ("legacy", "svc", "other")] == [
        "5xx",
        "gateway",
        "5xx",
    ]
    assert (
        parse_config("version: 1\nupstreams: {legacy: 'http://a'}\n")
        .upstreams["legacy"]
        .breaker.failures
        == "gateway"
    )


def test_default_ports_are_80_and_443():
    text = "version: 1\nupstreams:\n  legacy: http://a.example\n  b: https://b.example/x/y\n"
    ups = parse_config(text).upstreams
    assert (ups["legacy"].port, ups["b"].port, ups["b"].base_path) == (80, 443, "/x/y")


def test_route_match_is_normalized(config):
    route = config.route("customers")
    assert route is not None
    assert route.line == FULL.splitlines().index("  - name: customers") + 1
    m = route.match
    assert m.path == "/api/customers/{id}" and m.prefix is None and m.regex is None
    assert m.methods == frozenset({"GET", "PUT"})
    assert m.headers == (
        model.HeaderMatch("x-beta", value="1"),
        model.HeaderMatch("x-client", regex="web|ios"),
    )
    assert m.host == "shop.example"
    assert (route.mode, route.target, route.rewrite, route.acl, route.fallback) == (
        "canary",
        "customers",
        "/v1/customers/{id}",
        "customers",
        "legacy",
    )
    assert route.canary == model.CanaryPolicy(12.5, "header:x-user-id")
    # YAML 1.1 would read `no` as False; a tenant id is text.
    assert route.tenants == model.TenantPins(frozenset({"acme", "no"}), frozenset({"globex"}))


def test_prefix_loses_its_trailing_slash_and_slash_alone_stays():
    text = "version: 1\nupstreams: {legacy: 'http://h:1'}\nroutes:\n"
    text += "  - {name: a, match: {prefix: /api/products/}}\n  - {name: b, match: {prefix: /}}\n"
    routes = parse_config(text).routes
    assert [r.match.prefix for r in routes] == ["/api/products", "/"]


def test_shadow_policy_values_and_path_normalization(config):
    shadow = config.route("products").shadow
    assert shadow == model.ShadowPolicy(
        sample=0.25,
        noise="legacy2",
        ignore=("$.generated_at", "$.items[*].etag", "$..trace_id"),
        unsafe="dry-run",
        max_body=4096,
        tolerance=0.01,
        unordered=MappingProxyType({"$.results": "prod_id"}),
        case_insensitive=("$.sku",),
        ignore_list_order=True,
        headers=("content-type", "etag"),
        concurrency=4,
        queue=8,
    )


def test_regex_named_groups_feed_rewrite(config):
    route = config.route("orders-by-regex")
    assert route.match.regex == "^/api/orders/(?P<no>[0-9]+)$"
    assert route.rewrite == "/v1/orders/{no}"


def test_minimal_file_gets_model_defaults(tmp_path):
    config = parse_config(
        "version: 1\nupstreams:\n  legacy: {url: 'http://127.0.0.1:8000'}\n", base_dir=tmp_path
    )
    assert config.routes == ()
    assert config.listen == model.Endpoint() and config.admin == model.Endpoint(port=8081)
    assert config.tenant is None and config.state is None
    assert config.telemetry == model.TelemetryConfig() and config.limits == model.Limits()
    assert config.trusted_proxies == () and config.grace_period == 30.0
    assert config.shadow.store == f"sqlite:///{tmp_path.resolve()}/strangler-shadow.db"
    route_defaults = parse_config(
        "version: 1\nupstreams: {legacy: 'http://h:1'}\nroutes: [{name: r, match: {path: /x}}]\n"
    ).routes[0]
    assert route_defaults == model.Route(name="r", match=model.Match(path="/x"), line=3)


def test_config_is_deeply_immutable(config):
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.default = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.upstreams["x"] = config.upstreams["legacy"]  # type: ignore[index]
    with pytest.raises(TypeError):
        config.route("products").shadow.unordered["$.x"] = "id"  # type: ignore[index]
    assert isinstance(config.routes, tuple)
    assert isinstance(config.route("customers").match.methods, frozenset)
    hash(config.route("customers").match)  # usable as a dict key by the router


def test_policy_keys_are_exactly_the_model_fields():
    for spec, cls in (
        (TIMEOUT_SPEC, model.Timeouts),
        (RETRY_SPEC, model.RetryPolicy),
        (BREAKER_SPEC, model.BreakerPolicy),
        (BULKHEAD_SPEC, model.BulkheadPolicy),
    ):
        assert list(spec) == [f.name for f in dataclasses.fields(cls)]


def test_resolve_store():
    base = Path("/etc/strangler")
    assert resolve_store(None, base) == "sqlite:////etc/strangler/strangler-shadow.db"
    assert resolve_store("sqlite:///x.db", base) == "sqlite:////etc/strangler/x.db"
    assert resolve_store("sqlite:////var/x.db", base) == "sqlite:////var/x.db"
    assert resolve_store("redis://r:6379/1", base) == "redis://r:6379/1"


def test_load_config_resolves_relative_store_beside_the_file(tmp_path, monkeypatch):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    path = conf_dir / "routes.yaml"
    path.write_text(
        "version: 1\nupstreams: {legacy: 'http://h:1'}\nshadow: {store: 'sqlite:///d/s.db'}\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    config = load_config(Path("conf/routes.yaml"))
    assert config.shadow.store == f"sqlite:///{conf_dir.resolve()}/d/s.db"
    assert config.source == "conf/routes.yaml"


def test_load_config_problems_name_the_path_given(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nupstreams: {legacy: 'http://h:1'}\nroutez: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:3: routez: unknown key 'routez'; did you mean 'routes'?"


def test_load_config_missing_and_undecodable_files(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.problems[0].message == "file not found"
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"version: 1\n\xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(binary)
    assert "not UTF-8" in info.value.problems[0].message


def test_problem_renders_without_route_or_line():
    assert str(Problem("r.yaml", None, None, "", "the file is empty", "add version: 1")) == (
        "r.yaml: the file is empty; add version: 1"
    )
    assert (
        str(Problem("r.yaml", 4, None, "listen.port", "bad", None)) == "r.yaml:4: listen.port: bad"
    )
    unnamed = Problem("r.yaml", 9, None, "routes[3].match", "bad", None)
    assert str(unnamed) == "r.yaml:9: routes[3].match: bad"


def test_merge_keys_share_settings_and_override():
    text = """\
version: 1
upstreams:
  legacy: &base {url: "http://h:1", timeout: {connect: 1}}
  copy:
    <<: *base
    url: "http://h:2"
"""
    ups = parse_config(text).upstreams
    assert ups["copy"].port == 2 and ups["copy"].timeout.connect == 1.0


def test_top_level_x_keys_hold_shared_blocks_and_other_unknown_keys_stay_errors():
    text = (
        "version: 1\nx-defaults: &d {timeout: {total: 7.0}}\n"
        "upstreams:\n  legacy: {<<: *d, url: 'http://a'}\n"
    )
    assert parse_config(text).upstreams["legacy"].timeout.total == 7.0
    with pytest.raises(ConfigError, match="unknown key 'defaults'"):
        parse_config(text.replace("x-defaults", "defaults"))


def test_relative_store_paths_stay_beside_a_symlinked_routes_yaml(tmp_path):
    """A ConfigMap mounts `routes.yaml -> ..data/routes.yaml`, `..data` a link to a folder
    each update replaces (and deletes): the diff store must not move into that folder."""
    from proxy.config.loader import load_config
    from proxy.shadow.store import default_store_url, sqlite_path

    mount = tmp_path / "config"
    version = mount / "..2026_11_26_v1"
    version.mkdir(parents=True)
    (version / "routes.yaml").write_text(
        "version: 1\nupstreams: {legacy: {url: 'http://127.0.0.1:9'}}\n"
        "shadow: {store: 'sqlite:///diffs.db'}\n"
    )
    (mount / "..data").symlink_to(version.name)
    (mount / "routes.yaml").symlink_to("..data/routes.yaml")
    config = load_config(mount / "routes.yaml")
    assert sqlite_path(config.shadow.store or "") == mount / "diffs.db"
    assert default_store_url(config.source) == f"sqlite:///{mount / 'strangler-shadow.db'}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", 30.0), ("{websocket_heartbeat: 2.5}", 2.5), ("{websocket_heartbeat: null}", None)],
)
def test_websocket_heartbeat_is_seconds_or_null(value: str, expected: float | None) -> None:
    from proxy.config.loader import parse_config

    text = "version: 1\nupstreams: {legacy: 'http://h:1'}\ndefault: legacy\nroutes: []\n"
    config = parse_config(text + (f"limits: {value}\n" if value else ""))
    assert config.limits.websocket_heartbeat == expected


def test_websocket_heartbeat_of_zero_names_the_field_and_the_fix() -> None:
    from proxy.config.loader import ConfigError, parse_config

    text = "version: 1\nupstreams: {legacy: 'http://h:1'}\ndefault: legacy\nroutes: []\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text + "limits: {websocket_heartbeat: 0}\n")
    assert "limits.websocket_heartbeat" in str(caught.value)
    assert "or null" in str(caught.value)
