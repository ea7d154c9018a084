"""Plain data that flows through shadowing: requests, captured responses, differences, records.

Everything here is immutable and free of I/O so the comparator, the store and the report can
be tested without sockets and shared between processes as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Headers = tuple[tuple[str, str], ...]

# Diffy's difference kinds, plus `incomparable` (bodies of different or unparsable kinds) and
# `error` (the candidate did not answer: refused, timed out, reset).
KINDS = ("value", "type", "missing", "extra", "order", "length", "incomparable", "error")


def headers_of(items: Mapping[str, str] | Iterable[tuple[str, str]]) -> Headers:
    """Header pairs with lower-case names; accepts a dict, a multidict or pairs."""
    pairs = items.items() if hasattr(items, "items") else items
    return tuple((str(k).lower(), str(v)) for k, v in pairs)


@dataclass(frozen=True, slots=True)
class ShadowRequest:
    """The client's request as the primary (legacy) received it.

    `path` is the legacy path without the query string. `candidate_path` is the path the
    handler already rewrote for the candidate (`route.rewrite`); `None` means the candidate
    gets `path` unchanged. The route's ACL `translate_request` sees both (the legacy path to
    match its rules, the rewritten one as a default) and may set a new `candidate_path`.
    """

    method: str
    path: str
    query: str | None = None  # raw query string without "?"; None when there was no "?"
    headers: Headers = ()
    body: bytes = b""
    candidate_path: str | None = None

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class CapturedResponse:
    """A fully buffered response and how long it took (seconds, first byte sent to last read)."""

    status: int
    headers: Headers = ()
    body: bytes = b""
    latency: float = 0.0

    def header(self, name: str) -> str | None:
        name = name.lower()
        values = [value for key, value in self.headers if key == name]
        return ", ".join(values) if values else None


@dataclass(frozen=True, slots=True)
class Difference:
    """One differing field: `path` is concrete (`$.items[3].total`), `field` the same path with
    list positions generalised (`$.items[*].total`) so it can be counted across samples."""

    path: str
    field: str
    kind: str
    primary: Any = None
    candidate: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "field": self.field,
            "kind": self.kind,
            "primary": self.primary,
            "candidate": self.candidate,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Difference:
        return cls(
            path=data["path"],
            field=data.get("field", data["path"]),
            kind=data["kind"],
            primary=data.get("primary"),
            candidate=data.get("candidate"),
        )


@dataclass(frozen=True, slots=True)
class Comparison:
    """The outcome of comparing two responses."""

    differences: tuple[Difference, ...]
    body_kind: str  # json | text | binary | empty | incomparable

    @property
    def match(self) -> bool:
        return not self.differences

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(d.field for d in self.differences)


@dataclass(frozen=True, slots=True)
class DiffRecord:
    """One shadowed request as the store keeps it (already redacted).

    `noise` is the set of fields that differed between two primary responses for this request,
    or `None` when no noise sample was taken (noise off, or an unsafe method).
    `primary_body`/`candidate_body` are redacted, truncated example bodies kept only when the
    responses differed, so the HTML report can show them side by side.
    """

    ts: float
    route: str
    method: str
    endpoint: str
    request_id: str
    primary_status: int
    candidate_status: int | None
    primary_latency: float
    candidate_latency: float | None
    differences: tuple[Difference, ...] = ()
    noise: tuple[str, ...] | None = None
    body_kind: str = "empty"
    primary_body: str | None = None
    candidate_body: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def match(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "route": self.route,
            "method": self.method,
            "endpoint": self.endpoint,
            "request_id": self.request_id,
            "primary_status": self.primary_status,
            "candidate_status": self.candidate_status,
            "primary_latency": self.primary_latency,
            "candidate_latency": self.candidate_latency,
            "differences": [d.to_json() for d in self.differences],
            "noise": list(self.noise) if self.noise is not None else None,
            "body_kind": self.body_kind,
            "primary_body": self.primary_body,
            "candidate_body": self.candidate_body,
            "extra": dict(self.extra),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DiffRecord:
        noise = data.get("noise")
        return cls(
            ts=float(data["ts"]),
            route=data["route"],
            method=data["method"],
            endpoint=data["endpoint"],
            request_id=data.get("request_id", ""),
            primary_status=int(data["primary_status"]),
            candidate_status=data.get("candidate_status"),
            primary_latency=float(data.get("primary_latency") or 0.0),
            candidate_latency=data.get("candidate_latency"),
            differences=tuple(Difference.from_json(d) for d in data.get("differences", ())),
            noise=tuple(noise) if noise is not None else None,
            body_kind=data.get("body_kind", "empty"),
            primary_body=data.get("primary_body"),
            candidate_body=data.get("candidate_body"),
            extra=data.get("extra") or {},
        )

    @classmethod
    def loads(cls, text: str | bytes) -> DiffRecord:
        return cls.from_json(json.loads(text))
