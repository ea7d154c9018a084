"""Forward authentication at the gateway: what the check is asked and what its answer means.

An extracted service gets a request only once the identity provider (usually the monolith,
through `auth.upstream` and `auth.path`) has said yes to the client's credentials; the
service never sees a request the monolith would have refused, and inherits no token store.
This is nginx's `auth_request`, Traefik's ForwardAuth and Envoy's ext_authz, in the
vocabulary of Traefik (`X-Forwarded-Method`, `X-Forwarded-Uri`). Pure: the I/O is the
handler's (`ProxyHandler._authorize`).
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.config.model import AuthCheck, Route
from proxy.filters.headers import HOP_BY_HOP, Header

# Sent to the check besides `auth.send`: who is asking, over what, as the proxy forwards it.
_CONTEXT = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "via",
        "x-request-id",
        "traceparent",
        "tracestate",
    }
)
# What the proxy tells the check itself: a client's own copies never reach it, even with
# these names in `auth.send` (a check reads the first of two values, and the client's came
# first: `X-Forwarded-Uri: /public` had a DELETE on /admin judged as a GET of /public).
# Traefik's ForwardAuth replaces them too.
_SET_HERE = frozenset({"x-forwarded-method", "x-forwarded-uri", "host"})
# Fields of the check's own answer that are not relayed with a refusal: framing (the proxy
# re-frames the body it read) and the proxy's own request id.
_NOT_RELAYED = HOP_BY_HOP | {"content-length", "x-request-id"}

ANSWER_LIMIT = 64 * 1024  # a refusal's body is relayed up to this size


def applies(auth: AuthCheck | None, route: Route | None, extracted: bool) -> bool:
    """Whether this request is checked: an `auth:` is configured, the request goes to the
    route's target (legacy checks its own), and the route did not opt out."""
    return auth is not None and extracted and route is not None and route.auth


def may_apply(auth: AuthCheck | None, route: Route | None) -> bool:
    """Whether a request on `route` could be checked, before its side is chosen."""
    return auth is not None and route is not None and route.auth and route.target is not None


def check_headers(
    auth: AuthCheck, forwarded: Sequence[Header], *, method: str, uri: str, host: str
) -> list[Header]:
    """The check request's headers: the `send` ones and the forwarding context, as they
    are forwarded (hop-by-hop fields and client forgeries already gone), plus what the
    request is for."""
    wanted = _CONTEXT.union(auth.send) - _SET_HERE
    out = [(name, value) for name, value in forwarded if name.lower() in wanted]
    out += [("X-Forwarded-Method", method), ("X-Forwarded-Uri", uri), ("Host", host)]
    return out


def allowed(status: int) -> bool:
    return 200 <= status < 300


def copied(auth: AuthCheck, answer: Sequence[Header]) -> list[Header]:
    """From a 2xx answer, the `copy` headers to add to the forwarded request. Clients'
    copies of those names never reach an upstream (`Runtime.client_drop`)."""
    if not auth.copy:
        return []
    return [(name, value) for name, value in answer if name.lower() in auth.copy]


def refusal_headers(answer: Sequence[Header]) -> list[Header]:
    """The check's answer fields relayed with its refusal (`WWW-Authenticate`, `Location`,
    `Content-Type`, `Set-Cookie`...)."""
    return [(name, value) for name, value in answer if name.lower() not in _NOT_RELAYED]
