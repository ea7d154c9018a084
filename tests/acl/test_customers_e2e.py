"""Every legacy customer API call, answered by the extracted service through the ACL, must
equal the monolith's own answer (generated_at/trace_id aside).

Real processes: gunicorn monolith, the customers service backfilled from it, and two proxies,
one sending /api/customers* to the monolith, one to the service in `extracted` mode with
`acl: customers`. Every call goes to both proxies; writes run in the same order on both
sides, so the two databases stay in step and later reads compare them.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime

import httpx
import pytest
import yaml

from tests.support.procs import ROOT, wait_until
from tests.support.world import (
    MONOLITH_AUTH,
    legacy_headers,
    proxy_config,
    start_customers,
    start_legacy,
    start_proxy,
)

NOISE = ("generated_at", "trace_id")
# What the monolith puts on every answer (Django's security middleware, gunicorn's Server),
# as the demo's routes.yaml sets it on the routes a service may answer.
MONOLITH_HEADERS = yaml.safe_load((ROOT / "routes.yaml").read_text())["x-monolith-headers"]


@dataclass(frozen=True)
class Pair:
    legacy: str  # proxy whose customer routes stay on the monolith
    extracted: str  # proxy whose customer routes go to the service through the ACL
    service: str  # the customers service itself
    shadow: str  # proxy answering from the monolith, shadowing to the service through the ACL
    shadow_admin: str


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("acl-e2e")
    with ExitStack() as stack:
        legacy = stack.enter_context(start_legacy(tmp))
        customers = stack.enter_context(start_customers(tmp, backfill_from=legacy))
        upstreams = {"legacy": legacy, "customers": customers}
        proxies = {}
        shadow = {"sample": 1.0, "ignore": ["$.generated_at", "$.trace_id"], "unsafe": "skip"}
        for name, mode in (("legacy", "legacy"), ("extracted", "extracted"), ("shadow", "shadow")):
            headers = {} if mode == "legacy" else MONOLITH_HEADERS  # the monolith's own there
            routes = [
                {"name": "customers-list", "match": {"path": "/api/customers"}, "mode": mode,
                 "target": "customers", "acl": "customers", "shadow": shadow,
                 "response_headers": headers},
                {"name": "customer-detail", "match": {"path": "/api/customers/{id}"},
                 "mode": mode, "target": "customers", "acl": "customers", "shadow": shadow,
                 "response_headers": headers},
            ]  # fmt: skip
            where = tmp / name
            where.mkdir()
            proxies[name] = stack.enter_context(
                start_proxy(where, proxy_config(upstreams, routes, where, auth=MONOLITH_AUTH))
            )
        yield Pair(
            proxies["legacy"].base,
            proxies["extracted"].base,
            customers,
            proxies["shadow"].base,
            proxies["shadow"].admin,
        )


def _body(response: httpx.Response):
    if not response.content:
        return None
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.json()


def same(pair: Pair, method: str, path: str, **kwargs) -> tuple[int, object]:
    """Send one call through both proxies; assert equal answers; return the monolith's."""
    headers = {**legacy_headers("acme"), **kwargs.pop("headers", {})}
    for key in [k for k, v in headers.items() if v is None]:
        del headers[key]
    with httpx.Client(timeout=20.0) as client:
        old = client.request(method, pair.legacy + path, headers=headers, **kwargs)
        new = client.request(method, pair.extracted + path, headers=headers, **kwargs)
    old_body, new_body = _body(old), _body(new)
    where = f"{method} {path} {kwargs.get('params') or ''}"
    assert new.status_code == old.status_code, f"{where}: {old.text[:300]} vs {new.text[:300]}"
    # Nothing tells them apart (but Django types even a 204's absent body text/html).
    for name in [*MONOLITH_HEADERS, "Server"] + (["Content-Type"] if old.content else []):
        assert new.headers.get(name) == old.headers.get(name), f"{where}: {name}"
    if isinstance(old_body, dict) and old.status_code < 300:
        for key in NOISE:  # present on both sides, values free to differ
            assert key in old_body and key in new_body, f"{where}: {key} missing"
            old_body.pop(key), new_body.pop(key)
    _close_in_time(old_body, new_body, where)
    assert new_body == old_body, f"{where}:\nmonolith {old_body}\nservice  {new_body}"
    return old.status_code, old_body


