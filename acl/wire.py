"""Bytes in, bytes out: the ACL for callers holding raw HTTP pieces (the proxy, the shadow
mirror). Still pure: no sockets, no aiohttp. A body a translator leaves untouched is forwarded
byte for byte; one it needs but cannot read as JSON is refused, never relayed untranslated.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from acl.declarative import WRITE_METHODS
from acl.translator import (
    RequestMessage,
    ResponseMessage,
    TranslationError,
    Translator,
)

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class WireRequest:
    method: str
    path: str
    query: str | None  # raw query string, without "?"; None when there was no "?"
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class WireResponse:
    status: int
    headers: Headers
    body: bytes


def _headers(items: Iterable[tuple[str, str]] | Mapping[str, str]) -> Headers:
    pairs = items.items() if hasattr(items, "items") else items
    return tuple((str(k), str(v)) for k, v in pairs)


def _content_type(headers: Headers) -> str:
    for key, value in headers:
        if key.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower()
    return ""


def is_json(headers: Headers) -> bool:
    ctype = _content_type(headers)
    return ctype in ("application/json", "text/json") or ctype.endswith("+json")


def _content_encoding(headers: Headers) -> str:
    for key, value in headers:
        if key.lower() == "content-encoding":
            return value.strip().lower()
    return ""


# A compressed body is decoded for translation up to this size (a bomb stays a 502).
DECODED_LIMIT = 16 * 1024 * 1024


def _decoded(headers: Headers, raw: bytes) -> tuple[bytes | None, str | None]:
    """The body without its content coding (gzip, deflate), or (None, why not). The proxy
    asks services for `identity`, but some compress anyway."""
    coding = _content_encoding(headers)
    if coding in ("", "identity"):
        return raw, None
    if coding not in ("gzip", "x-gzip", "deflate"):
        return None, f"Content-Encoding {coding} cannot be decoded for translation"
    wbits = 16 + zlib.MAX_WBITS if coding != "deflate" else zlib.MAX_WBITS
    try:
        inflater = zlib.decompressobj(wbits)
        plain = inflater.decompress(raw, DECODED_LIMIT + 1)
    except zlib.error as exc:
        return None, f"{coding} body does not decode: {exc}"
    if len(plain) > DECODED_LIMIT or inflater.unconsumed_tail:
        return None, f"{coding} body decodes to more than {DECODED_LIMIT} bytes"
    return plain, None


# The monolith reads a write's body (`WRITE_METHODS`) as JSON whatever its Content-Type
# (`curl -d` sends form-urlencoded), so on the request side the ACL does too.


def read_body(
    headers: Headers, raw: bytes, any_type: bool = False, decode: bool = True
) -> tuple[Any, str | None]:
    """(parsed JSON, None), or (None, why not) for a non-empty body that is not JSON-typed
    (unless `any_type`) or not valid JSON, or (None, None) for an empty body. A translator
    that needs a record refuses an unparsed body; others forward the raw bytes untouched.
    `decode`: undo a gzip or deflate Content-Encoding first (services' answers)."""
    if not raw:
        return None, None
    if not any_type and _content_type(headers) and not is_json(headers):
        return None, f"Content-Type {_content_type(headers)} is not JSON"
    plain, why = _decoded(headers, raw) if decode else (raw, None)
    if plain is None:
        return None, why
    try:
        return json.loads(plain), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, str(exc)  # json's own words, as the monolith quotes them


COMPACT: Mapping[str, Any] = {"separators": (",", ":"), "ensure_ascii": False}


def legacy_style(translator: Any) -> Mapping[str, Any]:
    """The json.dumps options a translator declares for legacy bodies (`legacy_json`)."""
    return getattr(translator, "legacy_json", None) or COMPACT


def encode_body(body: Any, style: Mapping[str, Any] | None = None) -> bytes:
    """`body` as JSON bytes, compact UTF-8 unless `style` (json.dumps options) says otherwise.
    A lone surrogate (`"\\ud800"` is valid JSON text) has no UTF-8 form: it stays escaped."""
    options = {**COMPACT, **(style or {})}
    try:
        return json.dumps(body, **options).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(body, **{**options, "ensure_ascii": True}).encode("ascii")


def _with_json_headers(headers: Headers, length: int) -> Headers:
    """Headers for a body the ACL wrote: plain JSON of `length` bytes (no content coding)."""
    kept = tuple(
        (k, v)
        for k, v in headers
        if k.lower() not in ("content-length", "content-type", "content-encoding")
    )
    return (*kept, ("Content-Type", "application/json"), ("Content-Length", str(length)))


def request_message(
    method: str,
    path: str,
    query: str | None,
    headers: Iterable[tuple[str, str]] | Mapping[str, str],
    raw: bytes,
) -> RequestMessage:
    """The RequestMessage for a request as received (query string raw, body bytes)."""
    hdrs = _headers(headers)
    method = method.upper()
    # As the monolith reads a request: its bytes as they came. Django does not undo a
    # client's Content-Encoding, so a gzip body is malformed JSON there; decoding it here
    # would let the service create what the monolith refuses.
    body, unparsed = read_body(hdrs, raw, any_type=method in WRITE_METHODS, decode=False)
    return RequestMessage(
        method,
        path,
        tuple(parse_qsl(query or "", keep_blank_values=True)),
        hdrs,
        body,
        unparsed,
    )


def translate_request(
    translator: Translator,
    method: str,
    path: str,
    query: str | None,
    headers: Iterable[tuple[str, str]] | Mapping[str, str],
    raw: bytes,
    params: Mapping[str, str] | None = None,
) -> WireRequest:
    """Legacy request on the wire -> request for the extracted service on the wire.
    Raises TranslationError (answer with `error_response`)."""
    original = request_message(method, path, query, headers, raw)
    out = translator.request_to_new(original, params or {})
    new_query = query if out.query == original.query else (urlencode(out.query) or None)
    if out.body is original.body:
        return WireRequest(out.method, out.path, new_query, out.headers, raw)
    body = encode_body(out.body)
    return WireRequest(
        out.method, out.path, new_query, _with_json_headers(out.headers, len(body)), body
    )


def translate_response(
    translator: Translator,
    status: int,
    headers: Iterable[tuple[str, str]] | Mapping[str, str],
    raw: bytes,
    legacy_request: RequestMessage,
) -> WireResponse:
    """The service's response on the wire -> what the monolith would have sent.
    `legacy_request` is `request_message(...)` of the client's ORIGINAL request."""
    hdrs = _headers(headers)
    original = ResponseMessage(status, hdrs, *read_body(hdrs, raw))
    out = translator.response_to_legacy(original, legacy_request)
    if out.body is original.body:
        return WireResponse(out.status, out.headers, raw)
    body = b"" if out.body is None else encode_body(out.body, legacy_style(translator))
    return WireResponse(out.status, _with_json_headers(out.headers, len(body)), body)


def error_response(
    exc: TranslationError, translator: Any = None, extra: Mapping[str, Any] | None = None
) -> WireResponse:
    """The answer for a failed translation: 502 naming translator, direction and field path
    (or, for input the monolith itself would refuse, the monolith's own 4xx answer), written
    as the translator's monolith writes JSON. `extra` keys are added to a 502's body."""
    payload = exc.to_json()
    if extra and exc.status == 502 and isinstance(payload, dict):
        payload = {**payload, **extra}
    body = encode_body(payload, legacy_style(translator))
    return WireResponse(exc.status, _with_json_headers((), len(body)), body)
