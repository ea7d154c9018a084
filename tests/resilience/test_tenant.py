"""extract_tenant: header, JWT claim (verified and unverified), host pattern (pure)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from proxy.config.model import TenantSource
from proxy.filters.tenant import extract_tenant, host_pattern


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(payload: dict, key: bytes | None = None, alg: str = "HS256") -> str:
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    sig = b64(hmac.new(key or b"other", f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_source_means_no_tenant() -> None:
    assert extract_tenant(None, headers={"X-Tenant-ID": "acme"}, host="acme.shop.example") is None


def test_header_is_case_insensitive_and_trimmed() -> None:
    src = TenantSource(header="X-Tenant-ID")
    assert extract_tenant(src, headers={"x-tenant-id": " acme "}, host="") == "acme"
    assert extract_tenant(src, headers={"X-TENANT-ID": "big.corp_1"}, host="") == "big.corp_1"
    assert extract_tenant(src, headers={}, host="") is None


@pytest.mark.parametrize("bad", ["", "   ", "a b", "../etc", "x" * 65, "acme\r\nX: 1", "-lead"])
def test_malformed_tenant_values_are_dropped(bad: str) -> None:
    src = TenantSource(header="X-Tenant-ID")
    assert extract_tenant(src, headers={"X-Tenant-ID": bad}, host="") is None


def test_jwt_claim_unverified_without_key() -> None:
    src = TenantSource(jwt_claim="tid")
    assert extract_tenant(src, headers=bearer(jwt({"tid": "acme"})), host="") == "acme"
    assert extract_tenant(src, headers=bearer(jwt({"tid": 7})), host="") == "7"
    assert extract_tenant(src, headers=bearer(jwt({"sub": "x"})), host="") is None
    assert extract_tenant(src, headers=bearer(jwt({"tid": ["a"]})), host="") is None
    assert extract_tenant(src, headers={"Authorization": "Token abc"}, host="") is None
    assert extract_tenant(src, headers=bearer("not.a.jwt"), host="") is None
    assert extract_tenant(src, headers=bearer("onlyone"), host="") is None
    assert extract_tenant(src, headers={}, host="") is None


def test_the_token_is_read_however_the_services_behind_split_the_header() -> None:
    """`Bearer<TAB>token` (or several spaces) is a valid token to DRF and most JWT
    middleware: read as no tenant, it escaped the tenant's pin and its rate limit."""
    src = TenantSource(jwt_claim="tid")
    token = jwt({"tid": "globex"})
    for value in (
        f"Bearer\t{token}",
        f"Bearer   {token}",
        f"bearer \t {token} ",
        f"\tBearer {token}",
    ):
        assert extract_tenant(src, headers={"Authorization": value}, host="") == "globex", value


def test_a_token_of_deeply_nested_json_is_no_tenant_not_a_crash() -> None:
    """JSON nested thousands deep fits in the 8 KB token limit and overflows the decoder's
    recursion: it is a bad token (no tenant), not a 500 for whoever sends it."""
    src = TenantSource(jwt_claim="tid")
    deep = b64(b"[" * 6000)
    for token in (f"{deep}.{b64(b'{}')}.x", f"{b64(b'{}')}.{deep}.x"):
        assert extract_tenant(src, headers=bearer(token), host="") is None


