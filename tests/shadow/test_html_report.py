"""The HTML report opened in headless Chromium: routes listed, differing lines highlighted."""

from __future__ import annotations

import json
import os

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from proxy.shadow.compare import Differ, Rules
from proxy.shadow.model import CapturedResponse, DiffRecord
from proxy.shadow.redact import Redactor
from proxy.shadow.report.build import build_report
from proxy.shadow.report.html import json_lines, render_html
from tests.support.procs import ROOT

JSON = (("content-type", "application/json"),)


def record(route: str, i: int, primary: dict, candidate: dict, noise=()) -> DiffRecord:
    p = CapturedResponse(200, JSON, json.dumps(primary).encode(), 0.01 + i / 1000)
    c = CapturedResponse(200, JSON, json.dumps(candidate).encode(), 0.02 + i / 1000)
    cmp = Differ(Rules()).compare(p, c)
    red = Redactor()
    return DiffRecord(
        ts=1_700_000_000.0 + i,
        route=route,
        method="GET",
        endpoint="/api/products/{id}",
        request_id=f"{route}-{i}",
        primary_status=200,
        candidate_status=200,
        primary_latency=p.latency,
        candidate_latency=c.latency,
        differences=tuple(red.difference(d) for d in cmp.differences),
        noise=tuple(noise),
        body_kind=cmp.body_kind,
        primary_body=red.body(p.body, "json") if cmp.differences else None,
        candidate_body=red.body(c.body, "json") if cmp.differences else None,
    )


def sample_report() -> dict:
    records = []
    for i in range(6):
        base = {
            "prod_id": i,
            "sku": f"SKU-{i}",
            "price_with_tax": "21.64",
            "note": "<script>window.__xss = 1</script>",
            "legacy_flag": "Y",
        }
        cand = dict(base, price_with_tax="21.65" if i % 2 == 0 else "21.64")
        del cand["legacy_flag"]
        cand["new_field"] = True
        records.append(record("catalog", i, base, cand))
    for i in range(4):
        doc = {"cust_id": i, "cust_nm": "DOE, Jane"}
        records.append(record("customers", i, doc, dict(doc)))
    return build_report(records)


def test_json_lines_carry_paths():
    lines = json_lines({"a": [1, {"b": 2}], "c": {}})
    assert ("$.a[0]", "    1,") in lines
    assert ("$.a[1].b", '      "b": 2') in lines
    assert lines[0] == ("$", "{") and lines[-1] == ("$", "}")


def chromium(tmp_path) -> webdriver.Chrome:
    """Headless Chromium through the Debian chromium-driver."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,1800",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def test_html_report_in_headless_chromium(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_html(sample_report()), encoding="utf-8")
    driver = chromium(tmp_path)
    try:
        driver.get(page.as_uri())
        assert driver.title == "Strangler shadow report"
        routes = [
            r.get_attribute("data-route") for r in driver.find_elements(By.CSS_SELECTOR, "tr.route")
        ]
        assert routes == ["catalog", "customers"]
        catalog = driver.find_element(By.CSS_SELECTOR, 'section.endpoint[data-route="catalog"]')
        fields = [
            f.get_attribute("data-path") for f in catalog.find_elements(By.CSS_SELECTOR, "tr.field")
        ]
        assert fields[0] == "$.legacy_flag" and set(fields) == {
            "$.legacy_flag",
            "$.new_field",
            "$.price_with_tax",
        }
        example = catalog.find_element(By.CSS_SELECTOR, "details.example[open]")
        primary = example.find_element(By.CSS_SELECTOR, ".side.primary")
        candidate = example.find_element(By.CSS_SELECTOR, ".side.candidate")
        changed = primary.find_element(By.CSS_SELECTOR, '.line.chg[data-path="$.price_with_tax"]')
        assert '"21.64"' in changed.text
        assert (
            candidate.find_element(By.CSS_SELECTOR, '.line.chg[data-path="$.price_with_tax"]')
            .text.strip()
            .startswith('"price_with_tax": "21.65"')
        )
        assert primary.find_elements(By.CSS_SELECTOR, '.line.del[data-path="$.legacy_flag"]')
        assert not candidate.find_elements(By.CSS_SELECTOR, '[data-path="$.legacy_flag"]')
        assert candidate.find_elements(By.CSS_SELECTOR, '.line.add[data-path="$.new_field"]')
        # highlighted lines really are highlighted, untouched lines are not
        bg = changed.value_of_css_property("background-color")
        plain = primary.find_element(By.XPATH, ".//span[contains(., 'SKU-0')]")
        assert bg != plain.value_of_css_property("background-color")
        # bodies are escaped, never executed
        assert driver.execute_script("return window.__xss === undefined")
        assert "<script>" in primary.text
        customers = driver.find_element(By.CSS_SELECTOR, 'section.endpoint[data-route="customers"]')
        assert "No differing fields." in customers.text
        assert "100.0%" in customers.text
        artifacts = ROOT / "artifacts"
        artifacts.mkdir(exist_ok=True)
        shot = artifacts / "shadow-report.png"
        assert driver.save_screenshot(str(shot))
        assert os.path.getsize(shot) > 10_000
    finally:
        driver.quit()


def test_text_pairs_highlight_each_side_in_its_own_line_numbers(tmp_path):
    """`line:N` differences count the primary's lines. After a line removed above, the
    candidate's changed line is one higher up and its added line further down: those are
    highlighted on the candidate side, not the unchanged line that happens to be number N."""
    text = (("content-type", "text/plain; charset=utf-8"),)
    p = CapturedResponse(200, text, b"alpha\nDELETED\nbeta\ngamma\ndelta\n", 0.01)
    c = CapturedResponse(200, text, b"alpha\nbeta\nGAMMA\ndelta\nEXTRA\n", 0.02)
    cmp = Differ(Rules()).compare(p, c)
    assert [(d.path, d.kind) for d in cmp.differences] == [
        ("line:2", "missing"),
        ("line:4", "value"),
        ("line:6", "extra"),
    ]
    rec = DiffRecord(
        ts=1_700_000_000.0,
        route="pages",
        method="GET",
        endpoint="/about",
        request_id="pages-1",
        primary_status=200,
        candidate_status=200,
        primary_latency=p.latency,
        candidate_latency=c.latency,
        differences=cmp.differences,
        noise=None,
        body_kind=cmp.body_kind,
        primary_body=p.body.decode(),
        candidate_body=c.body.decode(),
    )
    page = tmp_path / "text-report.html"
    page.write_text(render_html(build_report([rec])), encoding="utf-8")
    driver = chromium(tmp_path)
    try:
        driver.get(page.as_uri())
        example = driver.find_element(By.CSS_SELECTOR, "details.example[open]")

        def marked(side: str) -> list[tuple[str, str]]:
            lines = example.find_elements(By.CSS_SELECTOR, f".side.{side} .line")
            return [
                (line.text, line.get_attribute("class").replace("line", "").strip())
                for line in lines
            ]

        assert marked("primary") == [
            ("alpha", ""),
            ("DELETED", "del"),
            ("beta", ""),
            ("gamma", "chg"),
            ("delta", ""),
        ]
        assert marked("candidate") == [
            ("alpha", ""),
            ("beta", ""),
            ("GAMMA", "chg"),
            ("delta", ""),
            ("EXTRA", "add"),
        ]
    finally:
        driver.quit()
