"""Every validation rule of routes.yaml: each names file, line, route, field and the fix."""

from __future__ import annotations

import pytest

from proxy.config.loader import parse_config
from proxy.config.problems import ConfigError, Problem

HEAD = """\
version: 1
upstreams:
  legacy: {url: "http://127.0.0.1:8000"}
  customers: {url: "http://127.0.0.1:8101"}
  catalog: {url: "http://127.0.0.1:8102"}
"""
TENANT = "tenant: {header: X-Tenant-ID}\n"


def problems_of(text: str, **kwargs) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "routes.yaml", **kwargs)
    return info.value.problems


def line_containing(text: str, needle: str) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(lines) == 1, f"needle {needle!r} must occur on exactly one line"
    return lines[0]


def only_problem(text: str, **kwargs) -> Problem:
    found = problems_of(text, **kwargs)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def routes(body: str, head: str = HEAD) -> str:
    return head + "routes:\n" + body


# (yaml, needle on the offending line, field, route, message part, fix part)
# fmt: off
CASES = [
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canary\n    target: custmers\n"),
        "target: custmers", "routes[0].target", "r", "unknown upstream 'custmers'",
        "did you mean 'customers'?", id="unknown-target",
    ),
    pytest.param(
        HEAD + "default: legasy\n", "default: legasy", "default", None,
        "unknown upstream 'legasy'", "did you mean 'legacy'?", id="unknown-default",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: shadow\n    target: catalog\n"
               "    shadow: {noise: legacy2}\n"),
        "noise: legacy2", "routes[0].shadow.noise", "r", "unknown noise source 'legacy2'",
        "did you mean 'legacy'?", id="unknown-noise",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: shadow\n    target: catalog\n"
               "    shadow: {noise: catalog}\n"),
        "noise: catalog", "routes[0].shadow.noise", "r", "not the candidate", "primary-twice",
        id="noise-is-candidate",
    ),
    pytest.param(
        HEAD + "listen: {host: 127.0.0.1, port: abc}\n", "port: abc", "listen.port", None,
        "expected a whole number, got 'abc'", "from 1 to 65535", id="port-not-a-number",
    ),
    pytest.param(
        HEAD + 'admin: {port: "8081"}\n', 'port: "8081"', "admin.port", None,
        "got the quoted string '8081'", "without quotes", id="port-quoted",
    ),
    pytest.param(
        HEAD + "listen: {port: 70000}\n", "70000", "listen.port", None, "70000 is out of range",
        "from 1 to 65535", id="port-out-of-range",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canary\n    target: customers\n"
               "    canary: {percent: 150}\n"),
        "percent: 150", "routes[0].canary.percent", "r", "150 is out of range", "from 0 to 100",
        id="percent-150",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: shadow\n    target: catalog\n"
               "    shadow: {sample: 2}\n"),
        "sample: 2", "routes[0].shadow.sample", "r", "2 is out of range", "from 0 to 1",
        id="sample-2",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n  - {name: r, match: {prefix: /b}}\n"),
        "prefix: /b", "routes[1].name", "r", "duplicate route name 'r' (first at line 7)",
        "unique name", id="duplicate-route-name",
    ),
    pytest.param(
        routes("  - name: r\n    match: {regex: '^/a/(?P<id>[0-9+$'}\n"),
        "regex:", "routes[0].match.regex", "r", "unterminated character set at position",
        "single-quote regexes", id="invalid-regex",
    ),
    pytest.param(
        routes("  - name: r\n    match:\n      prefix: /a\n      headers:\n"
               "        X-Beta: {regex: '(a'}\n"),
        "X-Beta", "routes[0].match.headers.X-Beta.regex", "r", "missing ), unterminated subpattern",
        "fix the pattern", id="invalid-header-regex",
    ),
    pytest.param(
        routes("  - name: r\n    match: {methods: [GET]}\n"),
        "methods: [GET]", "routes[0].match", "r", "match needs one of path, prefix or regex",
        "prefix: /api/orders", id="no-path-kind",
    ),
    pytest.param(
        routes("  - name: r\n    match:\n      path: /a\n      prefix: /b\n"),
        "prefix: /b", "routes[0].match.prefix", "r", "match has both path and prefix",
        "exactly one of path, prefix and regex", id="two-path-kinds",
    ),
    pytest.param(
        routes("  - name: r\n    match: {path: api/customers}\n"),
        "api/customers", "routes[0].match.path", "r", "path must start with '/'",
        "write '/api/customers'", id="path-without-slash",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: api}\n"),
        "prefix: api", "routes[0].match.prefix", "r", "prefix must start with '/'", "write '/api'",
        id="prefix-without-slash",
    ),
    pytest.param(
        routes("  - name: r\n    match: {path: '/a/x{id}'}\n"),
        "x{id}", "routes[0].match.path", "r", "must be the whole segment", "/items/{id}",
        id="template-partial-segment",
    ),
    pytest.param(
        routes("  - name: r\n    match: {path: '/a/{1id}'}\n"),
        "{1id}", "routes[0].match.path", "r", "'1id' is not a valid parameter name",
        "not starting with a digit", id="template-bad-identifier",
    ),
    pytest.param(
        routes("  - name: r\n    match: {path: '/a/{id}/b/{id}'}\n"),
        "/b/{id}", "routes[0].match.path", "r", "parameter 'id' appears twice", "its own name",
        id="template-duplicate-param",
    ),
    pytest.param(
        routes("  - name: r\n    match: {path: '/a/{id'}\n"),
        "{id'", "routes[0].match.path", "r", "unbalanced brace", "{name}", id="template-unbalanced",
    ),
    pytest.param(
        routes("  - name: r\n    match: {path: '/a/{id}'}\n    mode: extracted\n"
               "    target: customers\n    rewrite: '/v1/{cid}'\n"),
        "rewrite:", "routes[0].rewrite", "r", "rewrite uses {cid}, which the match does not produce",
        "did you mean 'id'?", id="rewrite-param-not-in-template",
    ),
    pytest.param(
        routes("  - name: r\n    match: {regex: '^/a/(?P<num>[0-9]+)$'}\n    mode: extracted\n"
               "    target: customers\n    rewrite: '/v1/{id}'\n"),
        "rewrite:", "routes[0].rewrite", "r", "rewrite uses {id}", "{num}",
        id="rewrite-param-not-in-regex",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: extracted\n"
               "    target: customers\n    rewrite: '/v1/{id}'\n"),
        "rewrite:", "routes[0].rewrite", "r", "rewrite uses {id}", "(?P<id>...)",
        id="rewrite-param-with-prefix",
    ),
    pytest.param(
        "version: 1\nupstreams:\n  legacy: {url: 'ftp://127.0.0.1:21'}\n", "ftp:",
        "upstreams.legacy.url", None, "scheme must be http or https, not 'ftp'",
        "http://127.0.0.1:8000", id="url-scheme",
    ),
    pytest.param(
        "version: 1\nupstreams:\n  legacy: {url: 'http://'}\n", "http:", "upstreams.legacy.url",
        None, "has no host", "http://127.0.0.1:8000", id="url-no-host",
    ),
    pytest.param(
        "version: 1\nupstreams:\n  legacy: {url: 'http://h:8000/x?a=1'}\n", "?a=1",
        "upstreams.legacy.url", None, "must not have a query string or fragment", "remove it",
        id="url-query",
    ),
    pytest.param(
        "version: 1\nupstreams:\n  legacy: {url: 'http://h:8000/#frag'}\n", "#frag",
        "upstreams.legacy.url", None, "must not have a query string or fragment", "remove it",
        id="url-fragment",
    ),
    pytest.param(
        "version: 1\nupstreams:\n  legacy: {url: 'http://u:secret@h:8000'}\n", "secret",
        "upstreams.legacy.url", None, "must not contain credentials", "secrets do not belong",
        id="url-credentials",
    ),
    pytest.param(
        "version: 1\nupstreams:\n  legacy: {url: 'http://h:99999'}\n", "99999",
        "upstreams.legacy.url", None, "invalid port", "from 1 to 65535", id="url-bad-port",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: extracted\n"),
        "mode: extracted", "routes[0].target", "r", "mode 'extracted' needs a target",
        "target: <upstream>", id="extracted-needs-target",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canary\n"),
        "mode: canary", "routes[0].target", "r", "mode 'canary' needs a target",
        "catalog, customers, legacy", id="canary-needs-target",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: shadow\n"),
        "mode: shadow", "routes[0].target", "r", "mode 'shadow' needs a target",
        "target: <upstream>", id="shadow-needs-target",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canry\n"),
        "mode: canry", "routes[0].mode", "r", "unknown value 'canry'", "did you mean 'canary'?",
        id="unknown-mode",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: extracted\n    target: customers\n"
               "    fallback: catalog\n"),
        "fallback: catalog", "routes[0].fallback", "r", "unknown value 'catalog'", "legacy",
        id="fallback-only-legacy",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canary\n    target: customers\n"
               "    canary: {sticky: 'session:abc'}\n", HEAD + TENANT),
        "session:abc", "routes[0].canary.sticky", "r", "unknown sticky key kind 'session'",
        "header:NAME, cookie:NAME, tenant or ip", id="sticky-unknown",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canary\n    target: customers\n"
               "    canary: {sticky: 'header X-User-Id'}\n"),
        "header X-User-Id", "routes[0].canary.sticky", "r", "did you mean 'header:X-User-Id'?",
        "header:NAME", id="sticky-colon-mistyped",
    ),
    pytest.param(
        HEAD + "routes:\n  name: r\n  match: {prefix: /a}\n", "routes:", "routes", None,
        "expected a list, got a mapping", "start each route with `- `", id="routes-not-a-list",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: extracted\n    target: customers\n"
               "    timeout: {total: 5}\n"),
        "timeout:", "routes[0].timeout", "r", "unknown key 'timeout'",
        "set per upstream: under `upstreams: {NAME: {timeout: ...}}`", id="timeout-on-a-route",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canary\n    target: customers\n"
               "    canary: {sticky: cookie}\n"),
        "sticky: cookie", "routes[0].canary.sticky", "r", "'cookie' needs the cookie's name",
        "cookie:NAME", id="sticky-cookie-without-name",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canary\n    target: customers\n"
               "    canary: {sticky: 'header:X User'}\n"),
        "X User", "routes[0].canary.sticky", "r", "'X User' is not a valid header name",
        "header:NAME", id="sticky-bad-header",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canary\n    target: customers\n"
               "    canary: {sticky: tenant}\n"),
        "sticky: tenant", "routes[0].canary.sticky", "r", "sticky: tenant needs to know",
        "tenant: {header: X-Tenant-ID}", id="sticky-tenant-without-source",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canary\n    target: customers\n"
               "    tenants:\n      extracted: [acme]\n"),
        "tenants:", "routes[0].tenants", "r", "tenant pins need to know",
        "tenant: {header: X-Tenant-ID}", id="pins-without-tenant-source",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canary\n    target: customers\n"
               "    tenants:\n      extracted: [acme, globex]\n      legacy: [globex]\n",
               HEAD + TENANT),
        "legacy: [globex]", "routes[0].tenants.legacy", "r",
        "tenant 'globex' is pinned to both extracted and legacy", "one of the two lists",
        id="pins-overlap",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canary\n    target: customers\n"
               "    tenants:\n      legacy: [acme, big corp]\n", HEAD + TENANT),
        "legacy: [acme, big corp]", "routes[0].tenants.legacy[1]", "r",
        "tenant 'big corp' can never match", "exactly as requests carry it",
        id="pin-not-a-tenant-id",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canary\n    target: customers\n"
               "    tenants: {extracted: BigCorp_EU}\n",
               HEAD + "tenant: {host: '{tenant}.shop.example'}\n"),
        "extracted: BigCorp_EU", "routes[0].tenants.extracted", "r",
        "(letters, digits and '-'), such as 'bigcorp-eu'", "exactly as requests carry it",
        id="pin-never-a-host-label",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    tenants: {extracted: [acme]}\n",
               HEAD + TENANT),
        "tenants:", "routes[0].tenants.extracted", "r", "need a target to be sent to",
        "add `target: <upstream>`", id="extracted-pins-without-target",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: shadow\n    target: catalog\n"
               "    shadow: {unsafe: always}\n"),
        "unsafe: always", "routes[0].shadow.unsafe", "r", "unknown value 'always'",
        "skip, dry-run", id="shadow-unsafe",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: shadow\n    target: catalog\n"
               "    shadow: {ignore: ['$.items[']}\n"),
        "$.items[", "routes[0].shadow.ignore[0]", "r", "is never closed", None,
        id="shadow-ignore-path",
    ),
    pytest.param(
        HEAD + "state: 'http://127.0.0.1:6379'\n", "state:", "state", None,
        "is not a redis:// or rediss:// URL", "redis://host:6379/0", id="state-not-redis",
    ),
    pytest.param(
        HEAD + "shadow: {store: 'postgres://db/x'}\n", "store:", "shadow.store", None,
        "neither sqlite:///<path> nor redis://<host>", "sqlite:///strangler-shadow.db",
        id="store-scheme",
    ),
    pytest.param(
        HEAD + "shadow: {store: 'sqlite:///:memory:'}\n", "store:", "shadow.store", None,
        "an in-memory store would lose every diff", "sqlite:///strangler-shadow.db",
        id="store-in-memory",
    ),
    pytest.param(
        HEAD + "trusted_proxies: [10.0.0.0/8, 10.1.2.3/16]\n", "trusted_proxies",
        "trusted_proxies[1]", None, "'10.1.2.3/16' has host bits set", "'10.1.0.0/16'",
        id="cidr-host-bits",
    ),
    pytest.param(
        HEAD + "trusted_proxies:\n  - 10.0.0.0/8\n  - not-a-network\n", "not-a-network",
        "trusted_proxies[1]", None, "is not a CIDR or IP address", "10.0.0.0/8", id="cidr-invalid",
    ),
    pytest.param(
        HEAD.replace("version: 1", "version: 2"), "version: 2", "version", None,
        "unsupported version 2", "version: 1", id="version-2",
    ),
    pytest.param(
        HEAD.replace("version: 1\n", "") + "routes: []\n", "upstreams:", "version", None,
        "missing required key 'version'", "add `version: 1`", id="version-missing",
    ),
    pytest.param(
        routes("  - name: r\n    mode: legacy\n"), "name: r", "routes[0].match", "r",
        "missing required key 'match'", "one of path, prefix or regex", id="match-missing",
    ),
    pytest.param(
        HEAD + "auth: {upstream: legacy}\n", "auth:", "auth.path", None,
        "missing required key 'path'", "add `path: /...`", id="auth-path-missing",
    ),
    pytest.param(
        HEAD.replace('"http://127.0.0.1:8101"', "localhost:8101"), "localhost:8101",
        "upstreams.customers.url", None, "'localhost:8101' is not an absolute URL",
        "http://localhost:8101", id="url-without-scheme",
    ),
    pytest.param(
        routes("  - name: r\n    match: {regex: '^/a/(\\d+$'}\n"), "regex:",
        "routes[0].match.regex", "r", "invalid regex '^/a/(\\d+$': missing ), unterminated",
        "single-quote regexes", id="invalid-regex-as-written",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a, methods: [GET, 'GE T']}\n"),
        "GE T", "routes[0].match.methods", "r", "invalid method: 'GE T' is not a valid HTTP token",
        "GET or POST", id="method-not-token",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a, methods: [GET, PSOT]}\n"),
        "PSOT", "routes[0].match.methods", "r", "unknown method 'PSOT'", "did you mean 'POST'?",
        id="method-typo",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a, methods: []}\n"),
        "methods: []", "routes[0].match.methods", "r", "empty methods list", "omit methods",
        id="methods-empty",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    canray: {percent: 5}\n"),
        "canray", "routes[0].canray", "r", "unknown key 'canray'", "did you mean 'canary'?",
        id="unknown-route-key",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    mode: canary\n    target: customers\n"
               "    percent: 5\n"),
        "percent: 5", "routes[0].percent", "r", "unknown key 'percent'",
        "it belongs under canary: write `canary: {percent: ...}`", id="key-one-level-too-high",
    ),
    pytest.param(
        HEAD + "store: 'sqlite:///x.db'\n", "store:", "store", None, "unknown key 'store'",
        "it belongs under shadow", id="top-key-belongs-in-section",
    ),
    pytest.param(
        HEAD + "upstream: {}\n", "upstream: {}", "upstream", None, "unknown key 'upstream'",
        "did you mean 'upstreams'?", id="unknown-top-key",
    ),
    pytest.param(
        "version: 1\nupstreams:\n  legacy:\n    url: http://h:1\n    retry: {retires: 3}\n",
        "retires", "upstreams.legacy.retry.retires", None, "unknown key 'retires'",
        "did you mean 'retries'?", id="unknown-retry-key",
    ),
    pytest.param(
        "version: 1\nupstreams:\n  legacy:\n    url: http://h:1\n    breaker: {failure_ratio: 0}\n",
        "failure_ratio", "upstreams.legacy.breaker.failure_ratio", None, "0 is out of range",
        "above 0 up to 1", id="breaker-ratio-zero",
    ),
    pytest.param(
        "version: 1\nupstreams:\n  legacy:\n    url: http://h:1\n"
        "    retry: {retry_on_status: [503, 200]}\n",
        "retry_on_status", "upstreams.legacy.retry.retry_on_status[1]", None, "200 is out of range",
        "from 400 to 599", id="retry-status-range",
    ),
    pytest.param(
        "version: 1\nupstreams:\n  legacy:\n    url: http://h:1\n    timeout: {connect: 0}\n",
        "connect: 0", "upstreams.legacy.timeout.connect", None, "0 is out of range", "above 0",
        id="timeout-zero",
    ),
    pytest.param(
        "version: 1\nupstreams:\n  legacy:\n    url: http://h:1\n"
        "    retry: {backoff_base: 1, backoff_max: 0.5}\n",
        "retry:", "upstreams.legacy.retry.backoff_max", None, "is below backoff_base",
        "at least backoff_base", id="backoff-max-below-base",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    shadow: {ignore_list_order: maybe}\n"),
        "maybe", "routes[0].shadow.ignore_list_order", "r", "expected true or false, got 'maybe'",
        "true or false", id="bool-wrong-type",
    ),
    pytest.param(
        routes("  - name: r\n    match: [prefix, /a]\n"), "match: [prefix", "routes[0].match", "r",
        "expected a mapping, got a list", "indented under it", id="match-is-a-list",
    ),
    pytest.param(
        HEAD + "routes: {name: r}\n", "routes: {name", "routes", None,
        "expected a list, got a mapping", "`- name: ...`", id="routes-is-a-mapping",
    ),
    pytest.param(
        routes("  - name: r\n    match:\n      prefix: /a\n      headers: {Host: x.example}\n"),
        "Host: x.example", "routes[0].match.headers.Host", "r", "matched by match.host",
        "match: {host: ...}", id="host-header-in-headers",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a, host: 'http://x.example'}\n"),
        "http://x.example", "routes[0].match.host", "r", "not a valid host name (no scheme",
        "shop.example", id="host-with-scheme",
    ),
    pytest.param(
        routes("  - name: 'bad name!'\n    match: {prefix: /a}\n"),
        "bad name", "routes[0].name", "bad name!", "invalid name 'bad name!'", "name it like customer-detail",
        id="route-name-charset",
    ),
    pytest.param(
        routes("  - name: r\n    match: {path: '/a//b'}\n"), "/a//b", "routes[0].match.path", "r",
        "empty segment", "'/a/b'", id="path-double-slash",
    ),
    pytest.param(
        routes("  - name: r\n    match: {path: '/a/%7Euser'}\n"), "%7E", "routes[0].match.path",
        "r", "could never match", "write '~' instead", id="path-escaped-unreserved",
    ),
    pytest.param(
        routes("  - name: r\n    match: {path: '/a?x=1'}\n"), "/a?x", "routes[0].match.path", "r",
        "must not contain a query string", "path only", id="path-query",
    ),
    pytest.param(
        HEAD + "listen: {port: 9000}\nadmin: {port: 9000}\n", "admin:", "admin.port", None,
        "port 9000 is also the listen port", "its own port", id="admin-equals-listen",
    ),
    pytest.param(
        HEAD + "listen: {host: 127.0.0.1, port: 9000}\nadmin: {host: localhost, port: 9000}\n",
        "admin:", "admin.port", None, "port 9000 is also the listen port", "its own port",
        id="admin-equals-listen-localhost",
    ),
    pytest.param(
        HEAD + "listen: {host: '::', port: 9000}\nadmin: {host: 127.0.0.1, port: 9000}\n",
        "admin:", "admin.port", None, "port 9000 is also the listen port", "its own port",
        id="admin-equals-listen-any-v6",
    ),
    pytest.param(
        HEAD + "tenant: {header: X-Tenant-ID, jwt_claim: tid}\n", "tenant:", "tenant", None,
        "set exactly one of header, jwt_claim, host", "X-Tenant-ID", id="tenant-two-sources",
    ),
    pytest.param(
        HEAD + "tenant: {host: 'shop.example'}\n", "tenant:", "tenant.host", None,
        "must contain {tenant} exactly once", "{tenant}.shop.example", id="tenant-host-pattern",
    ),
    pytest.param(
        HEAD + "telemetry: {traces: {exporter: jaeger}}\n", "jaeger",
        "telemetry.traces.exporter", None, "unknown value 'jaeger'", "otlp, console, none",
        id="telemetry-exporter",
    ),
    pytest.param(
        HEAD + "telemetry: {traces: {client_sampling: never}}\n", "never",
        "telemetry.traces.client_sampling", None, "unknown value 'never'", "follow, ignore",
        id="telemetry-client-sampling",
    ),
    pytest.param(
        HEAD + "limits: {max_headers: 0}\n", "max_headers", "limits.max_headers", None,
        "0 is out of range", "from 1 to 10000", id="limits-range",
    ),
    pytest.param(
        HEAD + "grace_period: -1\n", "grace_period", "grace_period", None, "-1 is out of range",
        "from 0 to 3600", id="grace-negative",
    ),
    pytest.param(
        HEAD + "  legacy: {url: 'http://127.0.0.1:9000'}\n", "9000", "upstreams.legacy", None,
        "duplicate key 'legacy' (first at line 3)", "only the last", id="duplicate-yaml-key",
    ),
    pytest.param(
        "version: 1\nupstreams:\n  legacy: {url: }\n", "url: }", "upstreams.legacy.url", None,
        "expected a value, got nothing (null)", "http://127.0.0.1:8000", id="url-null",
    ),
    pytest.param(
        routes("  - name:\n    match: {prefix: /a}\n"), "- name:", "routes[0].name", None,
        "expected a value, got nothing (null)", "customer-detail", id="route-name-null",
    ),
    pytest.param(
        HEAD + "tenant: {header: }\n", "tenant:", "tenant.header", None,
        "expected a value, got nothing (null)", "X-Tenant-ID", id="tenant-header-null",
    ),
    pytest.param(
        "version: 1\nupstreams:\n  legacy: {url: 'http://127.0.0.1:'}\n", "127.0.0.1:'",
        "upstreams.legacy.url", None, "has a ':' but no port after it", "add the port",
        id="url-colon-without-port",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a, methods: 5}\n"), "methods: 5",
        "routes[0].match.methods", "r", "'5' is not a method name", "GET or POST",
        id="method-a-number",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n    shadow: !!python/object:os.system {}\n"),
        "python/object", "routes[0].shadow", "r",
        "unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'", "remove the tag",
        id="python-tag-is-just-a-wrong-type",
    ),
    pytest.param(
        HEAD + 'grace_period: !!python/object/apply:os.system ["id"]\n', "grace_period",
        "grace_period", None, "unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'",
        "remove the tag", id="python-tag-on-a-list-is-named-not-a-wrong-type",
    ),
    pytest.param(
        HEAD + 'state: "redis://127.0.0.1:6379/0?prefx=app:"\n', "prefx", "state", None,
        "unknown option 'prefx' in 'redis://127.0.0.1:6379/0?prefx=app:' (did you mean "
        "'prefix'?)", None, id="state-url-unknown-option",
    ),
    pytest.param(
        HEAD + 'state: "redis://127.0.0.1:6379/0?socket_timeout=soon"\n', "soon", "state",
        None, "option socket_timeout='soon'", None, id="state-url-bad-option-value",
    ),
    pytest.param(
        HEAD + 'state: "redis://:ab/cdSECRET@127.0.0.1:6379/0"\n', "SECRET", "state", None,
        "holds a '/', '?' or '#' (or an option holds '@'): percent-encode them", None,
        id="state-url-password-with-slash",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n"
               "    rate_limit: {requests: 5, scope: shared}\n"),
        "scope: shared", "routes[0].rate_limit.scope", "r",
        "shared budgets are kept in the `state:` Redis", 'add `state: "redis://',
        id="shared-rate-limit-without-state",
    ),
    pytest.param(
        routes("  - name: r\n    match: {prefix: /a}\n"
               "    rate_limit: {requests: 5, scope: global}\n"),
        "scope: global", "routes[0].rate_limit.scope", "r", "unknown value 'global'", "local",
        id="rate-limit-scope-unknown",
    ),
]
# fmt: on


