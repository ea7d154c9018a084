"""Group raw paths into endpoints (route + path template), so `/api/customers/17` and
`/api/customers/18` are one row in a report instead of thousands."""

from __future__ import annotations

import re

from proxy.config.model import Route

_ID_SEGMENT = re.compile(
    r"\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}|[A-Za-z0-9_\-]{24,}"
)


def generalize_path(path: str) -> str:
    """Replace id-like segments (numbers, UUIDs, long hex or tokens) with `{id}`."""
    parts = path.split("/")
    return "/".join("{id}" if part and _ID_SEGMENT.fullmatch(part) else part for part in parts)


def endpoint_template(route: Route, path: str) -> str:
    """The route's own template when it has one (`match.path` with `{params}`), else the
    request path with id-like segments generalised."""
    template = route.match.path
    if template and "{" in template:
        return template
    if template:
        return template
    return generalize_path(path.split("?", 1)[0])
