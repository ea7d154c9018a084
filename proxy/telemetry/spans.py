"""The proxy's own span objects: plain slotted records instead of OpenTelemetry SDK spans.

Profiling the proxy at 10% sampling showed the SDK's per-span machinery (context objects,
attribute validation and copying, the span processor queue, then the OTLP encoder walking every
span again on a thread that competes with the event loop for the GIL) costing several times
what the data itself is worth. The proxy only ever needs two kinds of span, passed explicitly,
so a record with the fields OTLP carries is enough; `end()` hands it to a sink (the OTLP
encoder, or an SDK exporter in tests and for `console`).

Pure: no I/O, no aiohttp, no SDK objects on the request path.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Mapping

from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.span import TraceState

# OTLP's enum values (opentelemetry/proto/trace/v1/trace.proto), not the SDK's SpanKind.
KIND_SERVER = 2
KIND_CLIENT = 3
STATUS_UNSET = 0
STATUS_ERROR = 2

AttrValue = str | int | float | bool
_getrandbits = random.getrandbits
_time_ns = time.time_ns
# A W3C tracestate is a list of key=value members in printable ASCII (tabs allowed around
# members); anything else (control characters, non-ASCII) is dropped rather than forwarded
# upstream or exported. 32 members of at most 256 + 1 + 256 characters, plus separators and
# blanks, bound what is worth parsing at all.
_TRACESTATE_OK = re.compile(r"[\t\x20-\x7e]+")
_TRACESTATE_MAX_INPUT = 32 * 520
# key = simple-key / multi-tenant-key; value = 1-256 printable chars, no ',' or '=', not
# ending in a space.
_TRACESTATE_MEMBER = re.compile(
    r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)


def clean_tracestate(value: str | Iterable[str] | None) -> str | None:
    """The client's `tracestate` if it is a valid W3C list to carry on, else None.

    `value` is the header's value, or the values of all its fields: several `tracestate`
    fields are one list, joined in order with commas (RFC 9110 5.3). Each member must be
    `key=value` with a key of the spec's form (empty members are allowed and dropped), no key
    may appear twice, and there may be at most 32 members; printable ASCII only. Anything
    else is discarded whole, as the spec says of a malformed `tracestate`. A valid list over
    512 characters is shortened as the spec asks: members longer than 128 characters go
    first, then members from the end.
    """
    if not value:
        return None
    if not isinstance(value, str):
        value = ",".join(value)
        if not value:
            return None
    if len(value) > _TRACESTATE_MAX_INPUT or not _TRACESTATE_OK.fullmatch(value):
        return None
    members = [m.strip(" \t") for m in value.split(",")]
    members = [m for m in members if m]
    if not members or len(members) > 32:
        return None
    keys = set()
    for m in members:
        if not _TRACESTATE_MEMBER.fullmatch(m):
            return None
        key = m.partition("=")[0]
        if key in keys:
            return None
        keys.add(key)
    joined = ",".join(members)
    if len(joined) <= 512:
        return joined
    members = [m for m in members if len(m) <= 128]
    while members and sum(map(len, members)) + len(members) - 1 > 512:
        members.pop()
    return ",".join(members) or None


def new_trace_id() -> int:
    return _getrandbits(128) or 1


def new_span_id() -> int:
    return _getrandbits(64) or 1


class Unsampled:
    """A span that records nothing: only ids to propagate (flag 00) and correlate logs.

    Its attempts reuse it (`Tracing.start_client_span`): nothing downstream records an
    unsampled trace, so a fresh span id per hop would buy nothing."""

    __slots__ = ("trace_id", "span_id", "trace_state", "_traceparent")
    sampled = False

    def __init__(self, trace_id: int, span_id: int, trace_state: str | None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.trace_state = trace_state
        self._traceparent = ""

    @classmethod
    def fresh(cls) -> Unsampled:
        """A new trace: both ids from one random draw, `traceparent` formatted at once (it
        is needed anyway, upstream and in the access line)."""
        bits = _getrandbits(192)
        trace_id, span_id = bits >> 64, bits & 0xFFFF_FFFF_FFFF_FFFF
        span = cls(trace_id or 1, span_id or 1, None)
        if trace_id and span_id:
            digits = f"{bits:048x}"
            span._traceparent = f"00-{digits[:32]}-{digits[32:]}-00"
        return span

    def is_recording(self) -> bool:
        return False

    def traceparent(self) -> str:
        value = self._traceparent
        if not value:
            value = self._traceparent = f"00-{self.trace_id:032x}-{self.span_id:016x}-00"
        return value

    def trace_hex(self) -> str:
        """The trace id as log lines show it."""
        return self.traceparent()[3:35]

    def get_span_context(self) -> SpanContext:
        """OpenTelemetry API compatibility (not used on the request path)."""
        return _context(self.trace_id, self.span_id, 0, self.trace_state)

    def end(self, end_time: int | None = None) -> None:
        return None


class RecordedSpan:
    """A sampled span: what OTLP needs, filled in by the request path, handed to `sink` once
    at `end()`. Attributes go straight into a dict (the proxy only sets str/int/bool)."""

    __slots__ = (
        "trace_id",
        "span_id",
        "parent_id",
        "remote_parent",
        "trace_state",
        "name",
        "kind",
        "start_ns",
        "end_ns",
        "attributes",
        "events",
        "status_code",
        "status_message",
        "_sink",
    )
    sampled = True

    def __init__(
        self,
        sink: Callable[[RecordedSpan], None],
        name: str,
        kind: int,
        trace_id: int,
        parent_id: int,
        attributes: dict[str, AttrValue],
        *,
        remote_parent: bool = False,
        trace_state: str | None = None,
    ) -> None:
        self._sink = sink
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = _getrandbits(64) or 1
        self.parent_id = parent_id
        self.remote_parent = remote_parent
        self.trace_state = trace_state
        self.attributes = attributes
        self.events: list[tuple[str, int, dict[str, AttrValue]]] | None = None
        self.status_code = STATUS_UNSET
        self.status_message = ""
        self.start_ns = _time_ns()
        self.end_ns = 0

    def is_recording(self) -> bool:
        return not self.end_ns

    def traceparent(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-01"

    def trace_hex(self) -> str:
        """The trace id as log lines show it."""
        return f"{self.trace_id:032x}"

    def get_span_context(self) -> SpanContext:
        """OpenTelemetry API compatibility (not used on the request path)."""
        return _context(self.trace_id, self.span_id, 1, self.trace_state)

    def set_attribute(self, key: str, value: AttrValue) -> None:
        if not self.end_ns:
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, AttrValue]) -> None:
        if not self.end_ns:
            self.attributes.update(attributes)

    def add_event(self, name: str, attributes: Mapping[str, AttrValue] | None = None) -> None:
        if self.end_ns:
            return
        if self.events is None:
            self.events = []
        self.events.append((name, _time_ns(), dict(attributes or {})))

    def set_error(self, message: str = "") -> None:
        if not self.end_ns:
            self.status_code, self.status_message = STATUS_ERROR, message

    def end(self, end_time: int | None = None) -> None:
        """Finish once; later calls (and changes) are ignored, as in the SDK."""
        if self.end_ns:
            return
        self.end_ns = end_time or _time_ns()
        self._sink(self)


Span = RecordedSpan | Unsampled


def _context(trace_id: int, span_id: int, flags: int, state: str | None) -> SpanContext:
    return SpanContext(
        trace_id,
        span_id,
        is_remote=False,
        trace_flags=TraceFlags(flags),
        trace_state=TraceState.from_header([state]) if state else None,
    )