def _close_in_time(old, new, where: str) -> None:
    """A record the test created exists twice, made "now" by the monolith and a moment
    later by the service: their `created_ts` may fall in different seconds. Allow the two
    clocks a few seconds, everywhere in the bodies, then compare the rest exactly."""
    if isinstance(old, dict) and isinstance(new, dict):
        if "created_ts" in old and "created_ts" in new:
            a, b = (datetime.strptime(x.pop("created_ts"), "%Y%m%d%H%M%S") for x in (old, new))
            assert abs((a - b).total_seconds()) <= 5, where
        for key in old.keys() & new.keys():
            _close_in_time(old[key], new[key], where)
    elif isinstance(old, list) and isinstance(new, list):
        for a, b in zip(old, new, strict=False):
            _close_in_time(a, b, where)


def test_list_pages_filters_and_orderings(pair):
    status, first = same(pair, "GET", "/api/customers")
    assert status == 200 and first["total"] > 0 and len(first["results"]) == 50
    city = first["results"][0]["addr_city"]
    fragment = first["results"][1]["cust_nm"][1:4].lower()
    cases = [
        {"page": "2", "page_size": "7"},
        {"page": "3", "page_size": "100"},
        {"page": "999"},
        {"page": str(10**30)},  # past SQL's integers: an empty page on both sides, not a 500
        {"status": "I"},
        {"status": "A", "city": city},
        {"q": fragment},
        {"q": fragment, "ordering": "-name", "page_size": "100"},
        {"ordering": "-id", "page": "2", "page_size": "20"},
        {"ordering": "created", "page_size": "100"},
        {"ordering": "-created", "page_size": "100"},
        {"ordering": "name", "page_size": "100", "page": "2"},
        {"city": "Nowhere"},
        {"unknown_param": "1"},
        # Repeated parameters: the monolith (Django) reads the last one.
        [("status", "A"), ("status", "I")],
        [("status", "bogus"), ("status", "A")],
        [("ordering", "id"), ("ordering", "-id"), ("page_size", "5")],
        [("city", "Nowhere"), ("city", city)],
        [("q", "zzzz"), ("q", fragment)],
        [("page", "1"), ("page", "2"), ("page_size", "3"), ("page_size", "4")],
    ]
    for params in cases:
        same(pair, "GET", "/api/customers", params=params)


def test_list_validation_errors(pair):
    for params in (
        {"status": "X"},
        {"page": "0"},
        {"page": "x", "page_size": "101"},
        {"ordering": "email"},
        {"status": "Q", "ordering": "nope", "page_size": "0"},
    ):
        status, body = same(pair, "GET", "/api/customers", params=params)
        assert status == 400 and body["error"]["code"] == "VALIDATION"


def test_detail_and_not_found(pair):
    status, page = same(pair, "GET", "/api/customers", params={"page_size": "3"})
    for customer in page["results"]:
        same(pair, "GET", f"/api/customers/{customer['cust_id']}")
    status, body = same(pair, "GET", "/api/customers/987654")
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    # Django's int converter reads 007 as 7: the record, and the 404's words, alike.
    first = page["results"][0]["cust_id"]
    assert same(pair, "GET", f"/api/customers/00{first}")[1]["cust_id"] == first
    status, body = same(pair, "GET", "/api/customers/00987654")
    assert "cust_id=987654 " in body["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Authorization": None}, "AUTH"),
        ({"Authorization": "Token not-a-real-one"}, "AUTH"),
        ({"Authorization": "Bearer abc"}, "AUTH"),
        ({"X-Tenant-ID": "globex"}, "FORBIDDEN"),  # acme's token, another tenant
        ({"X-Tenant-ID": "nope"}, "BAD_TENANT"),
    ],
)
def test_the_extracted_service_answers_only_whom_the_monolith_would(pair, headers, code):
    """The service keeps no tokens: the proxy asks the monolith's check first, so reads,
    writes and deletes through the extracted route are refused exactly as the monolith
    refuses them."""
    for method, path, body in (
        ("GET", "/api/customers", None),
        ("GET", "/api/customers/1", None),
        ("POST", "/api/customers", {"cust_nm": "EVIL, Eve", "email_addr": "e@x.io"}),
        ("DELETE", "/api/customers/1", None),
    ):
        kwargs = {"json": body} if body is not None else {}
        status, answer = same(pair, method, path, headers=headers, **kwargs)
        assert status in (400, 401, 403) and answer["error"]["code"] == code, (method, path)


