"""Two proxy replicas write to one Redis diff store; one `strangler report` covers both."""

from __future__ import annotations

import secrets

import httpx
import redis
import yaml

from proxy.shadow.store.redis import RedisStore
from tests.shadow_e2e.support import (
    counting_app,
    counts,
    items_route,
    report_json,
    shadow_stats,
    wait_written,
)
from tests.support.procs import PYTHON, free_port, running
from tests.support.world import proxy_config

REDIS = "redis://127.0.0.1:6379/0"


def test_two_replicas_one_redis_store_one_report(tmp_path):
    prefix = f"test-shadow-e2e-{secrets.token_hex(6)}:"  # our keys only; removed at the end
    store_url = f"{REDIS}?prefix={prefix}"
    sent = {"a": 7, "b": 11}
    try:
        with (
            counting_app(free_port(), "primary") as primary,
            counting_app(free_port(), "candidate") as candidate,
        ):
            config = proxy_config(
                {"legacy": primary.url, "candidate": candidate.url},
                [items_route("items", "shadow", "candidate")],
                tmp_path,
                shadow={"store": store_url},
            )
            path = tmp_path / "routes.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            ports = {name: (free_port(), free_port()) for name in sent}
            serve = [PYTHON, "-m", "proxy.cli", "serve", "-c", str(path)]
            a_port, a_admin = ports["a"]
            b_port, b_admin = ports["b"]
            with (
                running(
                    serve + ["--port", str(a_port), "--admin-port", str(a_admin)],
                    ready_url=f"http://127.0.0.1:{a_admin}/-/ready",
                ),
                running(
                    serve + ["--port", str(b_port), "--admin-port", str(b_admin)],
                    ready_url=f"http://127.0.0.1:{b_admin}/-/ready",
                ),
            ):
                for name, n in sent.items():
                    port, admin = ports[name]
                    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
                        for ident in range(1, n + 1):
                            resp = http.get(f"/items/{ident}")
                            assert resp.status_code == (404 if ident % 7 == 0 else 200)
                for name, n in sent.items():
                    admin = f"http://127.0.0.1:{ports[name][1]}"
                    store = wait_written(admin, n)
                    assert store["backend"] == "RedisStore" and store["written"] == n
                    assert shadow_stats(admin, "items")["compared"] == n  # each saw only its own

                # while both replicas still run, the report reads the shared stream
                report = report_json(path)
            assert sum(counts(candidate.url)["shadow"].values()) == sum(sent.values())
        total = sum(sent.values())
        (endpoint,) = report["endpoints"]
        assert endpoint["route"] == "items" and endpoint["method"] == "GET"
        assert endpoint["samples"] == total and endpoint["matches"] == total
        assert endpoint["statuses"] == {"200/200": total - 2, "404/404": 2}  # /items/7 twice
        assert endpoint["endpoint"] == "/items/{id}"
        assert report["totals"]["samples"] == total
        assert RedisStore(store_url).count() == total
    finally:
        RedisStore(store_url).delete_all()
    leftovers = redis.Redis.from_url(REDIS).keys(f"{prefix}*")
    assert leftovers == []