@pytest.mark.parametrize(("text", "needle", "field", "route", "message", "fix"), CASES)
def test_each_rule_names_line_route_field_and_fix(text, needle, field, route, message, fix):
    problem = only_problem(text)
    assert problem.file == "routes.yaml"
    assert problem.line == line_containing(text, needle), str(problem)
    assert problem.field == field, str(problem)
    assert problem.route == route, str(problem)
    assert message in problem.message, str(problem)
    if fix is not None:
        assert problem.fix is not None and fix in problem.fix, str(problem)
    rendered = str(problem)
    assert rendered.startswith(f"routes.yaml:{problem.line}: ")
    assert message in rendered
    if route is not None:
        assert f"route {route!r}: " in rendered


def test_the_documented_example_renders_exactly():
    text = routes(
        "  - name: customers-list\n    match: {path: /api/customers}\n"
        "  - name: customer-detail\n    match:\n      path: /api/customers/{id}\n"
        "      metods: [GET]\n"
    )
    problem = only_problem(text)
    line = line_containing(text, "metods")
    assert problem.field == "routes[1].match.metods"
    assert str(problem) == (
        f"routes.yaml:{line}: route 'customer-detail': match.metods: unknown key 'metods'; "
        "did you mean 'methods'?"
    )


def test_all_problems_are_reported_in_file_order_not_just_the_first():
    text = routes(
        "  - name: a\n    match: {path: /a, metods: [GET]}\n"
        "  - name: b\n    match: {prefix: /b}\n    mode: canary\n    target: nowhere\n"
        "  - name: c\n    match: {regex: '('}\n",
        HEAD.replace("port", "port") + "listen: {port: abc}\n",
    )
    found = problems_of(text)
    assert [p.field for p in found] == [
        "listen.port",
        "routes[0].match.metods",
        "routes[1].target",
        "routes[2].match.regex",
    ]
    assert [p.line for p in found] == sorted(p.line for p in found)
    message = str(ConfigError(found))
    assert message.startswith("routes.yaml: 4 problems\n")
    assert all(str(p) in message for p in found)