def test_a_path_the_translator_does_not_cover_is_answered_by_the_monolith(pair):
    """The route matches `/api/customers/{id}`, the translator knows `{id:int}`: for an id
    that is no number the monolith, the path's owner before, answers (its own 404)."""
    for path in ("/api/customers/abc", "/api/customers/-1"):
        status, body = same(pair, "GET", path)
        assert status == 404 and body["error"]["code"] == "NOT_FOUND", path


def test_missing_tenant_and_malformed_json(pair):
    status, body = same(pair, "GET", "/api/customers", headers={"X-Tenant-ID": None})
    assert status == 400 and body["error"]["code"] == "BAD_TENANT"
    status, body = same(
        pair, "POST", "/api/customers", content=b"{not json",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 400 and body["error"]["message"].startswith("Malformed JSON body")
    # A gzip body: Django does not decode a request's Content-Encoding, nor does the ACL.
    zipped = gzip.compress(b'{"cust_nm": "GZIP, Gus", "email_addr": "gus@example.com"}')
    status, body = same(
        pair, "POST", "/api/customers", content=zipped,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )  # fmt: skip
    assert status == 400 and body["error"]["message"].startswith("Malformed JSON body")


def test_writes_create_update_patch_delete(pair):
    new = {"cust_nm": "STRANGLER, Fig", "email_addr": "fig@example.com", "addr_zip": "54321"}
    status, created = same(pair, "POST", "/api/customers", json=new)
    assert status == 201
    cust_id = created["cust_id"]
    same(pair, "GET", f"/api/customers/{cust_id}")
    full = {
        "cust_nm": "STRANGLER, Figgy", "email_addr": "figgy@example.com", "phone_no": "555-0199",
        "addr_line1": "2 Vine Rd", "addr_city": "Ogdenville", "addr_zip": "11111", "status_cd": "I",
    }  # fmt: skip
    status, _ = same(pair, "PUT", f"/api/customers/{cust_id}", json=full)
    assert status == 200
    status, patched = same(pair, "PATCH", f"/api/customers/{cust_id}", json={"addr_city": "X"})
    assert status == 200 and patched["addr_city"] == "X" and patched["addr_line1"] == "2 Vine Rd"
    same(pair, "PATCH", f"/api/customers/{cust_id}", json={"status_cd": "A", "phone_no": ""})
    same(pair, "GET", "/api/customers", params={"q": "strangler"})
    # A Turkish family name: what the client wrote is what it reads back, on both sides.
    turkish = {"cust_nm": "ÇİFTÇİ, Ayşe", "email_addr": "ayse@example.com"}
    status, body = same(pair, "PATCH", f"/api/customers/{cust_id}", json=turkish)
    assert status == 200 and body["cust_nm"] == "ÇİFTÇİ, Ayşe"
    same(pair, "GET", f"/api/customers/{cust_id}")
    # Searching non-ASCII names finds what the monolith finds (SQLite: ASCII letters fold).
    for q in ("ÇİFTÇİ", "çi̇ftçi̇", "çİftçİ", "ayşe", "AYŞE", "İ", "ftç, ay"):
        same(pair, "GET", "/api/customers", params={"q": q})
    status, _ = same(pair, "DELETE", f"/api/customers/{cust_id}")
    assert status == 204
    assert same(pair, "GET", f"/api/customers/{cust_id}")[0] == 404
    assert same(pair, "DELETE", f"/api/customers/{cust_id}")[0] == 404
    assert same(pair, "PATCH", f"/api/customers/{cust_id}", json={"addr_city": "Y"})[0] == 404


def test_write_validation_errors(pair):
    status, page = same(pair, "GET", "/api/customers", params={"page_size": "1"})
    target = f"/api/customers/{page['results'][0]['cust_id']}"
    valid = {"cust_nm": "ROE, Al", "email_addr": "al@example.org"}
    for body in (
        {"email_addr": "al@example.org"},
        {**valid, "email_addr": "not-an-email"},
        {**valid, "status_cd": "X"},
        {**valid, "cust_nm": "Al Roe"},
        {**valid, "cust_nm": "Roe, Al"},
        {**valid, "addr_zip": "12"},
        {**valid, "phone_no": 5},
        {**valid, "favourite": "red"},
        {**valid, "addr_city": "c" * 201},
        {**valid, "addr_line1": "x" * (1536 * 1024)},  # bigger than the service once took
        ["not", "an", "object"],
    ):
        status, answer = same(pair, "POST", "/api/customers", json=body)
        assert status == 400, answer
    for method, body in (
        ("PUT", valid),
        ("PATCH", {"addr_zip": "abc"}),
        ("PATCH", {"email_addr": None}),
        ("PATCH", {"cust_nm": "lower, case"}),
    ):
        status, answer = same(pair, method, target, json=body)
        assert status == 400, answer
    # Over the monolith's own 2.5 MiB: Django answers a bare HTML 400, the ACL the same
    # status in the monolith's JSON error envelope (not the service's 413 shape).
    huge = {**valid, "addr_line1": "x" * (3 * 1024 * 1024)}
    with httpx.Client(timeout=20.0, headers=legacy_headers("acme")) as client:
        old = client.post(pair.legacy + "/api/customers", json=huge)
        new = client.post(pair.extracted + "/api/customers", json=huge)
    assert old.status_code == new.status_code == 400
    assert new.json() == {"error": {"code": "VALIDATION", "message": "Request body too large."}}
    # Nothing above changed the customer on either side.
    same(pair, "GET", target)


def test_the_extracted_side_really_is_the_service(pair):
    """Guard against a vacuous pass: a change made only in the service's database shows
    through the extracted proxy (translated) and not through the legacy one."""
    _, page = same(pair, "GET", "/api/customers", params={"page_size": "1"})
    customer = page["results"][0]
    path = f"/v1/customers/{customer['cust_id']}"
    tenant = {"X-Tenant-ID": "acme"}
    with httpx.Client(timeout=20.0) as client:
        before = client.get(pair.service + path, headers=tenant).json()
        changed = client.patch(
            pair.service + path, headers=tenant, json={"address": {"city": "Direct"}}
        )
        assert changed.status_code == 200
        try:
            old = client.get(pair.legacy + f"/api/customers/{customer['cust_id']}",
                             headers=legacy_headers("acme")).json()  # fmt: skip
            new = client.get(pair.extracted + f"/api/customers/{customer['cust_id']}",
                             headers=legacy_headers("acme")).json()  # fmt: skip
            assert old["addr_city"] == customer["addr_city"] != "Direct"
            assert new["addr_city"] == "Direct" and new["cust_nm"] == customer["cust_nm"]
        finally:
            client.patch(pair.service + path, headers=tenant, json={"address": before["address"]})


def test_shadow_mode_finds_no_differences_through_the_acl(pair):
    """In shadow mode the client gets the monolith's answer and the service's translated
    answer is diffed against it: with the ACL in place there is nothing to report. A request
    the ACL itself rejects (`status=bogus`) never reaches the candidate: the ACL's answer,
    the monolith's own, is the extracted side's answer, and is compared."""
    with httpx.Client(base_url=pair.shadow, headers=legacy_headers("acme"), timeout=20) as c:
        page = c.get("/api/customers", params={"page_size": "5"}).json()
        calls = [("/api/customers", {"page": "2", "page_size": "10", "ordering": "-name"}),
                 ("/api/customers", {"status": "I"}),
                 ("/api/customers/987654", {}),
                 ("/api/customers", {"status": "bogus", "page": "0"})]  # fmt: skip
        calls += [(f"/api/customers/{r['cust_id']}", {}) for r in page["results"]]
        for path, params in calls:
            assert c.get(path, params=params).status_code in (200, 400, 404)

    def settled():
        snap = httpx.get(pair.shadow_admin + "/-/shadow").json()
        stats = {r["route"]: r for r in snap["routes"]}
        done = sum(
            stats.get(n, {}).get("compared", 0) for n in ("customers-list", "customer-detail")
        )
        return stats if done == len(calls) + 1 else None

    stats = wait_until(settled, timeout=30, what="every shadow comparison")
    for route in ("customers-list", "customer-detail"):
        results = stats[route]["results"]
        assert set(results) <= {"match"}, f"{route}: {results}"


def test_head_is_answered_as_the_monolith_answers_it(pair):
    """HEAD is GET without a body, on both sides: the status and the headers GET's answer
    would have, the translated body's size included."""
    headers = legacy_headers("acme")
    with httpx.Client(timeout=20.0) as client:
        for path in ("/api/customers?page_size=3", "/api/customers/1", "/api/customers/987654"):
            old = client.head(pair.legacy + path, headers=headers)
            new = client.head(pair.extracted + path, headers=headers)
            got = client.get(pair.extracted + path, headers=headers)
            assert (new.status_code, new.content) == (old.status_code, b""), path
            assert new.headers["content-type"] == old.headers["content-type"], path
            assert int(new.headers["content-length"]) == len(got.content), path


_NOISE_VALUES = re.compile(rb'"(generated_at|trace_id)": "[^"]*"')


def test_answers_are_the_bytes_the_monolith_sends(pair):
    """Not only equal JSON: the same bytes (Django writes `", "` and `\\u00fc` escapes), so
    Content-Length and the body give nothing away; the noise values aside. That includes
    answers the ACL itself writes: a query it rejects, the service's 422 and 404 mapped."""
    with httpx.Client(timeout=20.0, headers=legacy_headers("acme")) as client:
        calls = [
            ("GET", "/api/customers?page_size=3&ordering=-name", None),
            ("GET", "/api/customers/1", None),
            ("GET", "/api/customers/987654", None),
            ("GET", "/api/customers?status=bogus&page=0", None),
            ("POST", "/api/customers", {"status_cd": "X", "cust_nm": "doe", "zz": 1}),
            ("PUT", "/api/customers/1", {"phone_no": 5, "zz": 1, "status_cd": "Q"}),
            ("POST", "/api/customers", {"cust_nm": "DOE, Ann", "email_addr": "not-an-email"}),
            ("PATCH", "/api/customers/1", {"addr_zip": "1"}),
        ]
        for method, path, body in calls:
            kwargs = {"json": body} if body is not None else {}
            old = client.request(method, pair.legacy + path, **kwargs)
            new = client.request(method, pair.extracted + path, **kwargs)
            where = f"{method} {path}"
            assert new.status_code == old.status_code, where
            assert new.headers["content-type"] == old.headers["content-type"], where
            assert _NOISE_VALUES.sub(b"", new.content) == _NOISE_VALUES.sub(b"", old.content), (
                f"{where}:\n{old.content[:300]!r}\n{new.content[:300]!r}"
            )
        # Non-ASCII text: escaped as Django escapes it. Ids and creation times differ.
        body = {"cust_nm": "MÜLLER, Jürgen", "email_addr": "jm@example.com"}
        old = client.post(pair.legacy + "/api/customers", json=body)
        new = client.post(pair.extracted + "/api/customers", json=body)
        try:
            assert old.status_code == new.status_code == 201
            assert rb'"M\u00dcLLER, J\u00fcrgen"' in old.content

            def normal(resp: httpx.Response) -> bytes:
                text = _NOISE_VALUES.sub(b"", resp.content)
                text = re.sub(rb'"created_ts": "\d+"', b"", text)
                return re.sub(rb'"cust_id": \d+', b"", text)

            assert normal(new) == normal(old)
        finally:
            client.delete(pair.legacy + f"/api/customers/{old.json()['cust_id']}")
            client.delete(pair.extracted + f"/api/customers/{new.json()['cust_id']}")


def test_a_lone_surrogate_in_a_client_body_is_no_proxy_error(pair):
    """`"\\ud800"` is valid JSON text with no UTF-8 form: the translated body keeps it
    escaped instead of failing the proxy's own encoding (an 'internal proxy error')."""
    raw = b'{"cust_nm": "DOE, Jane", "email_addr": "j@example.com", "addr_city": "\\ud800"}'
    with httpx.Client(timeout=20.0, headers=legacy_headers("acme")) as client:
        old = client.post(pair.legacy + "/api/customers", content=raw)
        new = client.post(pair.extracted + "/api/customers", content=raw)
    assert b"internal proxy error" not in new.content, new.text
    assert new.status_code == old.status_code  # neither can store it: both fail alike
