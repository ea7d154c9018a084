"""Observability: Prometheus metrics, OpenTelemetry traces, structured logs, redaction.

The request path uses one `Telemetry` per process; see docs/operations.md.
"""

from proxy.telemetry.core import Telemetry, attempt_result, http_route
from proxy.telemetry.metrics import (
    EVENTS,
    mark_worker_dead,
    prepare_multiprocess_dir,
    remove_multiprocess_dir,
)
from proxy.telemetry.redact import REDACTED, Redactor

__all__ = [
    "EVENTS",
    "REDACTED",
    "Redactor",
    "Telemetry",
    "attempt_result",
    "http_route",
    "mark_worker_dead",
    "prepare_multiprocess_dir",
    "remove_multiprocess_dir",
]
