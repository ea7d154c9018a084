"""OTLP/protobuf encoding of `RecordedSpan`s, by hand, for `ExportTraceServiceRequest`.

Each span is encoded once, when it ends, into the bytes of one `Span` message; a batch is those
bytes wrapped in the resource and scope headers. Written out field by field because the generic
path (SDK span -> protobuf objects -> serialise) cost ≈ 30 µs per span in Python on the
exporter thread, holding the GIL the event loop needs; this costs a few µs. Field numbers are
from opentelemetry/proto/trace/v1/trace.proto and common.proto; tests decode the output with
the official generated classes.

Pure: bytes in, bytes out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping

from proxy.telemetry.spans import AttrValue, RecordedSpan

_pack_q = struct.Struct("<Q").pack
_pack_d = struct.Struct("<d").pack
_SPAN_FLAGS_HAS_IS_REMOTE = 0x100
_SPAN_FLAGS_IS_REMOTE = 0x200


_SMALL = [bytes((i,)) for i in range(128)]


def varint(n: int) -> bytes:
    """Protobuf base-128 varint; negative ints as their 64-bit two's complement."""
    if 0 <= n < 0x80:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len_field(tag: bytes, payload: bytes) -> bytes:
    n = len(payload)
    return tag + (_SMALL[n] if n < 0x80 else varint(n)) + payload


def _string(tag: bytes, text: str) -> bytes:
    data = text.encode("utf-8", "replace")
    n = len(data)
    return tag + (_SMALL[n] if n < 0x80 else varint(n)) + data


# Attributes whose values come from the route table or a short fixed list recur in every span:
# their whole encoded KeyValue is cached. Others (paths, ids) are encoded each time.
REPEATING = frozenset(
    {
        "http.request.method",
        "url.scheme",
        "http.route",
        "server.address",
        "server.port",
        "peer.service",
        "http.response.status_code",
        "http.request.resend_count",
        "error.type",
        "strangler.route",
        "strangler.mode",
        "strangler.side",
        "strangler.upstream",
        "strangler.fallback",
        "strangler.shadow",
        "strangler.tenant",
    }
)
_CACHE_LIMIT = 4096
_pairs: dict[tuple[str, AttrValue, type], bytes] = {}


def any_value(value: AttrValue) -> bytes:
    """An `AnyValue` message."""
    if isinstance(value, str):
        return _string(b"\x0a", value)
    if isinstance(value, bool):  # before int: bool is an int
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_d(value)
    return _string(b"\x0a", str(value))


def _key_value(key: str, value: AttrValue) -> bytes:
    if type(value) is str:  # the common case, inlined
        data = value.encode("utf-8", "replace")
        n = len(data)
        inner = b"\x0a" + (_SMALL[n] if n < 0x80 else varint(n)) + data
    else:
        inner = any_value(value)
    body = _string(b"\x0a", key) + _len_field(b"\x12", inner)
    n = len(body)
    return (_SMALL[n] if n < 0x80 else varint(n)) + body


def key_values(tag: bytes, attributes: Mapping[str, AttrValue]) -> bytes:
    """Repeated `KeyValue` fields with `tag`."""
    parts = []
    append = parts.append
    for key, value in attributes.items():
        if key in REPEATING:
            # The type is part of the key: True == 1 but encodes differently.
            pair = (key, value, type(value))
            encoded = _pairs.get(pair)
            if encoded is None:
                encoded = _key_value(key, value)
                if len(_pairs) < _CACHE_LIMIT:
                    _pairs[pair] = encoded
        else:
            encoded = _key_value(key, value)
        append(tag)
        append(encoded)
    return b"".join(parts)


def encode_span(span: RecordedSpan) -> bytes:
    """One `Span` message, framed as a `ScopeSpans.spans` field (tag 2) ready to concatenate."""
    body = [
        b"\x0a\x10",
        span.trace_id.to_bytes(16, "big"),
        b"\x12\x08",
        span.span_id.to_bytes(8, "big"),
    ]
    if span.trace_state:
        body.append(_string(b"\x1a", span.trace_state))
    if span.parent_id:
        body.append(b"\x22\x08")
        body.append(span.parent_id.to_bytes(8, "big"))
    body.append(_string(b"\x2a", span.name))
    body.append(b"\x30" + _SMALL[span.kind])
    body.append(b"\x39" + _pack_q(span.start_ns))
    body.append(b"\x41" + _pack_q(span.end_ns))
    body.append(key_values(b"\x4a", span.attributes))
    if span.events:
        for name, at, attrs in span.events:
            event = b"\x09" + _pack_q(at) + _string(b"\x12", name) + key_values(b"\x1a", attrs)
            body.append(_len_field(b"\x5a", event))
    if span.status_code:
        status = b""
        if span.status_message:
            status = _string(b"\x12", span.status_message)
        status += b"\x18" + varint(span.status_code)
        body.append(_len_field(b"\x7a", status))
    flags = _SPAN_FLAGS_HAS_IS_REMOTE | (_SPAN_FLAGS_IS_REMOTE if span.remote_parent else 0)
    body.append(b"\x85\x01" + flags.to_bytes(4, "little"))
    return _len_field(b"\x12", b"".join(body))


def resource_header(
    resource: Mapping[str, AttrValue], scope: str, version: str = ""
) -> tuple[bytes, bytes]:
    """What precedes the spans in a batch, encoded once: the `ResourceSpans.resource` field and
    the `ScopeSpans.scope` field."""
    scope_body = _string(b"\x0a", scope) + (_string(b"\x12", version) if version else b"")
    return _len_field(b"\x0a", key_values(b"\x0a", resource)), _len_field(b"\x0a", scope_body)


def request(header: tuple[bytes, bytes], spans: Iterable[bytes]) -> bytes:
    """An `ExportTraceServiceRequest` with one resource and one scope holding `spans`
    (each from `encode_span`)."""
    resource, scope = header
    scope_spans = scope + b"".join(spans)
    return _len_field(b"\x0a", resource + _len_field(b"\x12", scope_spans))
