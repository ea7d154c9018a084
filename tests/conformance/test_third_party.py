"""The proxy in front of a real third-party server (gunicorn, WSGI as Django reads it) and
driven by real clients (curl, httpx): what the monolith's stack sees is what was sent."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

from tests.conformance.wire import Wire


def seen(raw: bytes) -> dict:
    return json.loads(raw)


def test_a_length_framed_body_reaches_django_style_wsgi_intact(stack):
    with Wire(stack.port) as w:
        resp = w.send(
            b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\nhello!!"
        ).response()
    assert resp.status == 200 and seen(resp.body)["body"] == "hello!!"


def test_pipelined_requests_through_gunicorn_stay_in_order(stack):
    with Wire(stack.port) as w:
        w.send(
            b"POST /one HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /two HTTP/1.1\r\nHost: h\r\n\r\n"
            b"POST /three HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
        )
        got = [seen(w.response().body) for _ in range(3)]
    assert [(g["path"], g["body"]) for g in got] == [("/one", "abc"), ("/two", ""), ("/three", "")]


def test_an_underscore_twin_cannot_become_a_django_meta_key(stack):
    with Wire(stack.port) as w:
        resp = w.send(
            b"GET /a HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX_Real_User: admin\r\n\r\n"
        ).response()
    meta = seen(resp.body)["meta"]
    assert meta["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert "HTTP_X_REAL_USER" not in meta


def test_curl_upload_and_download(stack, tmp_path: Path):
    upload = tmp_path / "up.bin"
    upload.write_bytes(bytes(range(256)) * 64)
    out = subprocess.run(
        ["curl", "-sS", "--fail", "--data-binary", f"@{upload}", "-H", "Content-Type: x/y",
         f"{stack.url}/curl"],
        capture_output=True, check=True, timeout=20,
    )  # fmt: skip
    assert seen(out.stdout)["body"].encode("latin-1") == upload.read_bytes()


def test_httpx_keep_alive_client_sees_every_answer(stack):
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        bodies = [client.post(f"/k{i}", content=b"x" * i).json()["body"] for i in range(20)]
    assert bodies == ["x" * i for i in range(20)]
