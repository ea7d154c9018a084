"""Which side serves a request: legacy or the extracted target (pure, no I/O).

Canary splits hash a sticky key into a fixed space of `BUCKETS` buckets and send bucket `b`
to the extracted side when `b < percent * BUCKETS / 100`. The threshold only grows with the
percentage, so raising P moves keys from legacy to extracted and never back, and the same
key lands on the same side on every replica and after every reload: there is no per-key
state anywhere. The hash is salted with the target's name so that every route of one
extracted service sees the same cohort (a user's list and detail calls agree), while two
different services get independent cohorts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from proxy.config.model import Route

Side = Literal["legacy", "extracted"]
BUCKETS = 10_000
STICKY_KINDS = ("header", "cookie", "tenant", "ip")


def bucket(key: str, salt: str = "") -> int:
    """The key's bucket in [0, BUCKETS): blake2b, stable across processes and versions."""
    digest = hashlib.blake2b(
        key.encode("utf-8", "surrogatepass"), digest_size=8, person=_person(salt)
    ).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def _person(salt: str) -> bytes:
    # blake2b's personalisation is at most 16 bytes; longer salts are hashed down to fit.
    raw = salt.encode("utf-8", "surrogatepass")
    return raw if len(raw) <= 16 else hashlib.blake2b(raw, digest_size=16).digest()


def threshold(percent: float) -> int:
    """Buckets below this number go to the extracted side."""
    if percent <= 0:
        return 0
    if percent >= 100:
        return BUCKETS
    return int(round(percent * BUCKETS / 100))


def choose_side(route: Route, *, tenant: str | None, sticky_key: str | None, rand: float) -> Side:
    """The primary side for one request.

    `rand` is a uniform float in [0, 1) supplied by the caller (so this stays pure); it is
    used only when the route has no sticky key or the request lacks one. Tenant pins win
    over the mode and the percentage; a legacy pin wins over an extracted pin (the safe
    side). Shadow mode always answers from legacy (the candidate is a side channel), and a
    route without a target can only be served by legacy.
    """
    if route.mode == "shadow" or route.target is None:
        return "legacy"
    if tenant is not None:
        if tenant in route.tenants.legacy:
            return "legacy"
        if tenant in route.tenants.extracted:
            return "extracted"
    if route.mode == "legacy":
        return "legacy"
    if route.mode == "extracted":
        return "extracted"
    limit = threshold(route.canary.percent)
    if limit <= 0:
        return "legacy"
    if limit >= BUCKETS:
        return "extracted"
    if sticky_key is not None:
        return "extracted" if bucket(sticky_key, route.target) < limit else "legacy"
    return "extracted" if rand * BUCKETS < limit else "legacy"


@lru_cache(maxsize=256)
def parse_sticky(spec: str | None) -> tuple[str, str | None] | None:
    """`"header:X-User-Id"` -> `("header", "x-user-id")`; raises ValueError naming the fix."""
    if spec is None:
        return None
    kind, _, name = spec.partition(":")
    kind = kind.strip().lower()
    name = name.strip()
    if kind in ("header", "cookie"):
        if not name:
            raise ValueError(
                f"canary.sticky {spec!r}: {kind} needs a name, e.g. "
                f'"{kind}:{"X-User-Id" if kind == "header" else "session"}"'
            )
        return kind, name.lower() if kind == "header" else name
    if kind in ("tenant", "ip"):
        if name:
            raise ValueError(f'canary.sticky {spec!r}: "{kind}" takes no name; write "{kind}"')
        return kind, None
    raise ValueError(
        f"canary.sticky {spec!r}: unknown kind {kind!r}; use one of "
        '"header:NAME", "cookie:NAME", "tenant", "ip"'
    )


def sticky_key(
    route: Route,
    *,
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    tenant: str | None,
    client_ip: str,
) -> str | None:
    """The request's sticky key, or None (then the split is random).

    `client_ip` must be the address the proxy trusts (the peer, or what a trusted proxy
    forwarded), never a raw client-supplied X-Forwarded-For. A sticky header or cookie is
    client-controlled: a client may pick its side, which is fine for a canary (it is not an
    access control) but means pins, not stickiness, must be used to keep a tenant off a side.
    """
    parsed = parse_sticky(route.canary.sticky)
    if parsed is None:
        return None
    kind, name = parsed
    if kind == "header":
        value = _header(headers, name or "")
    elif kind == "cookie":
        value = cookies.get(name or "")
    elif kind == "tenant":
        value = tenant
    else:
        value = client_ip
    if value is None:
        return None
    value = value.strip()
    return value or None


def _header(headers: Mapping[str, str], lower_name: str) -> str | None:
    value = headers.get(lower_name)
    if value is not None:
        return value
    for key, val in headers.items():  # plain dicts are case-sensitive; multidicts are not
        if key.lower() == lower_name:
            return val
    return None
