"""Canary through the real proxy: each user lands where choose_side predicts, stays there,
only moves legacy -> extracted as the percentage rises, and tenant pins override it."""

from __future__ import annotations

import base64
import json

import httpx

from proxy.config.model import CanaryPolicy, Match, Route, TenantPins
from proxy.dispatch import choose_side

USERS = [f"u{i}" for i in range(150)]


def routes(percent: int) -> str:
    return f"""\
- name: items
  match: {{prefix: /items}}
  mode: canary
  target: svc
  canary: {{percent: {percent}, sticky: "header:X-User-Id"}}
  tenants: {{extracted: [acme], legacy: [bigcorp]}}
"""


def model(percent: int) -> Route:
    return Route(
        name="items",
        match=Match(prefix="/items"),
        mode="canary",
        target="svc",
        canary=CanaryPolicy(percent=percent, sticky="header:X-User-Id"),
        tenants=TenantPins(extracted=frozenset({"acme"}), legacy=frozenset({"bigcorp"})),
    )


def sides(url: str, tenant: str | None = None) -> dict[str, str]:
    out = {}
    with httpx.Client(base_url=url, timeout=10) as c:
        for user in USERS:
            headers = {"X-User-Id": user, **({"X-Tenant-ID": tenant} if tenant else {})}
            r = c.get(f"/items/{user}", headers=headers)
            assert r.status_code == 200
            out[user] = "extracted" if r.json()["server"] == "extracted" else "legacy"
    return out


def test_sticky_split_is_predictable_stable_and_monotonic(start_proxy) -> None:
    top = "tenant: {header: X-Tenant-ID}\n"
    at30 = start_proxy(routes=routes(30), top=top)
    first = sides(at30.url)
    expected = {u: choose_side(model(30), tenant=None, sticky_key=u, rand=0.0) for u in USERS}
    assert first == expected
    assert 0.2 < sum(s == "extracted" for s in first.values()) / len(USERS) < 0.4
    assert sides(at30.url) == first  # sticky: same user, same side, every time

    at60 = start_proxy(routes=routes(60), top=top)  # a second replica / a later config
    later = sides(at60.url)
    assert [u for u in USERS if first[u] == "extracted" and later[u] == "legacy"] == []
    assert sum(s == "extracted" for s in later.values()) > sum(
        s == "extracted" for s in first.values()
    )

    assert set(sides(at30.url, tenant="acme").values()) == {"extracted"}
    assert set(sides(at60.url, tenant="bigcorp").values()) == {"legacy"}


def bearer(claims: dict) -> dict[str, str]:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return {"Authorization": f"Bearer {part({'alg': 'HS256'})}.{part(claims)}.c2ln"}


# A legacy route whose pilot tenant `acme` is pinned to the target.
PILOT = """\
- name: items
  match: {prefix: /items}
  mode: legacy
  target: svc
  tenants: {extracted: [acme]}
"""


def test_pilot_tenant_from_a_jwt_claim_reaches_a_legacy_routes_target(start_proxy) -> None:
    p = start_proxy(routes=PILOT, top="tenant: {jwt_claim: tid}\n")
    with httpx.Client(base_url=p.url, timeout=10) as c:
        assert c.get("/items/1", headers=bearer({"tid": "acme"})).json()["server"] == "extracted"
        assert c.get("/items/1", headers=bearer({"tid": "globex"})).json()["server"] == "legacy"
        assert c.get("/items/1").json()["server"] == "legacy"
        # The claim is what names the tenant, not a client's X-Tenant-ID header.
        assert c.get("/items/1", headers={"X-Tenant-ID": "acme"}).json()["server"] == "legacy"


def test_tokens_of_the_current_and_the_previous_secret_both_pin_while_secrets_rotate(
    start_proxy, monkeypatch
) -> None:
    import hashlib
    import hmac

    def signed(claims: dict, secret: bytes) -> dict[str, str]:
        head, body, _ = bearer(claims)["Authorization"].removeprefix("Bearer ").split(".")
        mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        sig = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        return {"Authorization": f"Bearer {head}.{body}.{sig}"}

    monkeypatch.setenv("PILOT_JWT_NEW", "new-secret")
    monkeypatch.setenv("PILOT_JWT_OLD", "old-secret")
    top = (
        "tenant: {jwt_claim: tid, jwt_secret_env: PILOT_JWT_NEW,"
        " jwt_previous_secret_env: PILOT_JWT_OLD}\n"
    )
    p = start_proxy(routes=PILOT, top=top)
    with httpx.Client(base_url=p.url, timeout=10) as c:
        for secret in (b"new-secret", b"old-secret"):
            got = c.get("/items/1", headers=signed({"tid": "acme"}, secret)).json()["server"]
            assert got == "extracted", secret
        forged = signed({"tid": "acme"}, b"guess")
        assert c.get("/items/1", headers=forged).json()["server"] == "legacy"


def test_the_tenant_is_read_from_the_headers_the_upstream_receives(start_proxy) -> None:
    """A pin is chosen by the one tenant value the upstream also sees: a repeated header
    (the upstream reads `acme, globex` or the last value) and one the client lists in
    `Connection` (dropped before forwarding) name no tenant."""
    p = start_proxy(routes=PILOT, top="tenant: {header: X-Tenant-ID}\n")
    with httpx.Client(base_url=p.url, timeout=10) as c:
        assert c.get("/items/1", headers={"X-Tenant-ID": "acme"}).json()["server"] == "extracted"
        twice = [("X-Tenant-ID", "acme"), ("X-Tenant-ID", "globex")]
        assert c.get("/items/1", headers=twice).json()["server"] == "legacy"
        hop = {"X-Tenant-ID": "acme", "Connection": "X-Tenant-ID"}
        assert c.get("/items/1", headers=hop).json()["server"] == "legacy"
