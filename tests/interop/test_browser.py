"""Headless Chromium through the proxy: br/gzip decoding, ranges, validators, EventSource
and WebSocket, all as a real browser speaks them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.interop.aio_app import PAYLOAD
from tests.interop.conftest import TEXT
from tests.telemetry.browser import chromium


def test_a_browser_page_works_through_the_proxy(stack):
    shutil.copyfile(Path(__file__).with_name("page.html"), stack.www / "page.html")
    with chromium() as driver:
        driver.get(stack.url + "/ng/page.html")
        text = WebDriverWait(driver, 15).until(
            lambda d: (t := d.find_element(By.ID, "out").text) != "pending" and t
        )
    result = json.loads(text)
    assert result == {
        "br": PAYLOAD.decode(),
        "gzip": len(TEXT),
        "range": "206:10",
        "etag": "200:304",
        "sse": [0, 1, 2],
        "ws": "echo:from the browser|chat.v1",
    }, result
