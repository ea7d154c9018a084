"""Between bytes on the wire and the ACL's plain messages. Pure.

The ACL works on parsed JSON; the proxy works on bytes and header lists. These functions
convert both ways and keep the original bytes whenever a translator left a body unchanged,
so a non-JSON body passes through untouched.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from acl.translator import RequestMessage, ResponseMessage

# Headers that describe the bytes of a body; recomputed whenever the body is re-encoded.
_BODY_FRAMING = frozenset({"content-length", "content-encoding", "transfer-encoding", "etag"})


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct == "application/json" or ct.endswith("+json")


def _header(headers: tuple[tuple[str, str], ...] | list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def parse_body(body: bytes, content_type: str | None) -> Any:
    """Parsed JSON, or None when the body is empty or not JSON (then it passes through)."""
    if not body or not is_json(content_type):
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def request_message(
    method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
) -> RequestMessage:
    return RequestMessage(
        method=method,
        path=path,
        query=tuple(parse_qsl(query, keep_blank_values=True)),
        headers=tuple(headers),
        body=parse_body(body, _header(headers, "content-type")),
    )


def encode_request(
    original: RequestMessage, new: RequestMessage, raw_query: str, raw_body: bytes
) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """(path, query, headers, body) to send; untouched parts keep their original bytes."""
    query = raw_query if new.query == original.query else urlencode(new.query)
    headers = list(new.headers)
    body = raw_body
    if new.body is not original.body and new.body != original.body:
        body = b"" if new.body is None else json.dumps(new.body, separators=(",", ":")).encode()
        headers = [(k, v) for k, v in headers if k.lower() not in _BODY_FRAMING]
        if new.body is not None and _header(headers, "content-type") is None:
            headers.append(("Content-Type", "application/json"))
    if body or new.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
    return new.path, query, headers, body


def response_message(status: int, headers: list[tuple[str, str]], body: bytes) -> ResponseMessage:
    return ResponseMessage(
        status=status,
        headers=tuple(headers),
        body=parse_body(body, _header(headers, "content-type")),
    )


def encode_response(
    original: ResponseMessage, new: ResponseMessage, raw_body: bytes
) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) for the client; an unchanged body keeps its bytes."""
    if new.body is original.body or new.body == original.body:
        headers = [(k, v) for k, v in new.headers if k.lower() != "content-length"]
        body = raw_body
    else:
        headers = [(k, v) for k, v in new.headers if k.lower() not in _BODY_FRAMING]
        body = b"" if new.body is None else json.dumps(new.body, separators=(",", ":")).encode()
        if new.body is not None:
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers.append(("Content-Type", "application/json"))
    return new.status, headers, body
