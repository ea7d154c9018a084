"""The `routes:` list -> `Route`s: match, mode, target, rewrite, canary, pins and shadow.

Each route is checked on its own (types, regexes, templates, references to upstreams and
translators) and then against the others: duplicate names, and routes that can never
match because an earlier, at-least-as-general route takes all their requests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import fields as dataclass_fields
from types import MappingProxyType

from yaml.nodes import MappingNode, Node, ScalarNode

from proxy.config.model import (
    MODES,
    CanaryPolicy,
    HeaderMatch,
    Match,
    RateLimit,
    Route,
    ShadowPolicy,
    TenantPins,
    TenantSource,
    Upstream,
)
from proxy.config.problems import Invalid, did_you_mean
from proxy.config.templates import check_path, rewrite_params, template_params
from proxy.config.values import (
    STANDARD_METHODS,
    check_field_path,
    check_header_value,
    check_hostname,
    check_name,
    check_token,
    normalize_field_path,
    normalize_host,
)
from proxy.config.yamlread import NULL, Reader, line_of
from proxy.filters.tenant import TENANT_RE
from proxy.routing import find_unreachable

ROUTE_KEYS = (
    "name",
    "match",
    "mode",
    "target",
    "rewrite",
    "acl",
    "fallback",
    "canary",
    "tenants",
    "shadow",
    "auth",
    "rate_limit",
    "response_headers",
)
MATCH_KEYS = ("path", "prefix", "regex", "methods", "headers", "host")
SHADOW_KEYS = tuple(f.name for f in dataclass_fields(ShadowPolicy))
# A key written one level too high in a route: where it belongs.
_ROUTE_ELSEWHERE = {
    **{k: "match" for k in MATCH_KEYS},
    **{k: "canary" for k in ("percent", "sticky")},
    **{k: "tenants" for k in ("extracted",)},
    **{k: "shadow" for k in SHADOW_KEYS if k not in ("headers",)},
}
# Route keys people reach for that live elsewhere, with where they do.
_ROUTE_HINTS = {
    **{
        k: "a route names the upstream that serves it with `target: NAME`"
        for k in ("upstream", "backend", "service")
    },
    **{
        k: f"{k} is set per upstream: under `upstreams: {{NAME: {{{k}: ...}}}}` for the target"
        for k in ("timeout", "retry", "breaker", "bulkhead")
    },
}
# Keys of the top-level `shadow:` section (one store, one memory budget per process) that a
# route's `shadow:` does not take.
_PROCESS_SHADOW_HINTS = {
    k: f"shadow.{k} is for the whole process: set it in the top-level `shadow:` section"
    for k in ("store", "retention_count", "retention_days", "max_memory")
}
TARGET_MODES = ("extracted", "canary", "shadow")
# Fields `response_headers` may not touch: the proxy frames answers and manages connections.
PROXY_OWNED_RESPONSE_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "trailer",
        "te",
        "proxy-connection",
        "x-request-id",
    }
)
NOISE_WORDS = ("off", "primary-twice")
STICKY_WORDS = ("tenant", "ip")
STICKY_KINDS = ("header", "cookie")
TENANT_FIX = "add a top-level `tenant: {header: X-Tenant-ID}` (or jwt_claim / host)"


class RouteReader:
    """Reads `routes:` against the upstreams, tenant source and translators already read."""

    def __init__(
        self,
        r: Reader,
        *,
        upstreams: Mapping[str, Upstream],
        declared: Collection[str],
        tenant: TenantSource | None,
        translators: Collection[str] | None,
        has_state: bool = False,
    ) -> None:
        self.r = r
        self.has_state = has_state  # a `state:` store to share rate-limit budgets through
        self.upstreams = upstreams
        self.declared = set(declared)  # every upstream key, even ones that failed validation
        self.tenant = tenant
        self.translators = translators
        self._names: dict[str, int] = {}  # route name -> line first defined

    def read_all(self, node: Node | None) -> tuple[Route, ...]:
        if node is None:
            return ()
        routes: list[Route] = []
        index: dict[int, int] = {}
        items = self.r.sequence(
            node, "routes", fix="start each route with `- ` (a list item): `- name: ...`"
        )
        for i, item in enumerate(items):
            route = self.read_one(i, item)
            if route is not None:
                index[id(route)] = i
                routes.append(route)
        self._unreachable(routes, index)
        return tuple(routes)

    def _unreachable(self, routes: list[Route], index: dict[int, int]) -> None:
        for hidden, covering in find_unreachable(routes):
            self.r.report(
                hidden.line,
                f"routes[{index[id(hidden)]}].match",
                f"this route can never match: route {covering.name!r} (line {covering.line}) "
                "is tried first and accepts every request this one would",
                "remove it, merge the two, or give it a method, header or host condition "
                f"that {covering.name!r} lacks",
            )

    # -- one route -----------------------------------------------------------------------

    def read_one(self, i: int, node: Node) -> Route | None:
        r = self.r
        field = f"routes[{i}]"
        if not isinstance(node, MappingNode):
            r.wrong(
                node,
                field,
                "a route (a mapping)",
                "start each route with `- name: ...` followed by `match:`",
            )
            return None
        name_node = _peek(node, "name")
        if isinstance(name_node, ScalarNode) and name_node.tag != NULL:
            r.route_names[i] = name_node.value  # so every problem below names the route
        fields = r.mapping(
            node,
            field,
            ROUTE_KEYS,
            required=("name", "match"),
            what="the route",
            elsewhere=_ROUTE_ELSEWHERE,
            hints=_ROUTE_HINTS,
        )
        if fields is None:
            return None
        name = r.text(
            fields.get("name"),
            f"{field}.name",
            check=check_name,
            fix="name it like customer-detail",
            required=True,
        )
        if name is not None:
            if name in self._names:
                r.report(
                    fields["name"],
                    f"{field}.name",
                    f"duplicate route name {name!r} (first at line {self._names[name]})",
                    "give each route a unique name; names key metrics and the admin API",
                )
            else:
                self._names[name] = line_of(node)
        matched = self._match(fields.get("match"), f"{field}.match")
        mode = r.text(fields.get("mode"), f"{field}.mode", "legacy", choices=MODES) or "legacy"
        target = self._target(fields, field, mode)
        rewrite = self._rewrite(fields.get("rewrite"), f"{field}.rewrite", matched)
        acl = self._acl(fields.get("acl"), f"{field}.acl")
        fallback = r.text(fields.get("fallback"), f"{field}.fallback", choices=("legacy",))
        canary = self._canary(fields.get("canary"), f"{field}.canary")
        tenants = self._pins(fields.get("tenants"), f"{field}.tenants")
        shadow = self._shadow(fields.get("shadow"), f"{field}.shadow", target)
        auth = r.boolean(fields.get("auth"), f"{field}.auth", True)
        rate_limit = self._rate_limit(fields.get("rate_limit"), f"{field}.rate_limit")
        response_headers = self._response_headers(
            fields.get("response_headers"), f"{field}.response_headers"
        )
        if tenants.extracted and target is None and "target" not in fields:
            r.report(
                fields["tenants"],
                f"{field}.tenants.extracted",
                "tenants pinned to extracted need a target to be sent to",
                "add `target: <upstream>` to the route",
            )
        if name is None or matched is None:
            return None
        return Route(
            name=name,
            match=matched[0],
            mode=mode,  # type: ignore[arg-type] - checked against MODES above
            target=target,
            rewrite=rewrite,
            acl=acl,
            fallback=fallback,
            canary=canary,
            tenants=tenants,
            shadow=shadow,
            auth=auth,
            rate_limit=rate_limit,
            response_headers=response_headers,
            line=line_of(node),
        )

    def _upstream_ref(self, node: Node, field: str, name: str) -> bool:
        if name in self.declared:
            return True
        names = sorted(self.declared)
        fix = did_you_mean(name, names) or (
            f"use one of: {', '.join(names)}" if names else "define it under upstreams:"
        )
        self.r.report(node, field, f"unknown upstream {name!r}", fix)
        return False

    def _target(self, fields: dict[str, Node], field: str, mode: str) -> str | None:
        node = fields.get("target")
        target = self.r.text(node, f"{field}.target", check=check_name)
        if target is not None and node is not None:
            self._upstream_ref(node, f"{field}.target", target)
        elif mode in TARGET_MODES:
            names = ", ".join(sorted(self.declared)) or "an extracted service"
            where = node if node is not None else fields.get("mode")
            self.r.report(
                where,
                f"{field}.target",
                f"mode {mode!r} needs a target",
                f"add `target: <upstream>` naming one of: {names}",
            )
        return target

    # -- match ---------------------------------------------------------------------------

    def _match(self, node: Node | None, field: str) -> tuple[Match, set[str]] | None:
        r = self.r
        if node is None:
            return None  # reported as a missing required key
        fields = r.mapping(node, field, MATCH_KEYS, what="match")
        if fields is None:
            return None
        kinds = [k for k in ("path", "prefix", "regex") if k in fields and not _null(fields[k])]
        ok = len(kinds) == 1
        if not kinds:
            r.report(
                node,
                field,
                "match needs one of path, prefix or regex",
                "add e.g. `prefix: /api/orders` or `path: /api/orders/{id}`",
            )
        elif len(kinds) > 1:
            r.report(
                fields[kinds[1]],
                f"{field}.{kinds[1]}",
                f"match has both {kinds[0]} and {kinds[1]}",
                "keep exactly one of path, prefix and regex (write two routes for both)",
            )
        path = prefix = regex = None
        params: set[str] = set()
        if "path" in kinds:
            path = r.text(fields["path"], f"{field}.path")
            try:
                check_path(path or "", "path")
                params = set(template_params(path or ""))
            except Invalid as exc:
                r.report(fields["path"], f"{field}.path", exc.message, exc.fix)
                ok = False
        if "prefix" in kinds:
            prefix = r.text(fields["prefix"], f"{field}.prefix")
            try:
                check_path(prefix or "", "prefix")
                if "{" in (prefix or "") or "}" in (prefix or ""):
                    raise Invalid(
                        "a prefix cannot contain {param}s",
                        "use path with a template, or regex with named groups",
                    )
            except Invalid as exc:
                r.report(fields["prefix"], f"{field}.prefix", exc.message, exc.fix)
                ok = False
            prefix = (prefix or "").rstrip("/") or "/"
        if "regex" in kinds:
            regex = r.text(fields["regex"], f"{field}.regex")
            compiled = self._compile(fields["regex"], f"{field}.regex", regex)
            if compiled is None:
                ok = False
            else:
                params = set(compiled.groupindex)
        methods = self._methods(fields.get("methods"), f"{field}.methods")
        headers = self._headers(fields.get("headers"), f"{field}.headers")
        host = r.text(
            fields.get("host"),
            f"{field}.host",
            check=_check_match_host,
            fix="write a host name such as shop.example (the port is ignored)",
        )
        if not ok or headers is None:
            return None
        match = Match(
            path=path,
            prefix=prefix,
            regex=regex,
            methods=methods,
            headers=headers,
            host=normalize_host(host) if host else None,
        )
        return match, params

    def _compile(self, node: Node, field: str, pattern: str | None) -> re.Pattern[str] | None:
        if pattern is None:
            return None
        try:
            return re.compile(pattern)
        except re.error as exc:
            where = f" at position {exc.pos}" if exc.pos is not None else ""
            # As the pattern reads, not its repr: `\d` shown as `\\d` looks like a quoting
            # mistake that is not there.
            shown = f"'{pattern}'" if pattern.isprintable() else repr(pattern)
            self.r.report(
                node,
                field,
                f"invalid regex {shown}: {exc.msg}{where}",
                "fix the pattern; in YAML, single-quote regexes so backslashes stay literal",
            )
            return None

    def _methods(self, node: Node | None, field: str) -> frozenset[str] | None:
        r = self.r
        if node is None or _null(node):
            return None
        items = r.texts(node, field)
        methods: set[str] = set()
        for value, item in items:
            method = value.upper()
            error = check_token(method)
            if not error and not method[0].isalpha():
                error = f"{value!r} is not a method name (in YAML, 5 is a number)"
            if error:
                r.report(item, field, f"invalid method: {error}", "write e.g. GET or POST")
                continue
            if method not in STANDARD_METHODS:
                guess = did_you_mean(method, STANDARD_METHODS)
                if guess:
                    r.report(item, field, f"unknown method {value!r}", guess)
                    continue
            methods.add(method)
        if not items and not isinstance(node, ScalarNode):
            r.report(node, field, "empty methods list", "omit methods to match every method")
        return frozenset(methods) or None

    def _response_headers(
        self, node: Node | None, field: str
    ) -> tuple[tuple[str, str | None], ...]:
        """`{Name: value}` set on answers, `{Name: null}` removed; never a field the proxy
        frames or manages itself."""
        r = self.r
        if node is None or _null(node):
            return ()
        example = "write `response_headers: {X-Frame-Options: DENY, Server: null}`"
        entries = self._header_entries(node, field, example)
        out: list[tuple[str, str | None]] = []
        seen: set[str] = set()
        for name, (key_node, value_node) in (entries or {}).items():
            hfield = f"{field}.{name}"
            error = check_token(name)
            if error:
                r.report(key_node, hfield, f"invalid header name: {error}", "fix the name")
                continue
            if name.lower() in seen:
                r.report(
                    key_node,
                    hfield,
                    f"header {name!r} appears twice (names ignore case)",
                    "keep one value per header",
                )
                continue
            seen.add(name.lower())
            if name.lower() in PROXY_OWNED_RESPONSE_HEADERS:
                r.report(
                    key_node,
                    hfield,
                    f"{name} is set by the proxy (framing, connection management or the "
                    "request id)",
                    "remove it from response_headers",
                )
                continue
            if _null(value_node):
                out.append((name, None))
                continue
            value = r.text(value_node, hfield, check=check_header_value, fix="write a plain value")
            if value is not None:
                out.append((name, value))
        return tuple(out)

    def _header_entries(
        self, node: Node, field: str, example: str
    ) -> dict[str, tuple[Node, Node]] | None:
        """Header name -> (key node, value node); None, reported, when not a mapping."""
        if not isinstance(node, MappingNode):
            self.r.wrong(node, field, "a mapping of header name to value", example)
            return None
        return self.r.keyed(node, field)

    def _headers(self, node: Node | None, field: str) -> tuple[HeaderMatch, ...] | None:
        """None when something is wrong (the route is then not built)."""
        r = self.r
        if node is None or _null(node):
            return ()
        example = "write `headers: {X-Beta: \"1\"}` or `headers: {X-Beta: {regex: '.+'}}`"
        entries = self._header_entries(node, field, example)
        if entries is None:
            return None
        out: list[HeaderMatch] = []
        seen: set[str] = set()
        ok = True
        for name, (key_node, value_node) in entries.items():
            hfield = f"{field}.{name}"
            error = check_token(name)
            lowered = name.lower()
            if error:
                r.report(key_node, hfield, f"invalid header name: {error}", "fix the name")
                ok = False
                continue
            if lowered == "host":
                r.report(
                    key_node,
                    hfield,
                    "the Host header is matched by match.host",
                    "move it to `match: {host: ...}`",
                )
                ok = False
                continue
            if lowered in seen:
                r.report(
                    key_node,
                    hfield,
                    f"header {name!r} appears twice (names ignore case)",
                    "keep one condition per header",
                )
                ok = False
                continue
            seen.add(lowered)
            if isinstance(value_node, MappingNode):
                sub = r.mapping(value_node, hfield, ("regex",), required=("regex",))
                pattern = r.text(sub.get("regex"), f"{hfield}.regex") if sub else None
                if (
                    pattern is None
                    or self._compile(sub["regex"], f"{hfield}.regex", pattern) is None
                ):
                    ok = False
                    continue
                out.append(HeaderMatch(name=lowered, regex=pattern))
            elif _null(value_node):
                r.report(
                    value_node,
                    hfield,
                    "expected a value, got nothing (null)",
                    "give the exact value, or {regex: '.+'} to require the header",
                )
                ok = False
            else:
                value = r.text(value_node, hfield)
                if value is None:
                    ok = False
                    continue
                out.append(HeaderMatch(name=lowered, value=value))
        return tuple(out) if ok else None

    def _rewrite(
        self, node: Node | None, field: str, matched: tuple[Match, set[str]] | None
    ) -> str | None:
        r = self.r
        rewrite = r.text(node, field)
        if rewrite is None or node is None:
            return None
        try:
            check_path(rewrite, "rewrite")
            names = rewrite_params(rewrite)
        except Invalid as exc:
            r.report(node, field, exc.message, exc.fix)
            return None
        if matched is None:
            return rewrite  # the match is already reported; params cannot be checked
        produced = matched[1]
        for name in names:
            if name not in produced:
                if produced:
                    fix = "the match provides: " + ", ".join(
                        "{" + p + "}" for p in sorted(produced)
                    )
                    guess = did_you_mean(name, produced)
                    fix = f"{guess} ({fix})" if guess else fix
                else:
                    fix = (
                        "match with a template like /items/{" + name + "} or a regex with "
                        f"a named group (?P<{name}>...)"
                    )
                r.report(
                    node, field, f"rewrite uses {{{name}}}, which the match does not produce", fix
                )
        return rewrite

    def _acl(self, node: Node | None, field: str) -> str | None:
        acl = self.r.text(node, field, check=check_name)
        if acl is None or node is None or self.translators is None:
            return acl
        if acl not in self.translators:
            known = sorted(self.translators)
            fix = did_you_mean(acl, known) or (
                f"use one of: {', '.join(known)}" if known else "no translators are installed"
            )
            self.r.report(node, field, f"unknown translator {acl!r}", fix)
        return acl

    # -- canary, pins, shadow --------------------------------------------------------------

    def _canary(self, node: Node | None, field: str) -> CanaryPolicy:
        r = self.r
        if node is None:
            return CanaryPolicy()
        fields = r.mapping(node, field, ("percent", "sticky"))
        if fields is None:
            return CanaryPolicy()
        percent = r.number(
            fields.get("percent"), f"{field}.percent", 0.0, lo=0, hi=100, unit=" (a percentage)"
        )
        sticky = r.text(
            fields.get("sticky"),
            f"{field}.sticky",
            check=_check_sticky,
            fix="use header:NAME, cookie:NAME, tenant or ip",
        )
        if sticky is not None and sticky.startswith("header:"):
            sticky = "header:" + sticky[len("header:") :].lower()
        if sticky == "tenant" and self.tenant is None:
            r.report(
                fields["sticky"],
                f"{field}.sticky",
                "sticky: tenant needs to know where the tenant id comes from",
                TENANT_FIX,
            )
        return CanaryPolicy(percent=percent or 0.0, sticky=sticky)

    def _rate_limit(self, node: Node | None, field: str) -> RateLimit | None:
        r = self.r
        if node is None or (isinstance(node, ScalarNode) and node.tag.endswith(":null")):
            return None
        fields = r.mapping(
            node, field, ("requests", "per", "burst", "key", "scope"), required=("requests",)
        )
        if fields is None or "requests" not in fields:
            return None
        requests = r.integer(fields["requests"], f"{field}.requests", 0, lo=1, hi=10_000_000)
        per = r.number(fields.get("per"), f"{field}.per", 1.0, lo=0, hi=86_400, lo_open=True,
                       unit=" (seconds)")  # fmt: skip
        burst = r.integer(fields.get("burst"), f"{field}.burst", requests, lo=1, hi=10_000_000)
        key = r.text(
            fields.get("key"),
            f"{field}.key",
            "ip",
            check=_check_limit_key,
            fix="use ip, tenant, route or header:NAME",
        )
        if key == "tenant" and self.tenant is None:
            r.report(fields["key"], f"{field}.key", "key: tenant needs a tenant source", TENANT_FIX)
        if key is not None and key.startswith("header:"):
            key = "header:" + key[len("header:") :].lower()
        scope = r.text(fields.get("scope"), f"{field}.scope", "local", choices=("local", "shared"))
        if scope == "shared" and not self.has_state:
            r.report(
                fields["scope"],
                f"{field}.scope",
                "shared budgets are kept in the `state:` Redis, and this file has no `state:`",
                'add `state: "redis://host:6379/0"` at the top of the file, or use scope: local',
            )
        if not requests:
            return None
        return RateLimit(requests=requests, per=float(per or 1.0), burst=burst or requests,
                         key=key or "ip", scope=scope or "local")  # fmt: skip

    def _pins(self, node: Node | None, field: str) -> TenantPins:
        r = self.r
        if node is None:
            return TenantPins()
        fields = r.mapping(node, field, ("extracted", "legacy"))
        if fields is None:
            return TenantPins()
        check, fix = self._pin_check(), "write the tenant id exactly as requests carry it"
        extracted = r.texts(fields.get("extracted"), f"{field}.extracted", check=check, fix=fix)
        legacy = r.texts(fields.get("legacy"), f"{field}.legacy", check=check, fix=fix)
        both = {t for t, _ in extracted} & {t for t, _ in legacy}
        for tenant, item in legacy:
            if tenant in both:
                r.report(
                    item,
                    f"{field}.legacy",
                    f"tenant {tenant!r} is pinned to both extracted and legacy",
                    "keep it in one of the two lists",
                )
        if (extracted or legacy) and self.tenant is None:
            r.report(
                node, field, "tenant pins need to know where the tenant id comes from", TENANT_FIX
            )
        return TenantPins(
            extracted=frozenset(t for t, _ in extracted) - both,
            legacy=frozenset(t for t, _ in legacy) - both,
        )

    def _pin_check(self) -> Callable[[str], str | None]:
        """A pinned tenant the proxy can never read from a request would silently pin no
        one (`big corp`, or `BigCorp` when the tenant is a lower-case host label)."""
        from_host = self.tenant is not None and self.tenant.host is not None

        def check(text: str) -> str | None:
            if not TENANT_RE.fullmatch(text):
                return (
                    f"tenant {text!r} can never match: a tenant id is 1-64 letters, digits, "
                    "'.', '_' or '-', starting with a letter or digit (anything else is read "
                    "as no tenant)"
                )
            if from_host and not HOST_TENANT_RE.fullmatch(text):
                return (
                    f"tenant {text!r} can never match: tenant.host reads one lower-case DNS "
                    f"label from the Host name (letters, digits and '-'), such as {_label(text)!r}"
                )
            return None

        return check

    def _shadow(self, node: Node | None, field: str, target: str | None) -> ShadowPolicy:
        r = self.r
        default = ShadowPolicy()
        if node is None:
            return default
        f = r.mapping(node, field, SHADOW_KEYS, hints=_PROCESS_SHADOW_HINTS)
        if f is None:
            return default
        noise = r.text(f.get("noise"), f"{field}.noise", "off") or "off"
        if noise not in NOISE_WORDS:
            if noise not in self.declared:
                choices = [*NOISE_WORDS, *sorted(self.declared)]
                r.report(
                    f["noise"],
                    f"{field}.noise",
                    f"unknown noise source {noise!r}",
                    did_you_mean(noise, choices)
                    or "use off, primary-twice or the name of a second legacy upstream",
                )
                noise = "off"
            elif noise == target:
                r.report(
                    f["noise"],
                    f"{field}.noise",
                    "noise must come from a second copy of the primary, not the candidate",
                    "use primary-twice or another legacy upstream",
                )
                noise = "off"
        headers: list[str] | None = None if f.get("headers") is None else []
        for value, _ in r.texts(f.get("headers"), f"{field}.headers", check=check_token):
            if headers is not None and value.lower() not in headers:
                headers.append(value.lower())
        return ShadowPolicy(
            sample=_num(
                r.number(
                    f.get("sample"),
                    f"{field}.sample",
                    default.sample,
                    lo=0,
                    hi=1,
                    unit=" (a fraction: 0.1 = 10%)",
                ),
                default.sample,
            ),
            noise=noise,
            ignore=self._paths(f.get("ignore"), f"{field}.ignore"),
            unsafe=r.text(f.get("unsafe"), f"{field}.unsafe", "skip", choices=("skip", "dry-run"))
            or "skip",
            max_body=r.integer(
                f.get("max_body"), f"{field}.max_body", default.max_body, lo=0, hi=1 << 30
            ),
            tolerance=_num(
                r.number(f.get("tolerance"), f"{field}.tolerance", default.tolerance, lo=0),
                default.tolerance,
            ),
            unordered=self._unordered(f.get("unordered"), f"{field}.unordered"),
            case_insensitive=self._paths(f.get("case_insensitive"), f"{field}.case_insensitive"),
            ignore_list_order=r.boolean(
                f.get("ignore_list_order"), f"{field}.ignore_list_order", default.ignore_list_order
            ),
            headers=None if headers is None else tuple(headers),
            concurrency=r.integer(
                f.get("concurrency"), f"{field}.concurrency", default.concurrency, lo=1, hi=10_000
            ),
            queue=r.integer(f.get("queue"), f"{field}.queue", default.queue, lo=0, hi=1_000_000),
        )

    def _paths(self, node: Node | None, field: str) -> tuple[str, ...]:
        out: list[str] = []
        for value, _ in self.r.texts(node, field, check=check_field_path):
            path = normalize_field_path(value)
            if path not in out:
                out.append(path)
        return tuple(out)

    def _unordered(self, node: Node | None, field: str) -> MappingProxyType[str, str]:
        r = self.r
        if node is None or _null(node):
            return MappingProxyType({})
        if not isinstance(node, MappingNode):
            r.report(
                node,
                field,
                "expected a mapping of array path to key field",
                "write `unordered: {$.items: id}`",
            )
            return MappingProxyType({})
        out: dict[str, str] = {}
        for key, (key_node, value_node) in (r.keyed(node, field) or {}).items():
            error = check_field_path(key)
            if error:
                r.report(key_node, f"{field}.{key}", error, None)
                continue
            value = r.text(
                value_node,
                f"{field}.{key}",
                check=_check_key_field,
                fix="name the field that identifies an item, e.g. id",
            )
            if value is None:
                if _null(value_node):
                    r.report(
                        value_node,
                        f"{field}.{key}",
                        "expected a key field, got nothing",
                        "name the field that identifies an item, e.g. id",
                    )
                continue
            out[normalize_field_path(key)] = value
        return MappingProxyType(out)


def _peek(node: MappingNode, key: str) -> Node | None:
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return value_node
    return None


def _null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == NULL


def _num(value: float | None, default: float) -> float:
    return default if value is None else value


def _check_key_field(text: str) -> str | None:
    if text and not any(ch.isspace() or ch in ".[]" for ch in text):
        return None
    return f"{text!r} is not a field name"


def _check_limit_key(text: str) -> str | None:
    if text in ("ip", "tenant", "route"):
        return None
    kind, sep, name = text.partition(":")
    if sep and kind == "header":
        return None if check_token(name) is None else f"{name!r} is not a valid header name"
    return f"unknown rate limit key {text!r}"


HOST_TENANT_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _label(text: str) -> str:
    """A tenant id as a Host name label could carry it (for the fix in a message)."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "acme"


