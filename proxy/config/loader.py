"""routes.yaml -> `Config`: the file format's contract, validated in one pass.

`parse_config` reads PyYAML's composed nodes (for line numbers), checks every section,
and either returns the frozen `Config` of `proxy.config.model` or raises one `ConfigError`
listing every problem in file order. Cross-references (a route's `target`, `default`,
`shadow.noise`, `acl`) are checked against what the same file defines, and
`proxy.routing.find_unreachable` flags routes an earlier route shadows completely.

The format is documented in docs/routes.md; the repository's routes.yaml is the demo.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from proxy.config.lint import config_warnings
from proxy.config.model import (
    JWT_LEEWAY,
    AuthCheck,
    Config,
    Endpoint,
    Limits,
    ShadowStoreConfig,
    TelemetryConfig,
    TenantSource,
    TracesConfig,
    Upstream,
    same_port,
)
from proxy.config.problems import ConfigError, Invalid, Problem, did_you_mean
from proxy.config.route_reader import RouteReader
from proxy.config.upstream_reader import Spec, read_policy, read_upstream
from proxy.config.values import (
    check_hostname,
    check_name,
    check_redis_url,
    check_store,
    check_token,
    parse_cidr,
    parse_http_url,
    resolve_store,
)
from proxy.config.yamlread import Reader, describe

__all__ = ["ConfigError", "Problem", "config_warnings", "load_config", "parse_config"]

TOP_KEYS = (
    "version",
    "listen",
    "admin",
    "upstreams",
    "default",
    "routes",
    "tenant",
    "state",
    "shadow",
    "telemetry",
    "trusted_proxies",
    "limits",
    "grace_period",
    "auth",
)
SUPPORTED_VERSION = 1
# A key written at the top that belongs in a section (or in each route).
_TOP_ELSEWHERE = {
    "port": "listen",
    "host": "listen",
    "store": "shadow",
    "retention_count": "shadow",
    "retention_days": "shadow",
    "max_memory": "shadow",
    "traces": "telemetry",
    "metrics": "telemetry",
    "log_format": "telemetry",
    "redact": "telemetry",
    "max_request_line": "limits",
    "max_header_size": "limits",
    "max_headers": "limits",
    "idle_timeout": "limits",
}
LIMITS_SPEC: Spec = {
    "max_request_line": ("int", 64, 1_048_576, False),
    "max_header_size": ("int", 64, 1_048_576, False),
    "max_headers": ("int", 1, 10_000, False),
    "max_header_total": ("int", 1024, 16 * 1024 * 1024, False),
    "idle_timeout": ("num", 0.1, 86_400, False),
    "websocket_message": ("int", 1024, 1 << 30, False),
    "websocket_heartbeat": ("num?", 0.1, 86_400, False),
}
_TENANT_LABEL = "{tenant}"
# `shadow.max_memory`: 64 KiB (small JSON answers only) to 64 GiB.
MIN_SHADOW_MEMORY, MAX_SHADOW_MEMORY = 64 * 1024, 64 * 1024**3


def load_config(
    path: str | os.PathLike[str], *, translators: Collection[str] | None = None
) -> Config:
    """Read and validate a routes.yaml; relative store paths resolve beside the file."""
    source = os.fspath(path)
    file = Path(source)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [
                Problem(
                    source,
                    None,
                    None,
                    "",
                    "file not found",
                    "check the path (`strangler check FILE`, `strangler serve -c FILE`)",
                )
            ]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [
                Problem(
                    source,
                    None,
                    None,
                    "",
                    f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                    "save the file as UTF-8",
                )
            ]
        ) from None
    except OSError as exc:
        raise ConfigError(
            [
                Problem(
                    source,
                    None,
                    None,
                    "",
                    f"cannot read: {exc.strerror}",
                    "check the path and its permissions",
                )
            ]
        ) from None
    # Not resolved: relative paths (the diff store) are beside the routes.yaml the user
    # named, also when it is a symlink into a directory a ConfigMap update swaps and deletes.
    return parse_config(text, source, base_dir=file.absolute().parent, translators=translators)


def parse_config(
    text: str,
    source: str = "routes.yaml",
    *,
    base_dir: Path | None = None,
    translators: Collection[str] | None = None,
) -> Config:
    """Validate routes.yaml text; `translators`, when given, are the known `acl` names."""
    root = _compose(text, source)
    reader = Reader(source)
    config = _TableReader(reader, base_dir or Path.cwd(), translators).read(root)
    if reader.problems or config is None:
        raise ConfigError(reader.problems)
    return config


_FAST_LOADER = getattr(yaml, "CSafeLoader", None)  # libyaml: ~10x faster on big tables


def _compose(text: str, source: str) -> Node | None:
    """YAML syntax errors become a Problem on the line PyYAML points at.

    libyaml composes the (valid) common case; a file it rejects is parsed again by the
    pure-Python parser, whose messages are the clearer ones and the same on every install.
    """
    if _FAST_LOADER is not None:
        try:
            return yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            pass
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            if not exc.context.startswith("while"):
                message = f"YAML syntax error: {exc.context}, {exc.problem}"
            elif exc.context_mark:
                message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        fix = "check the indentation and quoting on this line and the one before"
        if "\t" in message or "'\\t'" in message:
            fix = "indent with spaces; YAML does not allow tabs"
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem(source, line, None, "", message, fix)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            [Problem(source, None, None, "", f"YAML error: {exc}", "fix the file's encoding")]
        ) from None


class _TableReader:
    """Reads one document's top level, delegating upstreams and routes."""

    def __init__(self, reader: Reader, base_dir: Path, translators: Collection[str] | None) -> None:
        self.r = reader
        self.base_dir = base_dir
        self.translators = translators

    def read(self, root: Node | None) -> Config | None:
        r = self.r
        if root is None:
            r.report(
                None,
                "",
                "the file is empty",
                "start with `version: 1`, an `upstreams:` section and `routes:` "
                "(see docs/routes.md)",
            )
            return None
        top = r.mapping(
            root,
            "",
            TOP_KEYS,
            required=("version", "upstreams"),
            what="the file",
            elsewhere=_TOP_ELSEWHERE,
            extensions=True,
        )
        if top is None:
            return None
        version = self._version(top.get("version"))
        upstreams = self._upstreams(top.get("upstreams"))
        default = self._default(top.get("default"), top.get("upstreams"), upstreams)
        upstreams = _breaker_failures_resolved(upstreams, default)
        listen = self._endpoint(top.get("listen"), "listen", Endpoint())
        admin = self._endpoint(top.get("admin"), "admin", Endpoint(port=8081))
        # (`same_port`, as `serve` checks it: `localhost` is 127.0.0.1, and `::` covers all)
        if "admin" in top and same_port(listen, admin):
            r.report(
                top["admin"],
                "admin.port",
                f"port {admin.port} is also the listen port",
                "give the admin API its own port, e.g. listen port + 1",
            )
        tenant = self._tenant(top.get("tenant"))
        auth = self._auth(top.get("auth"), top.get("upstreams"))
        routes = RouteReader(
            r,
            upstreams=upstreams,
            declared=_declared_names(top.get("upstreams")),
            tenant=tenant,
            translators=self.translators,
            has_state="state" in top,
        ).read_all(top.get("routes"))
        state = r.text(
            top.get("state"),
            "state",
            check=check_redis_url,
            fix="write redis://host:6379/0 (or rediss:// for TLS)",
        )
        shadow = self._shadow_store(top.get("shadow"))
        telemetry = self._telemetry(top.get("telemetry"))
        trusted = self._trusted(top.get("trusted_proxies"))
        limits = self._limits(top.get("limits"))
        grace = r.number(
            top.get("grace_period"), "grace_period", 30.0, lo=0, hi=3600, unit=" (seconds)"
        )
        if version is None:
            return None
        return Config(
            version=version,
            upstreams=MappingProxyType(dict(upstreams)),
            routes=routes,
            default=default,
            listen=listen,
            admin=admin,
            tenant=tenant,
            auth=auth,
            state=state,
            shadow=shadow,
            telemetry=telemetry,
            trusted_proxies=trusted,
            limits=limits,
            grace_period=float(grace if grace is not None else 30.0),
            source=r.source,
        )

    def _version(self, node: Node | None) -> int | None:
        if node is None:
            return None  # reported as a missing required key
        fix = f"write `version: {SUPPORTED_VERSION}` (the only format this proxy reads)"
        if not (isinstance(node, ScalarNode) and node.tag.endswith(":int")):
            self.r.report(
                node, "version", f"expected {SUPPORTED_VERSION}, got {describe(node)}", fix
            )
            return None
        value = int(node.value) if node.value.isdigit() else -1
        if value != SUPPORTED_VERSION:
            self.r.report(node, "version", f"unsupported version {node.value}", fix)
            return None
        return value

    # -- upstreams ---------------------------------------------------------------------

    def _upstreams(self, node: Node | None) -> dict[str, Upstream]:
        r = self.r
        out: dict[str, Upstream] = {}
        if node is None:
            return out
        if not isinstance(node, MappingNode):
            r.report(
                node,
                "upstreams",
                f"expected a mapping of name -> upstream, got {describe(node)}",
                "write `upstreams:` then `  legacy: {url: ...}`",
            )
            return out
        entries = r.keyed(node, "upstreams") or {}
        if not entries:
            r.report(
                node,
                "upstreams",
                "no upstreams defined",
                "define at least the legacy monolith: `legacy: {url: http://...}`",
            )
        for name, (key_node, value) in entries.items():
            field = f"upstreams.{name}"
            error = check_name(name)
            if error:
                r.report(key_node, field, error, "rename the upstream")
                continue
            upstream = read_upstream(r, name, value, field)
            if upstream is not None:
                out[name] = upstream
        return out

    def _default(
        self, node: Node | None, upstreams_node: Node | None, upstreams: dict[str, Upstream]
    ) -> str:
        r = self.r
        name = r.text(node, "default", "legacy", check=check_name)
        if name is None:
            return "legacy"
        if upstreams and name not in _declared_names(upstreams_node):
            names = sorted(upstreams)
            if node is None:
                r.report(
                    upstreams_node,
                    "default",
                    "no upstream named 'legacy', the default when `default` is not set",
                    f"add `default: <name>` naming one of: {', '.join(names)}",
                )
            else:
                r.report(
                    node,
                    "default",
                    f"unknown upstream {name!r}",
                    did_you_mean(name, names) or f"use one of: {', '.join(names)}",
                )
        return name

    # -- listener, tenant, telemetry, ... ------------------------------------------------

    def _endpoint(self, node: Node | None, field: str, default: Endpoint) -> Endpoint:
        r = self.r
        if node is None:
            return default
        fields = r.mapping(node, field, ("host", "port"))
        if fields is None:
            return default
        host = r.text(
            fields.get("host"),
            f"{field}.host",
            default.host,
            check=check_hostname,
            fix="write an IP address such as 127.0.0.1 or 0.0.0.0",
        )
        port = r.integer(fields.get("port"), f"{field}.port", default.port, lo=1, hi=65535)
        return Endpoint(host=(host or default.host).lower(), port=port)

    def _auth(self, node: Node | None, upstreams_node: Node | None) -> AuthCheck | None:
        r = self.r
        if node is None or (isinstance(node, ScalarNode) and node.tag.endswith(":null")):
            return None
        fields = r.mapping(
            node, "auth", ("upstream", "path", "send", "copy"), required=("upstream", "path")
        )
        if fields is None:
            return None
        upstream = r.text(fields.get("upstream"), "auth.upstream", check=check_name, required=True)
        if upstream is not None and upstream not in _declared_names(upstreams_node):
            names = sorted(_declared_names(upstreams_node))
            r.report(
                fields["upstream"],
                "auth.upstream",
                f"unknown upstream {upstream!r}",
                did_you_mean(upstream, names) or f"use one of: {', '.join(names)}",
            )
            upstream = None
        path = r.text(
            fields.get("path"),
            "auth.path",
            check=_check_origin_path,
            required=True,
            fix="write the check's path, e.g. /api/auth/check",
        )
        send = r.texts(
            fields.get("send"), "auth.send", check=_check_sendable, fix="e.g. Authorization"
        )
        copy = r.texts(
            fields.get("copy"), "auth.copy", check=_check_copyable, fix="e.g. X-Auth-User"
        )
        if upstream is None or path is None:
            return None
        return AuthCheck(
            upstream=upstream,
            path=path,
            send=tuple(v.lower() for v, _ in send) if "send" in fields else AuthCheck.send,
            copy=tuple(v.lower() for v, _ in copy),
        )

    def _tenant(self, node: Node | None) -> TenantSource | None:
        r = self.r
        if node is None or (isinstance(node, ScalarNode) and node.tag.endswith(":null")):
            return None
        sources = ("header", "jwt_claim", "host")
        fields = r.mapping(
            node, "tenant", (*sources, "jwt_secret_env", "jwt_previous_secret_env", "jwt_leeway")
        )
        if fields is None:
            return None
        given = [k for k in sources if k in fields]
        if len(given) != 1:
            r.report(
                node,
                "tenant",
                "set exactly one of header, jwt_claim, host" if given else "no tenant source given",
                "e.g. `tenant: {header: X-Tenant-ID}`",
            )
            return None
        key = given[0]
        value_node = fields[key]

        def jwt_option(name: str, applies: bool, needs: str, example: str) -> Node | None:
            """The node of a JWT option when it applies; else None (absent, or reported)."""
            node = fields.get(name)
            if node is not None and not applies:
                r.report(
                    node,
                    f"tenant.{name}",
                    f"{name} only applies {needs}",
                    f"remove it, or use `tenant: {{jwt_claim: tid, {example}}}`",
                )
                return None
            return node

        def env_name(node: Node, name: str, holding: str) -> str | None:
            fix = f"the name of an environment variable holding {holding}"
            return r.text(node, f"tenant.{name}", check=check_token, required=True, fix=fix)

        verified = key == "jwt_claim" and "jwt_secret_env" in fields
        secret_env = previous_env = None
        leeway = JWT_LEEWAY
        node = jwt_option(
            "jwt_secret_env", key == "jwt_claim", "to a jwt_claim tenant source",
            "jwt_secret_env: NAME",
        )  # fmt: skip
        if node is not None:
            secret_env = env_name(node, "jwt_secret_env", "the HS256 secret")
        node = jwt_option(
            "jwt_previous_secret_env", verified, "beside jwt_secret_env",
            "jwt_secret_env: NAME, jwt_previous_secret_env: OLD_NAME",
        )  # fmt: skip
        if node is not None:
            previous_env = env_name(node, "jwt_previous_secret_env", "the previous HS256 secret")
        node = jwt_option(
            "jwt_leeway", verified,
            "to verified JWTs (exp and nbf are checked only with jwt_secret_env)",
            "jwt_secret_env: NAME, jwt_leeway: 60",
        )  # fmt: skip
        if node is not None:
            seconds = r.number(
                node,
                "tenant.jwt_leeway",
                JWT_LEEWAY,
                lo=0,
                hi=600,
                unit=" (seconds of clock skew allowed on exp and nbf)",
            )
            leeway = JWT_LEEWAY if seconds is None else seconds
        if key == "header":
            value = r.text(
                value_node,
                "tenant.header",
                check=check_token,
                required=True,
                fix="e.g. X-Tenant-ID",
            )
            return TenantSource(header=value.lower()) if value else None
        if key == "jwt_claim":
            value = r.text(
                value_node, "tenant.jwt_claim", check=_check_claim, required=True, fix="e.g. tid"
            )
            if not value:
                return None
            return TenantSource(
                jwt_claim=value,
                jwt_secret_env=secret_env,
                jwt_previous_secret_env=previous_env,
                jwt_leeway=leeway,
            )
        value = r.text(
            value_node,
            "tenant.host",
            check=_check_tenant_host,
            fix="write a host pattern like {tenant}.shop.example",
            required=True,
        )
        return TenantSource(host=value.lower()) if value else None

    def _shadow_store(self, node: Node | None) -> ShadowStoreConfig:
        r = self.r
        store: str | None = None
        defaults = ShadowStoreConfig()
        count, days = defaults.retention_count, defaults.retention_days
        max_memory = defaults.max_memory
        if node is not None:
            fields = r.mapping(
                node, "shadow", ("store", "retention_count", "retention_days", "max_memory")
            )
            if fields is not None:
                store = r.text(
                    fields.get("store"),
                    "shadow.store",
                    check=check_store,
                    fix="e.g. store: sqlite:///strangler-shadow.db",
                )
                count = r.integer(
                    fields.get("retention_count"), "shadow.retention_count", count, lo=1
                )
                days_value = r.number(
                    fields.get("retention_days"),
                    "shadow.retention_days",
                    days,
                    lo=0,
                    lo_open=True,
                    unit=" (days)",
                )
                days = days_value if days_value is not None else days
                max_memory = r.integer(
                    fields.get("max_memory"),
                    "shadow.max_memory",
                    max_memory,
                    lo=MIN_SHADOW_MEMORY,
                    hi=MAX_SHADOW_MEMORY,
                )
        return ShadowStoreConfig(
            store=resolve_store(store, self.base_dir.absolute()),
            retention_count=count,
            retention_days=days,
            max_memory=max_memory,
        )

    def _telemetry(self, node: Node | None) -> TelemetryConfig:
        r = self.r
        default = TelemetryConfig()
        if node is None:
            return default
        fields = r.mapping(node, "telemetry", ("traces", "metrics", "log_format", "redact"))
        if fields is None:
            return default
        traces = default.traces
        if "traces" in fields:
            tf = r.mapping(
                fields["traces"],
                "telemetry.traces",
                ("exporter", "endpoint", "sample", "client_sampling"),
            )
            if tf is not None:
                endpoint = r.text(
                    tf.get("endpoint"),
                    "telemetry.traces.endpoint",
                    check=_check_http_url,
                    fix="e.g. http://127.0.0.1:4318/v1/traces",
                )
                sample = r.number(tf.get("sample"), "telemetry.traces.sample", 1.0, lo=0, hi=1)
                traces = TracesConfig(
                    exporter=r.text(
                        tf.get("exporter"),
                        "telemetry.traces.exporter",
                        "none",
                        choices=("otlp", "console", "none"),
                    )
                    or "none",
                    endpoint=endpoint,
                    sample=1.0 if sample is None else sample,
                    client_sampling=r.text(
                        tf.get("client_sampling"),
                        "telemetry.traces.client_sampling",
                        "follow",
                        choices=("follow", "ignore"),
                    )
                    or "follow",
                )
        redact: list[str] = []
        for value, _ in r.texts(fields.get("redact"), "telemetry.redact", check=check_token):
            if value not in redact:
                redact.append(value)
        return TelemetryConfig(
            traces=traces,
            metrics=r.boolean(fields.get("metrics"), "telemetry.metrics", True),
            log_format=r.text(
                fields.get("log_format"), "telemetry.log_format", "json", choices=("json", "text")
            )
            or "json",
            redact=tuple(redact),
        )

    def _trusted(self, node: Node | None) -> tuple[str, ...]:
        out: list[str] = []
        for i, (value, item) in enumerate(self.r.texts(node, "trusted_proxies")):
            field = (
                f"trusted_proxies[{i}]" if not isinstance(node, ScalarNode) else "trusted_proxies"
            )
            try:
                network = parse_cidr(value)
            except Invalid as exc:
                self.r.report(item, field, exc.message, exc.fix)
                continue
            if network not in out:
                out.append(network)
        return tuple(out)

    def _limits(self, node: Node | None) -> Limits:
        return read_policy(self.r, node, "limits", Limits(), LIMITS_SPEC)


