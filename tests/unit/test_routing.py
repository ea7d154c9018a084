"""Route matching and specificity, on plain data."""

from __future__ import annotations

import pytest

from proxy.config.model import HeaderMatch, Match, Route
from proxy.config.templates import rewrite_path
from proxy.routing import AmbiguousPath, RouteTable, _Conditions, find_unreachable


def route(name: str, **match) -> Route:
    methods = match.pop("methods", None)
    headers = match.pop("headers", ())
    return Route(
        name=name,
        match=Match(
            methods=frozenset(methods) if methods else None, headers=tuple(headers), **match
        ),
    )


def names(table: RouteTable, method: str, path: str, host: str = "", headers=None) -> str | None:
    m = table.match(method, path, host, headers or {})
    return m.route.name if m else None


def test_template_binds_params_one_segment_each():
    table = RouteTable([route("detail", path="/api/customers/{id}")])
    m = table.match("GET", "/api/customers/42")
    assert m is not None and dict(m.params) == {"id": "42"}
    assert table.match("GET", "/api/customers/42/orders") is None
    assert table.match("GET", "/api/customers/") is None
    assert table.match("GET", "/api/customers") is None


def test_exact_and_template_paths_both_claim_a_trailing_slash():
    """Frameworks that serve `/api/login/` as `/api/login` (Express, Rails, Spring <= 5)
    must not get it past the exact route's limits: exact paths match as templates do."""
    table = RouteTable(
        [
            route("login", path="/api/login"),
            route("item", path="/items/{id}"),
            route("root", path="/"),
        ]
    )
    assert names(table, "POST", "/api/login/") == "login"
    assert names(table, "POST", "/api/login") == "login"
    assert names(table, "GET", "/items/7/") == "item"
    assert names(table, "GET", "/") == "root"
    assert names(table, "POST", "/api/login/x") is None
    assert names(table, "POST", "/api/loginx") is None
    slashed = RouteTable([route("slashed", path="/api/login/")])
    assert names(slashed, "POST", "/api/login") == "slashed"


def test_prefix_is_segment_aligned():
    table = RouteTable([route("catalog", prefix="/api/products")])
    assert names(table, "GET", "/api/products") == "catalog"
    assert names(table, "GET", "/api/products/7") == "catalog"
    assert names(table, "GET", "/api/products/7/reviews") == "catalog"
    assert names(table, "GET", "/api/productsX") is None
    assert names(table, "GET", "/api") is None


def test_exact_over_template_over_regex_over_prefix():
    table = RouteTable(
        [
            route("prefix", prefix="/api"),
            route("regex", regex=r"/api/customers/(?P<id>\d+)"),
            route("template", path="/api/customers/{id}"),
            route("exact", path="/api/customers/me"),
        ]
    )
    assert names(table, "GET", "/api/customers/me") == "exact"
    assert names(table, "GET", "/api/customers/7") == "template"
    assert names(table, "GET", "/api/other") == "prefix"


def test_regex_between_template_and_prefix():
    table = RouteTable([route("prefix", prefix="/files"), route("rx", regex=r"/files/.+\.pdf")])
    assert names(table, "GET", "/files/a/b.pdf") == "rx"
    assert names(table, "GET", "/files/a/b.txt") == "prefix"


def test_longer_prefix_wins_whatever_the_file_order():
    table = RouteTable([route("short", prefix="/api"), route("long", prefix="/api/orders")])
    assert names(table, "GET", "/api/orders/1") == "long"
    assert names(table, "GET", "/api/customers") == "short"


def test_literal_segment_beats_param_in_templates():
    table = RouteTable([route("param", path="/a/{x}/c"), route("literal", path="/a/b/{y}")])
    assert names(table, "GET", "/a/b/c") == "literal"
    assert names(table, "GET", "/a/z/c") == "param"


def test_conditions_beat_no_conditions_at_same_path():
    table = RouteTable(
        [
            route("any", path="/api/customers/{id}"),
            route("get-only", path="/api/customers/{id}", methods=["GET", "HEAD"]),
        ]
    )
    assert names(table, "GET", "/api/customers/1") == "get-only"
    assert names(table, "DELETE", "/api/customers/1") == "any"


def test_method_mismatch_falls_through_to_less_specific_route():
    table = RouteTable(
        [route("write", path="/api/x/{id}", methods=["POST"]), route("pre", prefix="/api")]
    )
    assert names(table, "POST", "/api/x/1") == "write"
    assert names(table, "GET", "/api/x/1") == "pre"
    assert names(RouteTable([route("write", path="/a", methods=["POST"])]), "GET", "/a") is None


