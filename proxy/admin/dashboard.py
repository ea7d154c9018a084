"""The migration dashboard's data: the route table joined with live figures, as plain JSON.

Built from plain inputs (the config, metric samples, recent reloads) so it is tested without a
server; the admin app serves it at GET /-/dashboard.json and the static page in
`proxy/admin/dashboard/` polls it. Figures are cumulative since the process (or, with several
workers, the metrics directory) started; the page turns successive polls into rates.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

from proxy.config.model import Config, Route

SIDES = ("legacy", "extracted")  # who may serve a route: the traffic split
PROXY_SIDE = "proxy"  # answered by the proxy itself: rate limits, auth refusals and failures
BREAKER_NAMES = {0: "closed", 1: "half_open", 2: "open"}
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def asset(name: str) -> tuple[bytes, str]:
    """A dashboard file's bytes and content type; KeyError for anything not in `ASSETS`."""
    content_type = ASSETS[name]  # a fixed allow-list: no path from the request reaches the disk
    data = resources.files("proxy.admin").joinpath("dashboard", name).read_bytes()
    return data, content_type


def _match_text(route: Route) -> str:
    m = route.match
    if m.path:
        text = m.path
    elif m.prefix:
        text = "/*" if m.prefix == "/" else f"{m.prefix}/*"
    else:
        text = f"~{m.regex}"
    if m.host:
        text = m.host + text
    if m.methods:
        text = ",".join(sorted(m.methods)) + " " + text
    return text


def _rate(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def build_dashboard(
    config: Config,
    samples: Iterable[tuple[str, Mapping[str, str], float]],
    reloads: Sequence[Mapping[str, Any]] = (),
    *,
    now: float,
    shadow_report_url: str = "/-/shadow",
    breakers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON the dashboard page renders.

    `samples` are (name, labels, value) triples as `Telemetry.samples()` yields them; `reloads`
    are mappings with `at` (unix time), `ok`, and optionally `version`, `generation`, `trigger`,
    `error` (`Telemetry.reloads()` or `ReloadEvent.as_dict()`), in any order. `breakers`
    (upstream -> "closed" | "half_open" | "open"), when given, is this process's live view and
    wins over the `strangler_breaker_state` gauge.
    """
    gauge_breakers: dict[str, str] = {}
    requests: dict[str, dict[str, list[float]]] = {}
    shadow: dict[str, dict[str, float]] = {}
    dropped: dict[str, float] = {}
    fallbacks: dict[str, float] = {}
    attempts: dict[str, dict[str, float]] = {}
    for name, labels, value in samples:
        if name == "strangler_requests_total":
            per_side = requests.setdefault(labels.get("route", ""), {})
            counts = per_side.setdefault(labels.get("side", ""), [0.0, 0.0])
            counts[0] += value
            if labels.get("status_class") == "5xx":
                counts[1] += value
        elif name == "strangler_shadow_comparisons_total":
            by = shadow.setdefault(labels.get("route", ""), {})
            result = labels.get("result", "")
            by[result] = by.get(result, 0.0) + value
        elif name == "strangler_shadow_dropped_total":
            route = labels.get("route", "")
            dropped[route] = dropped.get(route, 0.0) + value
        elif name == "strangler_fallbacks_total":
            route = labels.get("route", "")
            fallbacks[route] = fallbacks.get(route, 0.0) + value
        elif name == "strangler_breaker_state":
            gauge_breakers[labels.get("upstream", "")] = BREAKER_NAMES.get(int(value), "unknown")
        elif name == "strangler_upstream_attempts_total":
            by = attempts.setdefault(labels.get("upstream", ""), {})
            result = labels.get("result", "")
            by[result] = by.get(result, 0.0) + value

    def route_row(name: str, route: Route | None) -> dict[str, Any]:
        per_side = requests.get(name, {})
        sides = {}
        for side in (*SIDES, PROXY_SIDE):
            total, errors = per_side.get(side, [0.0, 0.0])
            sides[side] = {
                "requests": int(total),
                "errors": int(errors),
                "error_rate": _rate(errors, total),
            }
        total = sum(s["requests"] for s in sides.values())
        served = sum(sides[side]["requests"] for side in SIDES)
        results = shadow.get(name, {})
        compared = sum(results.values())
        matched = results.get("match", 0.0)
        row: dict[str, Any] = {
            "name": name,
            "mode": route.mode if route else "legacy",
            "match": _match_text(route) if route else "*",
            "target": (route.target if route else None) or config.default,
            "canary_percent": route.canary.percent if route and route.mode == "canary" else None,
            "fallback": route.fallback if route else None,
            "acl": route.acl if route else None,
            "line": route.line if route else None,
            "requests": total,
            "sides": sides,
            "split": {side: _rate(sides[side]["requests"], served) for side in SIDES},
            "fallbacks": int(fallbacks.get(name, 0.0)),
            "shadow": {
                "compared": int(compared),
                "match": int(matched),
                "mismatch": int(results.get("mismatch", 0.0)),
                "noise": int(results.get("noise", 0.0)),
                "error": int(results.get("error", 0.0)),
                "dropped": int(dropped.get(name, 0.0)),
                # Noise is not a real difference: leave it out of the denominator.
                "match_rate": _rate(matched, compared - results.get("noise", 0.0)),
            },
        }
        return row

    rows = [route_row(r.name, r) for r in config.routes]
    if "default" in requests and config.route("default") is None:
        rows.append(route_row("default", None))

    upstreams = []
    for name, up in config.upstreams.items():
        by = attempts.get(name, {})
        total = sum(by.values())
        failed = total - by.get("ok", 0.0)
        upstreams.append(
            {
                "name": name,
                "url": up.url,
                "breaker": (breakers or {}).get(name) or gauge_breakers.get(name, "closed"),
                "attempts": int(total),
                "failed": int(failed),
                "failure_rate": _rate(failed, total),
            }
        )

    recent = []
    newest_first = sorted(reloads, key=lambda e: e.get("at") or 0.0, reverse=True)
    for entry in newest_first[:10]:
        at = entry.get("at")
        recent.append(
            {
                "at": _iso(at) if isinstance(at, int | float) else at,
                "ok": bool(entry.get("ok")),
                "version": entry.get("version"),
                "generation": entry.get("generation"),
                "trigger": entry.get("trigger"),
                "error": entry.get("error"),
            }
        )

    return {
        "generated_at": _iso(now),
        "now": now,
        "config": {"version": config.version, "source": config.source, "default": config.default},
        "routes": rows,
        "upstreams": upstreams,
        "reloads": recent,
        "shadow_report_url": shadow_report_url,
    }
