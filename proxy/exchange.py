"""What one request gathered along the pipeline: the facts logs, metrics and traces report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.config.model import Route
from proxy.telemetry.spans import Span
from proxy.telemetry.tracing import trace_id_from_headers

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
    # The client's headers, read only when a log line needs the trace id of a request that
    # has no span (tracing off: the id of the client's `traceparent`).
    client_headers: Any = None

    def log_ids(self) -> dict[str, str | None]:
        """`request_id` and `trace_id` for a log line about this request (`extra=`)."""
        span = self.span
        if span is not None:
            trace_id: str | None = span.trace_hex()
        elif self.client_headers is not None:
            trace_id = trace_id_from_headers(self.client_headers)
        else:
            trace_id = None
        return {"request_id": self.request_id, "trace_id": trace_id}

    @property
    def route_name(self) -> str:
        return self.route.name if self.route else "default"

    @property
    def mode(self) -> str:
        return self.route.mode if self.route else LEGACY
