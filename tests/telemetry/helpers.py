"""Small builders for the telemetry tests: configs from plain values, log capture."""

from __future__ import annotations

import io
import json
from types import MappingProxyType

from proxy.config.model import (
    CanaryPolicy,
    Config,
    Match,
    Route,
    TelemetryConfig,
    Upstream,
)
from proxy.telemetry.metrics import samples_from_text


def make_config(
    routes: list[tuple[str, str, str]] | None = None,
    *,
    version: int = 1,
    telemetry: TelemetryConfig | None = None,
    canary: dict[str, float] | None = None,
) -> Config:
    """A Config with upstreams legacy/customers and routes given as (name, path, mode)."""
    routes = routes or [("customers", "/api/customers/{id}", "extracted")]
    canary = canary or {}
    upstreams = {
        "legacy": Upstream(name="legacy", url="http://127.0.0.1:8101", port=8101),
        "customers": Upstream(name="customers", url="http://127.0.0.1:8102", port=8102),
    }
    built = tuple(
        Route(
            name=name,
            match=Match(path=path) if "{" in path else Match(prefix=path),
            mode=mode,
            target=None if mode == "legacy" else "customers",
            canary=CanaryPolicy(percent=canary.get(name, 0.0)),
            line=i + 1,
        )
        for i, (name, path, mode) in enumerate(routes)
    )
    return Config(
        version=version,
        upstreams=MappingProxyType(upstreams),
        routes=built,
        telemetry=telemetry or TelemetryConfig(),
    )


def json_lines(stream: io.StringIO) -> list[dict]:
    """Every line written so far, each parsed as JSON (fails the test if one is not)."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def value(text: bytes, name: str, **labels: str) -> float:
    """The sum of samples called `name` whose labels include `labels` (0 when absent)."""
    total = 0.0
    for sname, slabels, v in samples_from_text(text.decode()):
        if sname == name and all(slabels.get(k) == want for k, want in labels.items()):
            total += v
    return total
