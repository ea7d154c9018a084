"""A tiny WSGI app for gunicorn (sync and gthread workers) behind the proxy.

Served under any prefix: only the last path segment picks the handler, so one app serves
`/gs/...` and `/gt/...` alike.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

ETAG = '"wsgi-v1"'


def _body(environ: dict[str, Any]) -> bytes:
    """Reads the body as Django does: exactly CONTENT_LENGTH bytes."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _json(start_response: Callable[..., Any], payload: object, status: str = "200 OK"):
    data = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _chunks(n: int) -> Iterator[bytes]:
    for i in range(n):
        yield f"chunk-{i};".encode()


def _slow(n: int) -> Iterator[bytes]:
    import time

    for _ in range(n):
        yield b"s" * 65536
        time.sleep(0.01)


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    leaf = path.rsplit("/", 1)[-1]
    if leaf == "echo":
        body = _body(environ)
        return _json(
            start_response,
            {
                "method": environ["REQUEST_METHOD"],
                "uri": environ.get("RAW_URI", ""),
                "query": environ.get("QUERY_STRING", ""),
                "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "pid": os.getpid(),
            },
        )
    if leaf == "chunked":
        # No Content-Length: gunicorn frames it chunked for HTTP/1.1.
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _chunks(50)
    if leaf == "slowstream":
        # 64 KiB every 10 ms for 30 s: a sync worker is busy until it ends or the peer leaves
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _slow(3000)
    if leaf == "cookies":
        n = int(environ.get("QUERY_STRING", "n=1").partition("=")[2] or 1)
        headers = [("Content-Type", "text/plain"), ("Content-Length", "2")]
        headers += [("Set-Cookie", f"c{i}=v{i}; Path=/; HttpOnly") for i in range(n)]
        start_response("200 OK", headers)
        return [b"ok"]
    if leaf == "etag":
        if environ.get("HTTP_IF_NONE_MATCH") == ETAG:
            start_response("304 Not Modified", [("ETag", ETAG)])
            return []
        start_response(
            "200 OK", [("ETag", ETAG), ("Content-Type", "text/plain"), ("Content-Length", "5")]
        )
        return [b"fresh"]
    if leaf == "status":
        # e.g. ?code=299&reason=Custom+Thing: an unusual status and reason phrase
        from urllib.parse import parse_qs

        q = parse_qs(environ.get("QUERY_STRING", ""))
        status = f"{q['code'][0]} {q.get('reason', ['Whatever'])[0]}"
        return _json(start_response, {"status": status}, status)
    return _json(start_response, {"error": "not found", "path": path}, "404 Not Found")
