"""One `upstreams.NAME` entry -> `Upstream`: URL, timeouts and resilience policies.

The policy keys are exactly the field names of the model's dataclasses (a test keeps the
two in step), each with the range that keeps the policy meaningful: a breaker that opens
after 0 failures or a bulkhead of 0 slots would fail every request.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from yaml.nodes import Node, ScalarNode

from proxy.config.model import BreakerPolicy, BulkheadPolicy, RetryPolicy, Timeouts, Upstream
from proxy.config.problems import Invalid
from proxy.config.values import check_hostname, parse_http_url
from proxy.config.yamlread import Reader

UPSTREAM_KEYS = ("url", "timeout", "host_header", "retry", "breaker", "bulkhead")

# field -> (kind, lo, hi, lo_open); "int" whole numbers, "num" seconds or ratios
Spec = dict[str, tuple[str, float | None, float | None, bool]]
TIMEOUT_SPEC: Spec = {
    "connect": ("num", 0, 3600, True),
    "read": ("num?", 0, 86400, True),
    "total": ("num?", 0, 86400, True),
    "idle": ("num", 0, 3600, True),
}
RETRY_SPEC: Spec = {
    "retries": ("int", 0, 10, False),
    "backoff_base": ("num", 0, 60, False),
    "backoff_max": ("num", 0, 600, False),
    "budget_percent": ("num", 0, 100, False),
    "budget_min_concurrent": ("int", 0, 100_000, False),
    "retry_on_status": ("statuses", 400, 599, False),
}
BREAKER_SPEC: Spec = {
    "consecutive_failures": ("int", 1, 100_000, False),
    "failure_ratio": ("num", 0, 1, True),
    "window": ("num", 0, 3600, True),
    "min_requests": ("int", 1, 1_000_000, False),
    "open_for": ("num", 0, 3600, True),
    "half_open_probes": ("int", 1, 1000, False),
    "failures": ("choice", ("5xx", "gateway"), None, False),
}
BULKHEAD_SPEC: Spec = {
    "max_concurrent": ("int", 1, 1_000_000, False),
    "max_queued": ("int", 0, 1_000_000, False),
    "queue_timeout": ("num", 0, 3600, False),
}


def read_upstream(r: Reader, name: str, node: Node, field: str) -> Upstream | None:
    """`None` when the URL is unusable; other wrong values are reported and defaulted."""
    if isinstance(node, ScalarNode) and not node.tag.endswith(":null"):
        fields: dict[str, Node] | None = {"url": node}  # shorthand `legacy: http://...`
        url_field = field
    else:
        fields = r.mapping(node, field, UPSTREAM_KEYS, required=("url",), what=f"upstream {name!r}")
        url_field = f"{field}.url"
    if fields is None or "url" not in fields:
        return None
    url_text = r.text(
        fields["url"], url_field, fix="write it like http://127.0.0.1:8000", required=True
    )
    url = None
    if url_text is not None:
        try:
            url = parse_http_url(url_text)
        except Invalid as exc:
            r.report(fields["url"], url_field, exc.message, exc.fix)
    # The other fields are read even when the URL is unusable: `check` lists every problem.
    host_header = r.text(
        fields.get("host_header"),
        f"{field}.host_header",
        check=_check_host_header,
        fix="write a host name like shop.example (a port may follow ':')",
    )
    timeout = read_policy(r, fields.get("timeout"), f"{field}.timeout", Timeouts(), TIMEOUT_SPEC)
    retry = read_policy(r, fields.get("retry"), f"{field}.retry", RetryPolicy(), RETRY_SPEC)
    if retry.backoff_max < retry.backoff_base:
        node_ = fields.get("retry")
        r.report(
            node_,
            f"{field}.retry.backoff_max",
            f"backoff_max ({retry.backoff_max}) is below backoff_base ({retry.backoff_base})",
            "make backoff_max at least backoff_base",
        )
    breaker = read_policy(
        r, fields.get("breaker"), f"{field}.breaker", BreakerPolicy(), BREAKER_SPEC
    )
    bulkhead = read_policy(
        r, fields.get("bulkhead"), f"{field}.bulkhead", BulkheadPolicy(), BULKHEAD_SPEC
    )
    if url is None:
        return None
    return Upstream(
        name=name,
        url=url.url,
        scheme=url.scheme,
        host=url.host,
        port=url.port,
        base_path=url.base_path,
        timeout=timeout,
        host_header=_host_header(host_header),
        retry=retry,
        breaker=breaker,
        bulkhead=bulkhead,
    )


def _host_header(value: str | None) -> str | None:
    return value.lower() if value else None


def _check_host_header(text: str) -> str | None:
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if port and not port.isdigit():
        return f"{text!r} has an invalid port"
    return check_hostname(host or text)


def read_policy(r: Reader, node: Node | None, field: str, default: Any, spec: Spec) -> Any:
    """A frozen policy dataclass from a mapping whose keys are its field names."""
    if node is None:
        return default
    fields = r.mapping(node, field, tuple(spec))
    if fields is None:
        return default
    values: dict[str, Any] = {}
    for key, value_node in fields.items():
        kind, lo, hi, lo_open = spec[key]
        current = getattr(default, key)
        path = f"{field}.{key}"
        if kind == "int":
            values[key] = r.integer(value_node, path, current, lo=int(lo), hi=int(hi))
        elif kind == "choice":
            values[key] = r.text(value_node, path, current, choices=lo)
        elif kind == "statuses":
            statuses = set()
            for i, item in enumerate(r.sequence(value_node, path, scalar_ok=True)):
                status = r.integer(item, f"{path}[{i}]", 0, lo=int(lo), hi=int(hi))
                if status:
                    statuses.add(status)
            values[key] = frozenset(statuses)
        else:
            unit = " (seconds)" if key not in ("failure_ratio", "budget_percent") else ""
            values[key] = r.number(
                value_node,
                path,
                current,
                lo=lo,
                hi=hi,
                lo_open=lo_open,
                nullable=kind == "num?",
                unit=unit,
            )
    return replace(default, **values)