def test_unknown_key_without_a_close_match_lists_the_allowed_keys():
    problem = only_problem(routes("  - name: r\n    match: {prefix: /a, zzz: 1}\n"))
    assert problem.message == "unknown key 'zzz'"
    assert problem.fix == "allowed keys here: path, prefix, regex, methods, headers, host"


def test_acl_names_are_checked_only_when_translators_are_known():
    text = routes(
        "  - name: r\n    match: {prefix: /a}\n    mode: extracted\n    target: customers\n"
        "    acl: custmers\n"
    )
    assert parse_config(text).routes[0].acl == "custmers"
    problem = only_problem(text, translators={"customers", "catalog"})
    assert problem.field == "routes[0].acl"
    assert problem.line == line_containing(text, "acl: custmers")
    assert problem.message == "unknown translator 'custmers'"
    assert problem.fix == "did you mean 'customers'?"
    assert parse_config(text.replace("custmers", "customers"), translators={"customers"})


def test_an_unreachable_route_names_the_route_that_covers_it():
    text = routes(
        "  - name: first\n    match: {path: '/api/customers/{id}'}\n"
        "  - name: second\n    match: {path: '/api/customers/{cid}', methods: [GET]}\n"
        "  - name: third\n    match: {path: '/api/customers/{x}'}\n"
    )
    problem = only_problem(text)
    assert problem.route == "third"
    assert problem.field == "routes[2].match"
    assert problem.line == line_containing(text, "name: third")
    assert "route 'first' (line 7)" in problem.message
    assert "can never match" in problem.message


