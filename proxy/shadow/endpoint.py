"""Group raw paths into endpoints (route + path template), so `/api/customers/17` and
`/api/customers/18` are one row in a report instead of thousands."""

from __future__ import annotations

import re

from proxy.config.model import Route

# Segments that name one thing rather than a resource: numbers, UUIDs, long hex, JWTs
# (`eyJ...`, dots between base64url parts), long opaque tokens (24+ characters, dots and
# base64 padding included), and shorter ones that mix upper case, lower case and digits
# (16+: session ids; a slug or a word does not mix them).
_ID_SEGMENT = re.compile(
    r"\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}|eyJ[A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]*){1,4}|[A-Za-z0-9._~+=%\-]{24,}"
    r"|(?=[^a-z]*[a-z])(?=[^A-Z]*[A-Z])(?=\D*\d)[A-Za-z0-9_\-]{16,}"
)


def _segment(part: str) -> str:
    """One segment generalised; path parameters (`;jsessionid=...`, a session id some servers
    put in the path) keep their name, never their value."""
    base, *params = part.split(";")
    out = "{id}" if base and _ID_SEGMENT.fullmatch(base) else base
    for param in params:
        name, eq, _ = param.partition("=")
        out += (
            f";{name}={{value}}" if eq else ";{id}" if _ID_SEGMENT.fullmatch(param) else f";{param}"
        )
    return out


def generalize_path(path: str) -> str:
    """Replace id-like segments (numbers, UUIDs, long hex, JWTs, opaque tokens) with `{id}`
    and path parameter values with `{value}`."""
    return "/".join(_segment(part) for part in path.split("/"))


def endpoint_template(route: Route, path: str) -> str:
    """The route's own template when it has one (`match.path` with `{params}`), else the
    request path with id-like segments generalised."""
    template = route.match.path
    if template and "{" in template:
        return template
    if template:
        return template
    return generalize_path(path.split("?", 1)[0])
