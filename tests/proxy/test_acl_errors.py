"""ACL failures through the real proxy: a payload the translator cannot handle is a 502 that
names the translator, the direction and the field path; never a 500 or a wrong answer."""

from __future__ import annotations

import httpx

from tests.support.procs import wait_until

ACL_ROUTE = """\
- name: customer-detail
  match: {path: "/api/customers/{id}"}
  mode: extracted
  target: svc
  acl: customers
"""


def test_untranslatable_service_answer_is_a_502_naming_translator_direction_and_path(start_proxy):
    p = start_proxy(routes=ACL_ROUTE, extra="tenant: {header: X-Tenant-ID}\n")
    # The echo upstream answers with its own JSON, not a customer: nothing to translate.
    resp = httpx.get(
        p.url + "/api/customers/7",
        headers={"X-Tenant-ID": "acme", "X-Request-ID": "acl-1"},
    )
    assert resp.status_code == 502, resp.text
    body = resp.json()
    assert body["route"] == "customer-detail" and body["request_id"] == "acl-1"
    error = body["error"]
    assert error["code"] == "TRANSLATION_FAILED"
    assert error["translator"] == "customers"
    assert error["direction"] == "response_to_legacy"
    assert error["path"].startswith("$")
    # and the proxy still serves
    assert httpx.get(p.url + "/other").status_code == 200
    # The operator's log line says the same and which file to fix (the client's body does
    # not: it must not show the server's layout).
    line = wait_until(
        lambda: next((x for x in p.log.read_text().splitlines() if "acl-1" in x), None),
        timeout=10,
        what="the ACL failure's log line",
    )
    assert "customers (response_to_legacy) at $" in line
    assert "acl/translators/customers.yaml" in line and "acl/translators" not in resp.text


def test_request_the_monolith_would_reject_gets_the_monolith_answer(start_proxy):
    p = start_proxy(
        routes=ACL_ROUTE.replace("{id}", "{id}").replace(
            '"/api/customers/{id}"', '"/api/customers"'
        ),
        extra="tenant: {header: X-Tenant-ID}\n",
    )
    resp = httpx.get(p.url + "/api/customers?status=bogus", headers={"X-Tenant-ID": "acme"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "VALIDATION"


def test_int_path_value_of_thousands_of_digits_is_not_a_500(start_proxy):
    # `{id:int}` values are read as numbers ("007" is 7); one of more than 4300 digits is
    # more than int() reads: it must reach the service canonical, not fail the proxy.
    p = start_proxy(routes=ACL_ROUTE, extra="tenant: {header: X-Tenant-ID}\n")
    digits = "0" * 10 + "7" * 5000
    resp = httpx.get(
        p.url + f"/api/customers/{digits}", headers={"X-Tenant-ID": "acme"}, timeout=10
    )
    assert resp.status_code != 500, resp.text
    assert "internal proxy error" not in resp.text
    assert "Traceback" not in p.log.read_text()


def test_page_number_of_thousands_of_digits_is_not_a_500(start_proxy):
    # The monolith reads page=10**4299 - 1 (int() takes 4300 digits) as a page past the
    # end; its offset is more digits than JSON writes into the service's cursor.
    p = start_proxy(
        routes=ACL_ROUTE.replace('"/api/customers/{id}"', '"/api/customers"'),
        extra="tenant: {header: X-Tenant-ID}\n",
    )
    resp = httpx.get(
        p.url + "/api/customers",
        params={"page": "9" * 4300, "page_size": "100"},
        headers={"X-Tenant-ID": "acme"},
        timeout=10,
    )
    assert resp.status_code != 500, resp.text
    assert "Traceback" not in p.log.read_text()
