"""`rewrite` as documented: whole-path templates, regex groups, and prefix replacement."""

from __future__ import annotations

import pytest

from proxy.config.loader import parse_config
from proxy.config.templates import rewrite_path
from proxy.routing import RouteTable

TABLE = """\
version: 1
upstreams:
  legacy: {url: "http://127.0.0.1:8000"}
  svc: {url: "http://127.0.0.1:8101"}
routes:
  - {name: detail, match: {path: "/api/customers/{id}"}, mode: extracted, target: svc,
     rewrite: "/v1/customers/{id}"}
  - {name: exact, match: {path: /api/customers}, mode: extracted, target: svc,
     rewrite: /v1/customers}
  - {name: orders, match: {regex: '^/api/orders/(?P<no>[0-9]+)/lines/(?P<line>[0-9]+)$'},
     mode: extracted, target: svc, rewrite: "/v2/orders/{no}/l/{line}.json"}
  - {name: products, match: {prefix: /api/products/}, mode: extracted, target: svc,
     rewrite: /v1/products/}
  - {name: everything, match: {prefix: /}, mode: extracted, target: svc, rewrite: /legacy-api}
  - {name: untouched, match: {prefix: /static}, mode: extracted, target: svc}
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/customers/17", "/v1/customers/17"),
        ("/api/customers", "/v1/customers"),
        ("/api/orders/12/lines/3", "/v2/orders/12/l/3.json"),
        ("/api/products", "/v1/products"),
        ("/api/products/", "/v1/products/"),
        ("/api/products/7", "/v1/products/7"),
        ("/api/products/7/images/2", "/v1/products/7/images/2"),
        ("/api/invoices/4", "/legacy-api/api/invoices/4"),
        ("/static/app.css", "/static/app.css"),
    ],
)
def test_the_routed_path_is_rewritten_as_documented(path: str, expected: str) -> None:
    table = RouteTable(parse_config(TABLE).routes)
    found = table.match("GET", path, "", {})
    assert found is not None
    assert rewrite_path(found.route, path, found.params) == expected
