"""Big HTML reports stay usable: rendered in seconds, opened in headless Chromium in seconds.

A candidate that gets one field wrong in every element of a long list, and a prefix route that
sees thousands of distinct paths (one endpoint each), are ordinary during a migration.
"""

from __future__ import annotations

from dataclasses import replace

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By

from proxy.shadow.report.build import build_report
from proxy.shadow.report.html import _Targets, render_html
from tests.shadow.test_html_report import record
from tests.telemetry.browser import chromium


def test_a_list_differing_in_every_element_is_highlighted_everywhere():
    n = 2600
    primary = {"items": [{"id": j, "v": j} for j in range(n)]}
    candidate = {"items": [{"id": j, "v": j + 1} for j in range(n)]}
    rec = record("catalog", 0, primary, candidate)
    assert len(rec.differences) == n
    page = render_html(build_report([replace(rec, request_id=f"r{i}") for i in range(5)]))
    # Every differing value is highlighted, on both sides of every pair.
    assert page.count(f'<span class="line chg" data-path="$.items[{n - 1}].v">') == 10
    assert page.count('class="line chg"') == 5 * 2 * n


class _CountingDict(dict):
    lookups = 0

    def get(self, key, default=None):
        type(self).lookups += 1
        return super().get(key, default)


def _covered_by_scanning(path: str, targets: dict[str, str]) -> str | None:
    """The rule as first written: the line's own path, else the first enclosing target."""
    if targets.get(path):
        return targets[path]
    for target, cls in targets.items():
        if target != "$" and path.startswith(target) and path[len(target)] in ".[":
            return cls
    return None


def test_a_lines_highlight_is_looked_up_through_its_own_prefixes():
    """Each line of a body was checked against every differing path (a list whose 2,600
    elements all differ took 40-50 s for five pairs). Now the lookups per line are bounded
    by its depth, whatever the number of differences (counted, not timed)."""
    targets = {f"$.items[{j}].v": "chg" for j in range(3000)}
    targets |= {"$.meta": "add", "$.items[7]": "del", "$.items[7].v": "chg"}
    lookup = _Targets(targets)
    _CountingDict.lookups = 0
    lookup.ranked = _CountingDict(lookup.ranked)
    paths = [f"$.items[{j}].{k}" for j in range(3000) for k in ("id", "v")]
    paths += ["$.meta.a[0].b", "$.metadata", "$.items[7].id", "$.items[70].v", "$", "$.x"]
    for path in paths:
        assert lookup.cls(path) == _covered_by_scanning(path, targets), path
    assert _CountingDict.lookups <= sum(path.count(".") + path.count("[") for path in paths)


def many_endpoints(n: int) -> dict:
    """A prefix route that saw `n` distinct path words, each answered a little differently."""
    records = []
    for i in range(n):
        items = [{"id": j, "name": f"item {j}", "price": "1.00"} for j in range(20)]
        primary = {"items": items, "q": i}
        candidate = {"items": [dict(it, price="1.01") for it in items], "q": i}
        rec = record("catalog", i, primary, candidate)
        records.append(replace(rec, endpoint=f"/api/products/word{i}x"))
    # One endpoint fails far more often: its example must be among those shown.
    worst = records[-1]
    records += [replace(worst, request_id=f"worst-{k}", ts=worst.ts + k) for k in range(1, 9)]
    return build_report(records)


def test_a_report_of_2000_endpoints_stays_bounded_and_opens_in_chromium(tmp_path):
    report = many_endpoints(2000)
    page = tmp_path / "big-report.html"
    html = render_html(report)
    page.write_text(html, encoding="utf-8")
    # Example bodies are bounded in all (8 MB); the rest of the page is ~4 KB per endpoint.
    assert len(html) < 8_000_000 + 2000 * 5_000, f"{len(html) / 1e6:.1f} MB"
    with chromium() as driver:
        driver.set_page_load_timeout(90)  # a bound for a hung page, not a speed test
        try:
            driver.get(page.as_uri())
        except TimeoutException:
            raise AssertionError("a 2,000-endpoint report did not open in 90 s") from None
        sections = driver.find_elements(By.CSS_SELECTOR, "section.endpoint")
        assert len(sections) == 2000
        # The endpoint failing most shows its bodies; some others say where theirs are.
        worst = driver.find_element(
            By.CSS_SELECTOR, 'section.endpoint[data-endpoint="GET /api/products/word1999x"]'
        )
        assert worst.find_elements(By.CSS_SELECTOR, "details.example[open] .side.candidate")
        omitted = driver.find_elements(By.CSS_SELECTOR, "p.omitted")
        assert omitted and "--format json" in omitted[0].get_attribute("textContent")
        # The index still leads to every endpoint, and what it leads to is drawn.
        anchor = worst.get_attribute("id")
        driver.find_element(By.CSS_SELECTOR, f'a[href="#{anchor}"]').click()
        assert worst.is_displayed()
        assert "word1999x" in worst.find_element(By.TAG_NAME, "h2").text


def test_the_report_page_runs_nothing_even_if_an_escape_slipped(tmp_path):
    """Bodies are escaped; the page's own policy is the second line: a script that got into
    it anyway (here put there by hand) does not run, and the page itself raises no console
    error under that policy (its inline styles and style attributes are allowed)."""
    html = render_html(many_endpoints(3))
    slipped = html.replace("</main>", "<script>window.__slip = 1</script></main>")
    page = tmp_path / "report.html"
    page.write_text(slipped, encoding="utf-8")
    with chromium() as driver:
        driver.get(page.as_uri())
        assert driver.execute_script("return window.__slip === undefined")
        width = driver.execute_script(
            "return getComputedStyle(document.querySelector('.bar > span')).width"
        )
        assert width not in ("", "auto")
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert all("__slip" in e or "Content Security Policy" in e for e in errors), errors