def test_conditioned_route_after_a_general_one_is_reachable():
    text = routes(
        "  - name: all\n    match: {prefix: /api}\n"
        "  - name: gets\n    match: {prefix: /api/, methods: [GET]}\n"
    )
    config = parse_config(text)
    assert [r.name for r in config.routes] == ["all", "gets"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "version: 1\nupstreams:\n  legacy: {url: http://h:1\nroutes: []\n",
            4,
            "YAML syntax error: expected ',' or '}'",
        ),
        (
            "version: 1\nupstreams:\n\tlegacy: {url: 'http://h:1'}\n",
            3,
            "YAML syntax error: found character '\\t' that cannot start any token",
        ),
        ("version: 1\n  upstreams: {}\n", 2, "YAML syntax error: mapping values are not allowed"),
        (
            "version: 1\n---\nversion: 1\n",
            2,
            "YAML syntax error: expected a single document in the stream, but found another document",
        ),
    ],
    ids=["unclosed-flow", "tab", "bad-indent", "two-documents"],
)
def test_yaml_syntax_errors_become_problems_with_a_line(text, line, message):
    problem = only_problem(text)
    assert problem.line == line
    assert problem.message.startswith(message), problem.message
    assert problem.fix


def test_tab_indentation_gets_a_specific_fix():
    problem = only_problem("version: 1\nupstreams:\n\tlegacy: {url: 'http://h:1'}\n")
    assert problem.fix == "indent with spaces; YAML does not allow tabs"


