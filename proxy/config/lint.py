"""Warnings for a valid config that probably does not do what its author meant.

These never stop a load (a half-migrated table is often deliberately odd); the CLI and the
admin API show them so a setting with no effect does not go unnoticed.
"""

from __future__ import annotations

import ipaddress

from proxy.config.model import CanaryPolicy, Config, Route, ShadowPolicy, Timeouts, same_port
from proxy.filters.headers import CLIENT_CLAIMS, FORWARDING, NEVER_FORWARDED


def config_warnings(config: Config) -> list[str]:
    """Human-readable warnings, each naming file, line and route like a `Problem`."""
    out: list[str] = []
    for route in config.routes:
        out.extend(
            f"{config.source}:{route.line}: route {route.name!r}: {message}"
            for message in _route_warnings(config, route)
        )
    used = {config.default}
    if config.auth is not None:
        used.add(config.auth.upstream)
    for route in config.routes:
        used.update(n for n in (route.target, route.shadow.noise) if n)
    for name in config.upstreams:
        if name not in used:
            out.append(f"{config.source}: upstreams.{name}: not used by any route or as default")
    for name, upstream in config.upstreams.items():
        t = upstream.timeout
        # Only a `read` someone wrote: the default (30 s) stays the stall limit of a streamed
        # upload, which `total` does not bound, even with a shorter `total`.
        if (
            t.read is not None
            and t.total is not None
            and t.read > t.total
            and t.read != Timeouts().read
        ):
            out.append(
                f"{config.source}: upstreams.{name}.timeout: read ({t.read}s) exceeds total "
                f"({t.total}s), so total is what limits a slow response"
            )
    if config.tenant is not None and config.tenant.jwt_claim and not config.tenant.jwt_secret_env:
        out.append(
            f"{config.source}: tenant.jwt_claim: the claim is read without checking the token's "
            "signature, so a client can name any tenant; add `jwt_secret_env: NAME` (HS256)"
        )
    if same_port(config.listen, config.admin):  # an `admin:` written so is an error already
        out.append(
            f"{config.source}: listen.port: {config.listen.port} is also the admin API's port "
            f"(admin is {config.admin.host}:{config.admin.port} when not set), so `strangler "
            f"serve` cannot start; add `admin: {{port: {_next_port(config.listen.port)}}}` "
            "or pass --admin-port"
        )
    if not _loopback(config.admin.host):
        out.append(
            f"{config.source}: admin.host: the admin API listens on {config.admin.host}, "
            "beyond this machine; it can change routing, so bind it to 127.0.0.1 or "
            "firewall it"
        )
    return out


# RFC 9110's methods, PATCH (RFC 5789) and WebDAV's (RFC 4918, 3253): anything else in a
# route's `methods` is more likely a typo or a YAML 1.1 boolean word (`ON`, `YES`).
KNOWN_METHODS = frozenset(
    [
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "CONNECT",
        "OPTIONS",
        "TRACE",
        "PATCH",
        "PROPFIND",
        "PROPPATCH",
        "MKCOL",
        "COPY",
        "MOVE",
        "LOCK",
        "UNLOCK",
        "REPORT",
        "SEARCH",
        "MKCALENDAR",
    ]
)


def _route_warnings(config: Config, route: Route) -> list[str]:
    out: list[str] = []
    mode = route.mode
    unusual = sorted(set(route.match.methods or ()) - KNOWN_METHODS)
    if unusual:
        out.append(
            f"match.methods: {', '.join(unusual)}: not a standard HTTP method (a typo, or a "
            "YAML word like ON or YES?)"
        )
    if route.fallback and mode not in ("canary", "extracted"):
        out.append(f"fallback has no effect in mode {mode!r} (only canary and extracted fall back)")
    limit = route.rate_limit
    if limit is not None and limit.key.startswith("header:"):
        name = limit.key[len("header:") :]
        if config.auth is None or name not in config.auth.copy or not route.auth:
            out.append(
                f"rate_limit.key: {name} comes from the client, who can send a new value "
                "with each request to get a fresh budget; key on a header the auth check "
                "vouches for (auth.copy), or on ip"
            )
    if limit is not None and limit.key == "tenant" and config.tenant and config.tenant.header:
        out.append(
            "rate_limit.key: tenant is read from a header the client sends: it can name "
            "another tenant and spend that tenant's budget; with `auth:`, checked requests "
            "are counted only once the check vouched for them"
        )
    if mode == "legacy" and not route.tenants.extracted:
        # Tenants pinned to `extracted` do reach the target even on a legacy route.
        unused = [k for k in ("target", "rewrite", "acl") if getattr(route, k)]
        if unused:
            out.append(
                f"{', '.join(unused)} {'has' if len(unused) == 1 else 'have'} no effect in mode "
                "'legacy' (nothing is sent to the target)"
            )
    elif mode != "legacy" and route.target == config.default:
        out.append(
            f"target {route.target!r} is the default upstream: mode {mode!r} sends requests "
            "to the same place either way"
        )
    if mode != "canary" and route.canary != CanaryPolicy():
        out.append(f"canary settings have no effect in mode {mode!r}")
    if mode != "shadow" and route.shadow != ShadowPolicy():
        out.append(f"shadow settings have no effect in mode {mode!r}")
    if mode == "canary" and route.canary == CanaryPolicy() and not route.tenants.extracted:
        # (A route staged with `canary: {percent: 0, sticky: ...}` is set up on purpose.)
        out.append(
            "canary.percent is 0 (also when left out) and no tenant is pinned to extracted: "
            "nothing reaches the target; set canary.percent (say 5) or list tenants.extracted"
        )
    if mode == "shadow" and route.shadow.sample == 0:
        out.append("shadow.sample is 0: nothing is shadowed")
    if route.canary.sticky == "ip" and mode == "canary" and not config.trusted_proxies:
        out.append(
            "canary.sticky: ip hashes the peer address; behind a load balancer every client "
            "shares one address, so list the balancer in trusted_proxies"
        )
    for cond in route.match.headers:
        if config.auth is not None and cond.name in config.auth.copy:
            out.append(
                f"match.headers: {cond.name} is set by the auth check (auth.copy), which runs "
                "after routing: the route would be chosen on the client's own value; route on "
                "the path, or on a header the client sends"
            )
        elif cond.name in NEVER_FORWARDED:
            out.append(
                f"match.headers: {cond.name} is the proxy's to drop or set (an upstream never "
                "gets the client's as sent), so routing does not see it: this condition never "
                "holds"
            )
        elif cond.name in FORWARDING | CLIENT_CLAIMS and not config.trusted_proxies:
            out.append(
                f"match.headers: {cond.name} is only believed from trusted_proxies (a client's "
                "own is replaced), and none is listed: this condition never holds"
            )
    regex = route.match.regex
    if regex is not None and regex.lstrip("^")[:1].isalnum():
        out.append(
            "match.regex must match the whole path, which starts with '/'; this one "
            f"starts with {regex.lstrip('^')[:1]!r} and can never match"
        )
    return out


def _next_port(port: int) -> int:
    return port + 1 if port < 65535 else port - 1


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