def test_header_exact_and_regex_and_host():
    table = RouteTable(
        [
            route("beta", prefix="/", headers=[HeaderMatch("x-beta", value="1")]),
            route("tenant", prefix="/", headers=[HeaderMatch("x-tenant-id", regex=r"acme|globex")]),
            route("host", prefix="/", host="shop.example"),
            route("rest", prefix="/"),
        ]
    )
    assert names(table, "GET", "/x", headers={"x-beta": "1"}) == "beta"
    assert names(table, "GET", "/x", headers={"x-beta": "2"}) == "rest"
    assert names(table, "GET", "/x", headers={"x-tenant-id": "globex"}) == "tenant"
    assert names(table, "GET", "/x", headers={"x-tenant-id": "globexx"}) == "rest"
    assert names(table, "GET", "/x", host="shop.example") == "host"


def test_ties_resolve_by_file_order():
    table = RouteTable(
        [route("first", prefix="/a", methods=["GET"]), route("second", prefix="/a", host="h")]
    )
    assert names(table, "GET", "/a", host="h") == "first"


def test_regex_named_groups_feed_rewrite():
    table = RouteTable([route("rx", regex=r"/legacy/(?P<kind>[a-z]+)/(?P<id>\d+)")])
    m = table.match("GET", "/legacy/orders/12")
    assert m is not None
    rewritten = Route(name="rx", match=m.route.match, rewrite="/v2/{kind}/{id}")
    assert rewrite_path(rewritten, "/legacy/orders/12", m.params) == "/v2/orders/12"
    assert table.match("GET", "/legacy/orders/12x") is None  # full match only


def test_regex_without_literal_first_segment_still_matches():
    table = RouteTable([route("rx", regex=r"/(a|b)/(?P<n>\d+)")])
    assert names(table, "GET", "/b/3") == "rx"


def test_root_prefix_catches_everything():
    table = RouteTable([route("all", prefix="/")])
    assert names(table, "GET", "/") == "all"
    assert names(table, "GET", "/deep/path") == "all"


@pytest.mark.parametrize(
    ("first", "second", "unreachable"),
    [
        (dict(path="/a/{id}"), dict(path="/a/{x}"), True),
        (dict(prefix="/a"), dict(prefix="/a", methods=["GET"]), False),  # conditions first
        (dict(prefix="/a", methods=["GET", "POST"]), dict(prefix="/a", methods=["GET"]), True),
        (dict(prefix="/a", methods=["GET"]), dict(prefix="/a", methods=["POST"]), False),
        (dict(prefix="/a"), dict(prefix="/a/b"), False),
        (dict(path="/a/{id}"), dict(prefix="/a"), False),
        (dict(prefix="/a", host="h"), dict(prefix="/a", host="h"), True),
        (dict(path="/api/login"), dict(path="/api/login/"), True),  # matched either way
        (dict(path="/a/{id}/"), dict(path="/a/{x}"), True),
        (dict(path="/a"), dict(path="/a/b"), False),
    ],
)
def test_find_unreachable(first, second, unreachable):
    routes = [route("first", **first), route("second", **second)]
    found = find_unreachable(routes)
    assert bool(found) is unreachable
    if unreachable:
        assert found[0][0].name == "second" and found[0][1].name == "first"


def test_five_hundred_routes_match_through_indexes_not_scans(monkeypatch):
    routes = []
    for i in range(250):
        routes.append(route(f"t{i}", path=f"/svc{i}/items/{{id}}", methods=["GET"]))
        routes.append(route(f"p{i}", prefix=f"/svc{i}/static"))
    table = RouteTable(routes)
    assert names(table, "GET", "/svc249/items/9") == "t249"
    assert names(table, "GET", "/svc7/static/app.js") == "p7"
    assert names(table, "POST", "/svc7/items/1") is None
    assert names(table, "GET", "/nothing") is None
    # The work per lookup does not grow with the table: the first and the last route cost
    # the same number of candidate probes (a POST: every candidate is probed, none accepts).
    probes = []
    accept = _Conditions.accept
    monkeypatch.setattr(_Conditions, "accept", lambda c, *a: probes.append(c) or accept(c, *a))
    assert names(table, "POST", "/svc0/items/1") is None
    assert names(table, "POST", "/svc249/items/1") is None
    assert len(probes) == 2 and probes[0].methods == probes[1].methods == {"GET"}


def test_path_parameters_that_would_change_the_route_are_refused():
    """`/admin;jsessionid=1/x` matches no route literally (legacy gets it), but a Tomcat
    legacy serves it as `/admin/x`, which the `admin` route took away from it."""
    table = RouteTable([route("admin", prefix="/admin"), route("item", path="/api/items/{id}")])
    with pytest.raises(AmbiguousPath, match="another route owns"):
        table.match("GET", "/admin;jsessionid=1/x")
    # Parameters that do not change the route are forwarded as they are.
    assert names(table, "GET", "/admin/x;v=1") == "admin"
    assert names(table, "GET", "/api/items/7;v=1") == "item"
    assert names(table, "GET", "/shop;jsessionid=1/cart") is None
