"""The admin port's observability endpoints, as aiohttp route definitions (the I/O shell).

GET /metrics (Prometheus), GET / (the dashboard page), GET /dashboard/{file} (its assets) and
GET /-/dashboard.json (its data). The admin app adds these to its own routes; everything they
compute comes from `Telemetry` and the pure `proxy.admin.dashboard.build_dashboard`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from proxy.admin.dashboard import ASSETS, asset, build_dashboard
from proxy.config.model import Config
from proxy.telemetry.core import Telemetry

_NO_STORE = {"Cache-Control": "no-store"}


def metrics_endpoint(telemetry: Telemetry) -> tuple[bytes, str] | None:
    """Body and content type for GET /metrics (the shape `AdminContext.metrics` expects);
    None while `telemetry.metrics` is off (a reload may turn it on or off)."""
    if telemetry.metrics is None:
        return None
    return telemetry.metrics_text(), telemetry.content_type


def dashboard_routes(
    config: Callable[[], Config],
    telemetry: Telemetry,
    *,
    reloads: Callable[[], Iterable[Mapping[str, Any]]] | None = None,
    breakers: Callable[[], Mapping[str, str]] | None = None,
    shadow_report_url: str = "/-/shadow",
) -> list[web.RouteDef]:
    """Routes serving the dashboard; `config` returns the config in use right now.

    `reloads` defaults to the reloads reported through `Telemetry.reload_finished`;
    `breakers` (upstream -> state, this process's live view) defaults to the breaker gauge.
    """

    async def index(_: web.Request) -> web.Response:
        body, ctype = asset("index.html")
        return web.Response(body=body, headers={"Content-Type": ctype, **_NO_STORE})

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound(text=f"no dashboard file {name!r}\n")
        body, ctype = asset(name)
        return web.Response(body=body, headers={"Content-Type": ctype, **_NO_STORE})

    async def data(_: web.Request) -> web.Response:
        history = list(reloads()) if reloads is not None else telemetry.reloads()
        payload = build_dashboard(
            config(),
            telemetry.samples(),
            history,
            now=time.time(),
            shadow_report_url=shadow_report_url,
            breakers=breakers() if breakers is not None else None,
        )
        return web.Response(
            text=json.dumps(payload, default=str),
            headers={"Content-Type": "application/json", **_NO_STORE},
        )

    async def no_icon(_: web.Request) -> web.Response:
        # Browsers ask for it on their own; a 404 is an error in every dashboard console.
        return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})

    return [
        web.get("/", index),
        web.get("/dashboard/{name}", static),
        web.get("/-/dashboard.json", data),
        web.get("/favicon.ico", no_icon),
    ]