def _check_sticky(text: str) -> str | None:
    if text in STICKY_WORDS:
        return None
    kind, sep, name = text.partition(":")
    if not sep and text in STICKY_KINDS:
        example = "header:X-User-Id" if text == "header" else "cookie:user_id"
        return f"{text!r} needs the {text}'s name after a colon, e.g. {example}"
    if sep and kind in STICKY_KINDS:
        if check_token(name) is None:
            return None
        return f"{name!r} is not a valid {kind} name"
    if sep:
        guess = did_you_mean(kind, STICKY_KINDS)
        return f"unknown sticky key kind {kind!r}" + (f" ({guess})" if guess else "")
    for other in (" ", "="):  # `header X-User-Id`, `cookie=uid`: the colon mistyped
        kind, sep, name = text.partition(other)
        if sep and kind.strip() in STICKY_KINDS and name.strip():
            return f"unknown sticky key {text!r} (did you mean '{kind.strip()}:{name.strip()}'?)"
    guess = did_you_mean(text, [*STICKY_WORDS, *STICKY_KINDS])
    return f"unknown sticky key {text!r}" + (f" ({guess})" if guess else "")


def _check_match_host(text: str) -> str | None:
    if any(ch in text for ch in "/@?#"):
        return f"{text!r} is not a valid host name (no scheme or path)"
    return check_hostname(normalize_host(text))
