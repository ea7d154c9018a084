"""Two proxy replicas sharing breaker state through the real Redis: failures seen by one
open the breaker in the other, which then rejects without touching the dead upstream."""

from __future__ import annotations

import uuid

import httpx
import redis

from tests.support.procs import wait_until

POLICY = """\
retry: {retries: 1, backoff_base: 0.005, backoff_max: 0.02}
breaker: {consecutive_failures: 5, open_for: 30}
"""

ROUTES = """\
- name: items
  match: {prefix: /items}
  mode: extracted
  target: svc
"""


def breaker_state(admin: str) -> str:
    snap = httpx.get(f"{admin}/-/upstreams", timeout=5).json()
    svc = snap["svc"]
    return svc["breaker"]["state"]


def test_replicas_trip_together(start_proxy, world) -> None:
    prefix = f"strangler-e2e-{uuid.uuid4().hex[:10]}:"
    top = f'state: "redis://127.0.0.1:6379/0?prefix={prefix}"\n'
    try:
        a = start_proxy(svc=POLICY, routes=ROUTES, top=top)
        b = start_proxy(svc=POLICY, routes=ROUTES, top=top)
        world.svc.set("status", status=503)
        with httpx.Client(timeout=10) as c:
            for i in range(5):
                assert c.get(f"{a.url}/items/{i}").status_code == 503
            assert breaker_state(a.admin) == "open"
            wait_until(lambda: breaker_state(b.admin) == "open", what="B opens")
            attempts = world.svc.attempts()
            for i in range(10):
                r = c.get(f"{b.url}/items/{i}")
                assert r.status_code == 503 and "Retry-After" in r.headers
            assert world.svc.attempts() == attempts  # B never sent one of them
    finally:
        client = redis.Redis()
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