def test_empty_and_non_mapping_documents():
    assert only_problem("").message == "the file is empty"
    assert only_problem("# only a comment\n").line is None
    problem = only_problem("- a\n- b\n")
    assert problem.line == 1
    assert problem.message == "expected a mapping, got a list"


def test_an_invalid_upstream_is_not_reported_again_at_every_reference():
    text = routes(
        "  - name: r\n    match: {prefix: /a}\n    mode: extracted\n    target: customers\n",
        "version: 1\nupstreams:\n  legacy: {url: 'http://h:1'}\n  customers: {url: 'ftp://x'}\n",
    )
    problem = only_problem(text)
    assert problem.field == "upstreams.customers.url"


def test_default_legacy_must_exist_when_default_is_not_set():
    text = "version: 1\nupstreams:\n  monolith: {url: 'http://h:1'}\n"
    problem = only_problem(text)
    assert problem.field == "default"
    assert problem.line == 2
    assert "no upstream named 'legacy'" in problem.message
    assert "monolith" in (problem.fix or "")
    assert parse_config(text + "default: monolith\n").default == "monolith"


@pytest.mark.parametrize(
    "url",
    [
        "redis://:ab/cdSECRET@127.0.0.1:6379/0",
        "redis://user:p#wSECRET@127.0.0.1:6379/0",
        "redis://user:p?wSECRET@127.0.0.1:6379/0",
        "redis://:abSECRET@127.0.0.1:99999/0",
    ],
)
def test_a_redis_password_never_shows_whatever_it_holds(url):
    for problem in problems_of(HEAD + f'state: "{url}"\n'):
        assert "SECRET" not in str(problem) and "ab" not in problem.message, str(problem)


