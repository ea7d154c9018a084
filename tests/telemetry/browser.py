"""Headless Chromium for dashboard tests, and a real aiohttp server for the admin routes."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.support.procs import free_port, wait_http


@contextmanager
def chromium(*extra_args: str) -> Iterator[webdriver.Chrome]:
    """A headless Chromium, quit afterwards (its profile lives in a temporary directory).

    The page's console is kept (`driver.get_log("browser")`); `extra_args` are more switches,
    such as `--host-resolver-rules=MAP evil.test 127.0.0.1` for a cross-site page."""
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
            *extra_args,
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        try:
            yield driver
        finally:
            driver.quit()


@contextmanager
def dashboard_server(routes: list[web.RouteDef]) -> Iterator[str]:
    """A real aiohttp server on an ephemeral port (in a thread) serving `routes`; yields its URL."""
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def main() -> None:
        app = web.Application()
        app.router.add_routes(routes)
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