def test_jwt_claim_verified_with_key_rejects_forgeries() -> None:
    src = TenantSource(jwt_claim="tid", jwt_leeway=0)
    key = b"s3cret"
    good = jwt({"tid": "acme", "exp": 2000}, key)
    assert extract_tenant(src, headers=bearer(good), host="", jwt_key=key, now=1000) == "acme"
    forged = jwt({"tid": "acme", "exp": 2000}, b"guess")
    assert extract_tenant(src, headers=bearer(forged), host="", jwt_key=key, now=1000) is None
    expired = jwt({"tid": "acme", "exp": 999}, key)
    assert extract_tenant(src, headers=bearer(expired), host="", jwt_key=key, now=1000) is None
    early = jwt({"tid": "acme", "nbf": 1500}, key)
    assert extract_tenant(src, headers=bearer(early), host="", jwt_key=key, now=1000) is None
    none_alg = jwt({"tid": "acme"}, key, alg="none")
    assert extract_tenant(src, headers=bearer(none_alg), host="", jwt_key=key, now=1) is None
    # Swapping the payload of a valid token breaks its signature.
    head, _, sig = good.split(".")
    swapped = f"{head}.{b64(json.dumps({'tid': 'bigcorp'}).encode())}.{sig}"
    assert extract_tenant(src, headers=bearer(swapped), host="", jwt_key=key, now=1) is None


def test_exp_and_nbf_allow_the_clock_skew_of_jwt_leeway() -> None:
    """An issuer whose clock runs ahead (or a proxy whose clock runs behind) must not make
    a fresh token name no tenant: 60 s of skew by default, as Envoy's jwt_authn."""
    key = b"s3cret"
    default, strict = TenantSource(jwt_claim="tid"), TenantSource(jwt_claim="tid", jwt_leeway=0)
    assert default.jwt_leeway == 60.0

    def tenant(src: TenantSource, claims: dict) -> str | None:
        token = jwt({"tid": "acme", **claims}, key)
        return extract_tenant(src, headers=bearer(token), host="", jwt_key=key, now=1000)

    assert tenant(default, {"exp": 950}) == "acme"  # expired 50 s ago: within the skew
    assert tenant(strict, {"exp": 950}) is None
    assert tenant(default, {"exp": 940}) is None  # 60 s ago: expired
    assert tenant(default, {"nbf": 1059}) == "acme"  # valid in 59 s: within the skew
    assert tenant(strict, {"nbf": 1059}) is None
    assert tenant(default, {"nbf": 1061}) is None


def test_a_repeated_header_is_no_tenant_and_only_ows_is_trimmed() -> None:
    src = TenantSource(header="X-Tenant-ID")
    twice = [("X-Tenant-ID", "acme"), ("x-tenant-id", "globex")]
    assert extract_tenant(src, headers=twice, host="") is None
    assert extract_tenant(src, headers=[("X-Tenant-ID", "\tacme ")], host="") == "acme"
    # The upstream would see the no-break space: so it is not a valid "acme".
    assert extract_tenant(src, headers=[("X-Tenant-ID", "acme\u00a0")], host="") is None


@pytest.mark.parametrize("claim", ["exp", "nbf"])
@pytest.mark.parametrize("value", ["99999999999", None, True, [1], float("nan"), float("inf")])
def test_a_verified_token_needs_numeric_dates(claim, value) -> None:
    src = TenantSource(jwt_claim="tid")
    key = b"s3cret"
    token = jwt({"tid": "acme", claim: value}, key)
    assert extract_tenant(src, headers=bearer(token), host="", jwt_key=key, now=1000) is None


def test_host_pattern() -> None:
    src = TenantSource(host="{tenant}.shop.example")
    assert extract_tenant(src, headers={}, host="acme.shop.example") == "acme"
    assert extract_tenant(src, headers={}, host="ACME.Shop.Example:8443") == "acme"
    assert extract_tenant(src, headers={}, host="acme.shop.example.") == "acme"
    assert extract_tenant(src, headers={}, host="shop.example") is None
    assert extract_tenant(src, headers={}, host="a.b.shop.example") is None
    assert extract_tenant(src, headers={}, host="acme.shop.example.evil.com") is None
    assert extract_tenant(src, headers={}, host="acmeXshop.example") is None
    assert extract_tenant(src, headers={}, host="[::1]:80") is None


def test_host_pattern_must_name_the_tenant_once() -> None:
    with pytest.raises(ValueError, match=r"tenant.host .*exactly once"):
        host_pattern("shop.example")