def test_passwords_in_urls_never_appear_in_messages():
    text = (
        HEAD + "state: 'redis://:hunter2@cache:6379/zero'\nshadow: {store: 'mysql://u:pw2@db/x'}\n"
    )
    found = problems_of(text)
    assert [p.field for p in found] == ["state", "shadow.store"]
    rendered = str(ConfigError(found))
    assert "hunter2" not in rendered and "pw2" not in rendered
    assert "redis://:***@cache:6379/zero" in rendered and "mysql://u:***@db/x" in rendered
    # The scheme forgotten, a password is one all the same.
    forgot = HEAD.replace('"http://127.0.0.1:8101"', "'u:pw3@svc:8101'")
    forgot += "state: ':hunter4@cache:6379/0'\nshadow: {store: 'u:pw5@cache:6379/1'}\n"
    rendered = str(ConfigError(problems_of(forgot)))
    assert not any(pw in rendered for pw in ("pw3", "hunter4", "pw5")), rendered
    assert "':***@cache:6379/0'" in rendered and "'u:***@svc:8101'" in rendered
    accepted = parse_config(HEAD + "state: 'rediss://:hunter2@cache:6380/1'\n")
    assert accepted.state == "rediss://:hunter2@cache:6380/1"


def test_a_secret_query_parameter_never_shows_in_a_url_without_its_scheme():
    # As with the scheme (`redis://cache:6379/0?password=***`): only the userinfo's
    # password was masked once the scheme was forgotten, the parameter's showed.
    forgot = HEAD.replace('"http://127.0.0.1:8101"', "'svc:8101/?token=pw6'")
    forgot += "state: 'cache:6379/0?password=hunter7'\nshadow: {store: 'db/x?secret=pw8'}\n"
    rendered = str(ConfigError(problems_of(forgot)))
    assert not any(pw in rendered for pw in ("pw6", "hunter7", "pw8")), rendered
    assert "'cache:6379/0?password=***'" in rendered and "svc:8101/?token=***" in rendered


