"""Headless Chromium for dashboard tests, and a tiny real aiohttp app serving the assets."""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from proxy.admin.dashboard import ASSETS, asset
from tests.support.procs import free_port, wait_http


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """A headless Chromium, quit afterwards (its profile lives in a temporary directory)."""
    with tempfile.TemporaryDirectory(prefix="strangler-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,900",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(arg)
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        try:
            yield driver
        finally:
            driver.quit()


@contextmanager
def dashboard_server(payload: Callable[[], Any]) -> Iterator[str]:
    """Serve the dashboard like the admin port does, with `/-/dashboard.json` = `payload()`.

    Runs a real aiohttp server on an ephemeral port in a thread; yields its base URL.
    """
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def index(_: web.Request) -> web.Response:
        body, ctype = asset("index.html")
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound()
        body, ctype = asset(name)
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def data(_: web.Request) -> web.Response:
        return web.json_response(payload(), dumps=lambda o: json.dumps(o, default=str))

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", index)
        app.router.add_get("/dashboard/{name}", static)
        app.router.add_get("/-/dashboard.json", data)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        started.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(10)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/-/dashboard.json")
        yield base
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
