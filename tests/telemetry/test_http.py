"""The admin endpoints over a real socket: /metrics, the page, its assets, its JSON."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.config.model import TelemetryConfig
from proxy.telemetry import Telemetry
from proxy.telemetry.http import dashboard_routes, metrics_endpoint
from proxy.telemetry.metrics import MULTIPROC_ENV, samples_from_text
from tests.telemetry.helpers import make_config


async def test_admin_endpoints(monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    t = Telemetry(TelemetryConfig(), configure_logs=False)
    config = make_config()
    t.reconfigure(config)
    t.request_started()
    t.request_finished("customers", "extracted", "extracted", "GET", 200, 0.01, 1)

    async def metrics(_: web.Request) -> web.Response:
        body, ctype = metrics_endpoint(t)
        return web.Response(body=body, headers={"Content-Type": ctype})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_routes(dashboard_routes(lambda: config, t, breakers=lambda: {"legacy": "open"}))
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/metrics")) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await resp.text()
        got = [v for n, lab, v in samples_from_text(text) if n == "strangler_requests_total"]
        assert got == [1.0]
        async with http.get(server.make_url("/")) as resp:
            assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
            assert '<table id="routes">' in await resp.text()
        async with http.get(server.make_url("/dashboard/app.js")) as resp:
            assert resp.status == 200 and "javascript" in resp.headers["Content-Type"]
        for bad in ("/dashboard/..%2Fdashboard.py", "/dashboard/secret.txt"):
            async with http.get(server.make_url(bad)) as resp:
                assert resp.status == 404
        async with http.get(server.make_url("/-/dashboard.json")) as resp:
            data = await resp.json()
            assert resp.headers["Cache-Control"] == "no-store"
        assert data["routes"][0]["name"] == "customers"
        assert data["routes"][0]["sides"]["extracted"]["requests"] == 1
        assert {u["name"]: u["breaker"] for u in data["upstreams"]}["legacy"] == "open"
