"""Unsafe methods on a shadow route (default `unsafe: skip`): served once, never shadowed."""

from __future__ import annotations

import httpx

from tests.shadow_e2e.support import (
    counting_app,
    counts,
    items_route,
    shadow_stats,
    wait_compared,
)
from tests.support.procs import free_port
from tests.support.world import proxy_config, start_proxy


def test_unsafe_methods_on_a_shadow_route_are_not_shadowed_and_reach_the_primary_once(tmp_path):
    """Even with `noise: primary-twice` the primary sees each POST, PUT, PATCH and DELETE once and
    the candidate never; each skipped shadow call is counted as an `unsafe_method` drop. A GET on the same route is
    shadowed (and noise-sampled), so the route is live and the counters can tell."""
    with (
        counting_app(free_port(), "primary") as primary,
        counting_app(free_port(), "candidate") as candidate,
    ):
        route = items_route("items", "shadow", "candidate", noise="primary-twice")
        config = proxy_config(
            {"legacy": primary.url, "candidate": candidate.url}, [route], tmp_path
        )
        with start_proxy(tmp_path, config) as proxy, httpx.Client(base_url=proxy.base) as http:
            created = http.post("/items", json={"name": "widget"})
            assert created.status_code == 201
            assert created.json() == {"created": {"name": "widget"}, "by": "primary", "n": 1}
            for method in ("PUT", "PATCH", "DELETE"):
                changed = http.request(method, "/items/5", json={"name": "w"})
                assert changed.status_code == 200
                assert changed.json() == {"method": method, "id": 5}
            stats = shadow_stats(proxy.admin, "items")
            assert stats["dropped"] == {"unsafe_method": 4}
            assert stats["submitted"] == stats["enqueued"] == 0

            fetched = http.get("/items/3")
            assert fetched.status_code == 200
            stats = wait_compared(proxy.admin, "items", 1)
            assert stats["dropped"] == {"unsafe_method": 4} and stats["enqueued"] == 1

        assert counts(primary.url) == {
            "calls": {
                "POST /items": 1,
                "PUT /items/5": 1,
                "PATCH /items/5": 1,
                "DELETE /items/5": 1,
                "GET /items/3": 2,  # the GET's noise call is the second
            },
            "shadow": {"GET /items/3": 1},
        }
        assert counts(candidate.url) == {
            "calls": {"GET /items/3": 1},
            "shadow": {"GET /items/3": 1},
        }
