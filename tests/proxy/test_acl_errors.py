"""ACL failures through the real proxy: a payload the translator cannot handle is a 502 that
names the translator, the direction and the field path; never a 500 or a wrong answer."""

from __future__ import annotations

import textwrap

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


def test_the_access_line_counts_the_bytes_of_the_acls_own_answers(start_proxy):
    """The 400 the ACL writes for input the monolith refuses, and the 502 for an answer it
    cannot translate, were logged with bytes_out 0 whatever their size."""
    import json

    p = start_proxy(
        routes=ACL_ROUTE
        + ACL_ROUTE.replace("customer-detail", "customers-list").replace("/{id}", ""),
        extra="tenant: {header: X-Tenant-ID}\n",
    )
    sent = {}
    for request_id, path, status in (
        ("rej-1", "/api/customers?status=bogus", 400),  # RequestRejected: the monolith's 400
        ("fail-1", "/api/customers/7", 502),  # the echo upstream's answer is no customer
    ):
        resp = httpx.get(p.url + path, headers={"X-Tenant-ID": "acme", "X-Request-ID": request_id})
        assert resp.status_code == status, resp.text
        sent[request_id] = len(resp.content)

    def access_lines():
        lines = [json.loads(x) for x in p.log.read_text().splitlines() if x.startswith("{")]
        found = {x["request_id"]: x for x in lines if x.get("logger") == "strangler.access"}
        return found if set(sent) <= set(found) else None

    lines = wait_until(access_lines, timeout=10, what="the access lines")
    for request_id, size in sent.items():
        assert size > 0 and lines[request_id]["bytes_out"] == size, lines[request_id]


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


def test_a_legacy_answer_cut_mid_body_on_an_acl_route_cuts_the_connection(tmp_path):
    """A path the translator does not cover goes to the monolith, whose answer is relayed
    untranslated. When the monolith dies mid-body, the client's connection is cut and the
    access line says 502: no error page written after the body's first bytes (a 500, on a
    connection kept open, read by the client as more of the body), on both lanes."""
    import json
    import socket
    import subprocess

    from tests.support.faulty import faulty
    from tests.support.procs import PYTHON, ROOT, free_port, running

    with faulty("legacy") as legacy:
        port, admin = free_port(), free_port()
        config = tmp_path / "routes.yaml"
        config.write_text(
            f"version: 1\nlisten: {{host: 127.0.0.1, port: {port}}}\n"
            f"admin: {{host: 127.0.0.1, port: {admin}}}\n"
            "upstreams:\n"
            f'  legacy: {{url: "http://127.0.0.1:{legacy.port}", retry: {{retries: 0}}}}\n'
            f'  svc: {{url: "http://127.0.0.1:{free_port()}", retry: {{retries: 0}}}}\n'
            "default: legacy\ntenant: {header: X-Tenant-ID}\n"
            "telemetry: {traces: {exporter: none}, log_format: json}\n"
            "routes:\n" + textwrap.indent(ACL_ROUTE, "  ")
        )
        log = tmp_path / "proxy.log"
        head = b"/api/customers/abc HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: acme\r\nX-Fault: reset\r\n"
        requests = {
            "acl-cut-fast-lane": b"GET " + head + b"X-Request-ID: acl-cut-fast-lane\r\n\r\n",
            "acl-cut-aiohttp-lane": b"POST " + head + b"X-Request-ID: acl-cut-aiohttp-lane\r\n"
            b"Content-Length: 70000\r\n\r\n" + b"a" * 70000,
        }
        with (
            log.open("w") as out,
            running(
                [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
                ready_url=f"http://127.0.0.1:{admin}/-/ready",
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            ),
        ):
            for request in requests.values():
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(request)
                    data = b""
                    try:
                        while piece := sock.recv(65536):  # until the proxy cuts the connection
                            data += piece
                    except ConnectionResetError:
                        pass
                assert data.startswith(b"HTTP/1.1 200"), data[:200]
                assert b"HTTP/1.1 5" not in data, data[-400:]  # no answer after the body
                assert len(data.partition(b"\r\n\r\n")[2]) < 100_000  # and it is short

            def access_lines() -> list[dict]:
                lines = [json.loads(t) for t in log.read_text().splitlines() if t[:1] == "{"]
                found = [x for x in lines if x.get("request_id") in requests]
                return found if sum(x["msg"] == "request" for x in found) == 2 else []

            lines = wait_until(access_lines, timeout=10, what="both access lines")
    assert [x["status"] for x in lines if x["msg"] == "request"] == [502, 502], lines
    assert not [x for x in lines if x["msg"] == "internal proxy error"], lines
