"""JWT tenant claims are verified when routes.yaml names the secret's environment variable."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from proxy.config.loader import ConfigError, config_warnings, parse_config
from proxy.filters.tenant import extract_tenant
from proxy.runtime import Runtime

BASE = """\
version: 1
upstreams:
  legacy: {url: "http://127.0.0.1:8000"}
default: legacy
routes: []
"""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(claims: dict, secret: bytes) -> str:
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def test_secret_env_is_read_once_at_load_and_verifies_tokens(monkeypatch):
    monkeypatch.setenv("TENANT_JWT_SECRET", "s3cret")
    config = parse_config(BASE + "tenant: {jwt_claim: tid, jwt_secret_env: TENANT_JWT_SECRET}\n")
    rt = Runtime.build(config)
    assert rt.tenant_keys == (b"s3cret",)
    assert not any("signature" in w for w in config_warnings(config))
    good = {"authorization": "Bearer " + token({"tid": "acme"}, b"s3cret")}
    forged = {"authorization": "Bearer " + token({"tid": "acme"}, b"guess")}
    assert extract_tenant(config.tenant, headers=good, host="", jwt_key=rt.tenant_keys) == "acme"
    assert extract_tenant(config.tenant, headers=forged, host="", jwt_key=rt.tenant_keys) is None


def test_while_secrets_rotate_tokens_of_the_previous_secret_verify_too(monkeypatch):
    """Issuer and proxies cannot switch secrets at one instant: with the previous secret
    beside the current one, tokens of both verify; without it (the rotation over), only
    the current secret's do, and a token of a secret never named verifies under none."""
    monkeypatch.setenv("TENANT_JWT_SECRET", "new")
    monkeypatch.setenv("TENANT_JWT_SECRET_OLD", "old")
    text = BASE + (
        "tenant: {jwt_claim: tid, jwt_secret_env: TENANT_JWT_SECRET,"
        " jwt_previous_secret_env: TENANT_JWT_SECRET_OLD}\n"
    )
    config = parse_config(text)
    keys = Runtime.build(config).tenant_keys
    assert keys == (b"new", b"old")

    def tenant(secret: bytes, keys) -> str | None:
        auth = {"authorization": "Bearer " + token({"tid": "acme"}, secret)}
        return extract_tenant(config.tenant, headers=auth, host="", jwt_key=keys)

    assert tenant(b"new", keys) == "acme" and tenant(b"old", keys) == "acme"
    assert tenant(b"guess", keys) is None
    monkeypatch.delenv("TENANT_JWT_SECRET_OLD")  # the next start, after the rotation
    after = Runtime.build(config).tenant_keys
    assert after == (b"new",)
    assert tenant(b"new", after) == "acme" and tenant(b"old", after) is None


def test_previous_secret_env_only_beside_a_secret_env():
    with pytest.raises(ConfigError, match="jwt_previous_secret_env only applies"):
        parse_config(BASE + "tenant: {jwt_claim: tid, jwt_previous_secret_env: OLD}\n")
    with pytest.raises(ConfigError, match="tenant.jwt_previous_secret_env"):
        parse_config(
            BASE + "tenant: {jwt_claim: tid, jwt_secret_env: S, jwt_previous_secret_env: 'a b'}\n"
        )


def test_missing_secret_variable_stops_the_load(monkeypatch):
    monkeypatch.delenv("NOPE_SECRET", raising=False)
    config = parse_config(BASE + "tenant: {jwt_claim: tid, jwt_secret_env: NOPE_SECRET}\n")
    with pytest.raises(ValueError, match="NOPE_SECRET"):
        Runtime.build(config)


def test_unverified_claims_are_warned_about():
    config = parse_config(BASE + "tenant: {jwt_claim: tid}\n")
    assert any("signature" in w for w in config_warnings(config))


def test_secret_env_only_with_a_jwt_claim():
    with pytest.raises(ConfigError, match="jwt_secret_env only applies"):
        parse_config(BASE + "tenant: {header: X-Tenant-ID, jwt_secret_env: X}\n")


def test_jwt_leeway_is_read_and_checked():
    config = parse_config(BASE + "tenant: {jwt_claim: tid, jwt_secret_env: S, jwt_leeway: 5}\n")
    assert config.tenant.jwt_leeway == 5.0
    assert (
        parse_config(BASE + "tenant: {jwt_claim: tid, jwt_secret_env: S}\n").tenant.jwt_leeway == 60
    )
    with pytest.raises(ConfigError, match=r"tenant\.jwt_leeway.*out of range.*0 to 600"):
        parse_config(BASE + "tenant: {jwt_claim: tid, jwt_secret_env: S, jwt_leeway: 3600}\n")
    with pytest.raises(ConfigError, match="jwt_leeway only applies to verified JWTs"):
        parse_config(BASE + "tenant: {jwt_claim: tid, jwt_leeway: 5}\n")
    with pytest.raises(ConfigError, match="jwt_leeway only applies"):
        parse_config(BASE + "tenant: {header: X-Tenant-ID, jwt_leeway: 5}\n")


def test_check_validates_a_file_whose_secret_is_not_here_and_warns(tmp_path, monkeypatch):
    """CI validates routes.yaml without the production secret: `check` accepts the file and
    warns that `serve` needs the variable; `serve` still refuses to start without it."""
    import subprocess
    import sys

    from tests.support.procs import ROOT

    monkeypatch.delenv("NOPE_SECRET", raising=False)
    path = tmp_path / "routes.yaml"
    path.write_text(BASE + "tenant: {jwt_claim: tid, jwt_secret_env: NOPE_SECRET}\n")
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "check", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{path}: OK" in out.stdout
    warning = next(line for line in out.stdout.splitlines() if "NOPE_SECRET" in line)
    assert warning.startswith(f"warning: {path}: tenant.jwt_secret_env")
    assert warning.count(str(path)) == 1
