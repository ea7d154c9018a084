"""The tenant a request belongs to, from a header, a JWT claim or the host name (pure).

The tenant decides pins (`tenants: {extracted: [...], legacy: [...]}`) and may be the
canary's sticky key, so it must be hard to forge where that matters:

- `header`: trusted as sent. Use it only when an edge in front of the proxy sets or strips it.
- `jwt_claim`: with `jwt_key` (an HS256 secret, from `jwt_secret_env`) the signature and
  `exp`/`nbf` (with `jwt_leeway` seconds of clock skew) are verified and a bad token yields
  no tenant. WITHOUT a key the claim is read from the unverified payload: anyone can mint a
  token naming any tenant. That is only acceptable when the proxy's choice is not a
  security boundary (both sides enforce their own auth and tenant checks); `strangler
  check` warns.
- `host`: from the Host header, matched against a pattern such as `{tenant}.shop.example`.

Anything that does not look like a tenant id (see `TENANT_RE`) is treated as absent, so a
hostile value never reaches logs, metrics labels or Redis keys. So is a header sent more than
once: the proxy reads the headers it forwards, and an upstream would read `acme, globex` (or
the last value) where the proxy read `acme`. Only spaces and tabs are trimmed (RFC 9110 OWS),
never the Unicode spaces `str.strip` takes, which the upstream would still see.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache

from proxy.config.model import TenantSource

TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_TOKEN = 8192
_INF = float("inf")


def extract_tenant(
    source: TenantSource | None,
    *,
    headers: Mapping[str, str] | Sequence[tuple[str, str]],
    host: str,
    jwt_key: bytes | tuple[bytes, ...] | None = None,
    now: float | None = None,
) -> str | None:
    """The tenant id, or None when not configured, absent, repeated or malformed. Pass the
    headers as forwarded (after hop-by-hop removal), so the upstream sees what was read.
    `jwt_key` may be several secrets (the current one and, while keys rotate, the
    previous one): a token signed with any of them verifies."""
    if source is None:
        return None
    if source.header:
        value = _header(headers, source.header.lower())
    elif source.jwt_claim:
        value = _jwt_claim(
            _header(headers, "authorization"),
            source.jwt_claim,
            jwt_key,
            time.time() if now is None else now,
            source.jwt_leeway,
        )
    elif source.host:
        value = _from_host(source.host, host)
    else:
        return None
    if value is None:
        return None
    value = value.strip(" \t")
    return value if TENANT_RE.fullmatch(value) else None


def _header(headers: Mapping[str, str] | Sequence[tuple[str, str]], lower_name: str) -> str | None:
    """The header's one value; None when absent or sent more than once (ambiguous)."""
    found = None
    for key, val in headers.items() if isinstance(headers, Mapping) else headers:
        if len(key) == len(lower_name) and key.lower() == lower_name:
            if found is not None:
                return None
            found = val
    return found


@lru_cache(maxsize=64)
def host_pattern(pattern: str) -> re.Pattern[str]:
    """`"{tenant}.shop.example"` -> a regex capturing one DNS label; ValueError if unusable."""
    if pattern.count("{tenant}") != 1:
        raise ValueError(
            f"tenant.host {pattern!r}: must contain {{tenant}} exactly once, "
            'e.g. "{tenant}.shop.example"'
        )
    before, after = pattern.lower().split("{tenant}")
    return re.compile(
        re.escape(before) + r"([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)" + re.escape(after)
    )


def _from_host(pattern: str, host: str) -> str | None:
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal: never a tenant
        return None
    host = host.rsplit(":", 1)[0] if ":" in host else host
    host = host.rstrip(".")
    match = host_pattern(pattern).fullmatch(host)
    return match.group(1) if match else None


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _jwt_claim(
    auth: str | None,
    claim: str,
    key: bytes | tuple[bytes, ...] | None,
    now: float,
    leeway: float,
) -> str | None:
    if not auth:
        return None
    # Any run of spaces and tabs after the scheme: the services behind (DRF's `split()`,
    # most JWT middleware) accept `Bearer<TAB>token`, so a tenant pin must read it too.
    scheme, _, token = auth.strip(" \t").replace("\t", " ").partition(" ")
    token = token.strip(" ")
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN:
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(_b64url(parts[0]))
        payload = json.loads(_b64url(parts[1]))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return None  # RecursionError: JSON nested thousands deep, fits in 8 KB
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    if key is not None and not _verified(parts, header, payload, key, now, leeway):
        return None
    value = payload.get(claim)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) else None


def _verified(
    parts: list[str],
    header: dict,
    payload: dict,
    key: bytes | tuple[bytes, ...],
    now: float,
    leeway: float,
) -> bool:
    if header.get("alg") != "HS256":  # never "none", never an algorithm the token picks
        return False
    try:
        signature = _b64url(parts[2])
    except (binascii.Error, ValueError):
        return False
    signed = f"{parts[0]}.{parts[1]}".encode("ascii")
    keys = (key,) if isinstance(key, bytes) else key
    if not any(
        hmac.compare_digest(hmac.new(k, signed, hashlib.sha256).digest(), signature) for k in keys
    ):
        return False
    for claim in ("exp", "nbf"):  # RFC 7519 §4.1.4: when present, a NumericDate
        if claim in payload:
            value = payload[claim]
            if type(value) not in (int, float) or value != value or value in (_INF, -_INF):
                return False  # a string, null, boolean, NaN or infinity is no date
    if "exp" in payload and now >= payload["exp"] + leeway:
        return False
    return not ("nbf" in payload and now < payload["nbf"] - leeway)
