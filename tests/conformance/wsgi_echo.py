"""A WSGI app that reads requests the way Django does, for running under gunicorn.

Django's `WSGIRequest` reads exactly `CONTENT_LENGTH` bytes of `wsgi.input` (0 when the
variable is missing), so it is the model of how the legacy monolith sees a forwarded body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    payload = json.dumps(
        {
            "method": environ["REQUEST_METHOD"],
            "path": environ.get("RAW_URI") or environ.get("PATH_INFO", ""),
            "body": body.decode("latin-1"),
            "meta": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    )
    return [payload]