def _declared_names(upstreams_node: Node | None) -> set[str]:
    """Every key of `upstreams:`, even ones that failed validation, so a bad URL is not
    reported a second time as an unknown upstream at every route that names it."""
    if not isinstance(upstreams_node, MappingNode):
        return set()
    return {k.value for k, _ in upstreams_node.value if isinstance(k, ScalarNode)}


# Framing and routing fields are the proxy's to write; a check must not set or see them.
_NOT_AUTH_FIELDS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "expect",
    }
)


def _auth_field_problem(text: str, verb: str) -> str | None:
    problem = check_token(text)
    if problem is None and text.lower() in _NOT_AUTH_FIELDS:
        problem = f"{text} is framing or routing, which the proxy sets itself; it cannot be {verb}"
    return problem


def _check_sendable(text: str) -> str | None:
    return _auth_field_problem(text, "sent")


def _check_copyable(text: str) -> str | None:
    problem = _auth_field_problem(text, "copied")
    if problem is not None:
        return problem
    if text.lower() in ("authorization", "cookie", "x-request-id", "x-forwarded-for", "forwarded"):
        # copied names are removed from every client request: these would break clients
        return (
            f"{text} comes from clients and the proxy; copied, it would be stripped from "
            "every request: name a header of the check's own"
        )
    return None