def test_an_unusable_url_does_not_hide_the_upstreams_other_problems():
    text = (
        "version: 1\nupstreams:\n  legacy:\n    url: 'http://a:8000/x?q=1'\n"
        "    retry: {retries: 11}\n    breaker: {failure_ratio: 1.5}\n"
    )
    fields = [p.field for p in problems_of(text)]
    assert fields == ["upstreams.legacy.url", "upstreams.legacy.retry.retries",
                      "upstreams.legacy.breaker.failure_ratio"]  # fmt: skip


@pytest.mark.parametrize(
    ("written", "suggested"), [("1e3", "1.0e+3"), ("1.5e3", "1.5e+3"), ("5E-1", "5.0e-1")]
)
def test_exponent_notation_yaml_reads_as_text_gets_a_form_it_reads_as_a_number(written, suggested):
    import yaml

    problem = only_problem(
        f"version: 1\nupstreams: {{legacy: 'http://a'}}\ngrace_period: {written}\n"
    )
    assert f"write {suggested}" in str(problem)
    assert yaml.safe_load(f"x: {suggested}")["x"] == float(written)  # a number to YAML 1.1


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ("{upstream: legacy, path: /check, copy: [Authorization]}", "auth.copy[0]"),
        ("{upstream: legacy, path: /check, copy: [Transfer-Encoding]}", "auth.copy[0]"),
        ("{upstream: legacy, path: /check, send: [Host]}", "auth.send[0]"),
    ],
)
def test_auth_refuses_fields_the_proxy_owns(block, field):
    problem = only_problem(HEAD + f"auth: {block}\n")
    assert problem.field == field, str(problem)
