"""What one request gathered along the pipeline: the facts logs, metrics and traces report."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config.model import Route
from proxy.telemetry.spans import Span

LEGACY = "legacy"
EXTRACTED = "extracted"
PROXY = "proxy"  # the proxy answered itself before any upstream was chosen (a refused request)


def loggable_target(raw: str) -> tuple[str, str | None]:
    """A raw request target as (path, query) for the access line, whatever its form: the
    query apart (so it is redacted as any query is) and an absolute form's scheme and
    authority (with any `user:password@`) dropped."""
    target, sep, query = raw.partition("?")
    if not target.startswith("/") and "://" in target:
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    return target, (query if sep else None)


@dataclass(slots=True)
class Exchange:
    request_id: str
    method: str
    path: str
    route: Route | None
    query: str | None = None
    side: str = LEGACY
    upstream: str = ""
    status: int = 0
    bytes_out: int = 0
    tenant: str | None = None
    fallback_reason: str | None = None
    attempts: int = 0
    span: Span | None = None
    error: str | None = None
    client: str = ""

    @property
    def route_name(self) -> str:
        return self.route.name if self.route else "default"

    @property
    def mode(self) -> str:
        return self.route.mode if self.route else LEGACY