def _check_origin_path(text: str) -> str | None:
    if text.startswith("/") and not any(c.isspace() or c == "#" for c in text):
        return None
    return f"{text!r} is not a path: it must start with '/' and hold no spaces or '#'"


def _check_claim(text: str) -> str | None:
    if text and not any(ch.isspace() for ch in text):
        return None
    return f"{text!r} is not a JWT claim name"


def _check_tenant_host(text: str) -> str | None:
    labels = text.lower().split(".")
    if labels.count(_TENANT_LABEL) != 1:
        return f"{text!r} must contain {_TENANT_LABEL} exactly once, as a whole label"
    rest = ".".join(label for label in labels if label != _TENANT_LABEL)
    if rest and check_hostname(rest):
        return f"{text!r} is not a valid host pattern"
    return None


def _check_http_url(text: str) -> str | None:
    try:
        parse_http_url(text)
    except Invalid as exc:
        return exc.message
    return None


def _breaker_failures_resolved(upstreams: dict[str, Upstream], default: str) -> dict[str, Upstream]:
    """Each upstream's `breaker.failures`, where not set: "gateway" for the default upstream
    (a client that finds a URL answering 500 must not be able to shut every legacy route for
    `open_for`; Envoy never ejects a cluster's last host either), "5xx" for the others
    (an extracted service that errors falls back to legacy or its canary share shrinks)."""
    out = {}
    for name, up in upstreams.items():
        if up.breaker.failures is None:
            failures = "gateway" if name == default else "5xx"
            up = replace(up, breaker=replace(up.breaker, failures=failures))
        out[name] = up
    return out
