"""The proxy's own error responses: small, JSON by default, HTML for browsers."""

from __future__ import annotations

import html
import json
import re

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    417: "Expectation Failed",
    421: "Misdirected Request",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    417: "expectation_failed",
    421: "misdirected_request",
    426: "upgrade_required",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
    505: "http_version_not_supported",
}
ALLOWED_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


def wants_html(accept: str | None) -> bool:
    """True when the client ranks text/html above JSON (a browser navigating)."""
    if not accept or "text/html" not in accept:
        return False
    return "application/json" not in accept.split("text/html", 1)[0]


def error_response(
    status: int,
    message: str,
    *,
    route: str | None,
    request_id: str,
    accept: str | None = None,
    headers: dict[str, str] | None = None,
    close: bool = False,
) -> web.Response:
    """An error from the proxy itself (not relayed from an upstream)."""
    extra = {
        "X-Request-ID": request_id,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        **(headers or {}),
    }
    if close:
        extra["Connection"] = "close"
    if wants_html(accept):
        title = _TITLES.get(status, "Error")
        body = (
            f"<!doctype html><html><head><title>{status} {title}</title></head><body>"
            f"<h1>{status} {title}</h1><p>{html.escape(message)}</p>"
            f"<p>route: {html.escape(route or '-')}<br>request id: {html.escape(request_id)}</p>"
            "</body></html>"
        )
        # The page quotes the request (its message, the request id); it is escaped, and on the
        # application's origin nothing in it may load or run should that ever slip.
        extra.setdefault("Content-Security-Policy", "default-src 'none'")
        resp = web.Response(status=status, text=body, content_type="text/html", headers=extra)
    else:
        payload = {
            "error": _CODES.get(status, "error"),
            "message": message,
            "route": route,
            "request_id": request_id,
        }
        resp = web.Response(
            status=status,
            body=json.dumps(payload).encode(),
            content_type="application/json",
            headers=extra,
        )
    if close:
        resp.force_close()
    return resp


def options_star_response(request_id: str) -> web.Response:
    """The proxy's own answer to `OPTIONS *` (RFC 9110 §9.3.7): it concerns the server, not
    a resource, so no upstream is asked; an asterisk target cannot be forwarded to a route.
    Also to an OPTIONS with `Max-Forwards: 0`, which makes the proxy its final recipient
    (§7.6.2)."""
    return web.Response(
        status=200,
        headers={"Allow": ALLOWED_METHODS, "X-Request-ID": request_id},
    )


# aiohttp wraps llhttp's own reason for a bad request line (a fixed text, never client
# bytes): `Bad status line:\n  Invalid HTTP version:\n\n  b'...'`.
_LINE_DETAIL = re.compile(r"Bad status line:\s+([A-Za-z][A-Za-z ]{0,60}):")
# llhttp stops at `PRI * HTTP/2.0` (the HTTP/2 connection preface) with a pause, not an error.
_H2_PREFACE = "Pause on PRI/Upgrade"


def parser_reason(exc: HttpProcessingError) -> str:
    """What the parser found wrong, without the client bytes it quotes after a colon
    (`Got more than 8190 bytes when reading: b'<a token>'`): those go nowhere, neither to
    the log (secrets, log injection) nor back to the client. A bad request line says what
    is wrong with it, and the HTTP/2 preface what it is: llhttp's own words ("Bad status
    line", "Pause on PRI/Upgrade") tell a client nothing it can act on."""
    text = str(exc.message)
    if text.startswith(_H2_PREFACE):
        return "the HTTP/2 connection preface: this listener speaks HTTP/1.1 only"
    detail = _LINE_DETAIL.match(text)
    if detail is not None:
        return f"bad request line: {detail.group(1).strip()}"
    reason = text.split(":", 1)[0]
    reason = "".join(c if " " <= c <= "~" else " " for c in reason)
    return " ".join(reason.split())[:120] or "malformed request"
