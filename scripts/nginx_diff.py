"""Differential testing of Strangler against nginx as the reference reverse proxy.

    PYTHONPATH=. .venv/bin/python scripts/nginx_diff.py [--seed N] [--random N] [--split N]
                                  [--only SUBSTR] [--json out.json] [--verbose] [--hold S]

Starts, on ephemeral ports, a raw recording upstream (asyncio, in a thread: it keeps the
exact bytes each proxy sent, splits them into requests with a lenient parser and answers
each with an echo or with a scripted raw reply), nginx (Debian nginx-light; one worker,
`proxy_http_version 1.1`, keep-alive upstream, `Host` passed as the client sent it) and
`strangler serve`, both in front of that upstream (each proxy has its own pair of
listeners, `legacy` and `svc`; `/svc` and `/svc/...` go to `svc` on both proxies).

Every case (hand-picked edge cases, `--random` seeded random requests, and `--split`
valid pipelines of every body framing cut into reads at random offsets) is sent on a raw
socket to each proxy in turn. For each proxy the harness records what the upstream received
(method, target, body, end-to-end headers without those a proxy adds: Via, X-Forwarded-*,
Forwarded, X-Request-ID, X-Real-IP, Connection, Keep-Alive, framing headers) and what the
client got (status, body, framing, and whether the connection stayed usable: a follow-up
request on it is answered). It prints the cases on which the two proxies differ, grouped,
and a note when a Strangler-forwarded path would route differently than the upstream it
reached (`svc` owns `/svc`). Nothing is judged automatically: nginx is lax in places and
docs/proxy.md ("Conformance decisions") lists where Strangler refuses on purpose.

`--hold S` only starts both proxies (ports printed) for S seconds, for probing by hand.
Needs `nginx` on PATH. The default set (about 780 cases) takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ADDED = {
    "via",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-request-id",
    "x-real-ip",
    "connection",
    "keep-alive",
    "content-length",
    "transfer-encoding",
}
RESP_IGNORED = ADDED | {"date", "server"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the recording upstream ----------------------------------------------------------------


@dataclass
class Got:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    framing: str
    conn: int
    trailers: list[tuple[str, str]] = field(default_factory=list)


class Listener:
    """One upstream port: records requests, answers with scripts or an echo."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[Got] = []
        self.raw: dict[int, bytearray] = {}
        self.errors: list[str] = []
        self.scripts: list[tuple[bytes, bool]] = []
        self.next_conn = 0
        self.port = 0

    def reset(self, scripts: list[tuple[bytes, bool]]) -> None:
        self.got = []
        self.errors = []
        self.raw = {}
        self.scripts = list(scripts)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cid = self.next_conn
        self.next_conn += 1
        buf = bytearray()
        self.raw[cid] = bytearray()

        async def more() -> bool:
            try:
                data = await asyncio.wait_for(reader.read(65536), 30)
            except (TimeoutError, ConnectionError):
                return False
            if not data:
                return False
            buf.extend(data)
            self.raw.setdefault(cid, bytearray()).extend(data)
            return True

        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    if not await more():
                        if buf:
                            self.errors.append(f"{self.name}#{cid}: partial head {bytes(buf)!r}")
                        return
                i = buf.index(b"\r\n\r\n")
                head = bytes(buf[:i]).decode("latin-1")
                del buf[: i + 4]
                lines = head.split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    self.errors.append(f"{self.name}#{cid}: bad request line {lines[0]!r}")
                    return
                headers = []
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers.append((name, value.strip(" \t")))
                lower = {k.lower(): v for k, v in headers}
                body = bytearray()
                trailers: list[tuple[str, str]] = []
                te = lower.get("transfer-encoding", "").lower()
                if "chunked" in te:
                    framing = "chunked"
                    while True:
                        while b"\r\n" not in buf:
                            if not await more():
                                self.errors.append(f"{self.name}#{cid}: cut in chunk size")
                                return
                        j = buf.index(b"\r\n")
                        size = int(bytes(buf[:j]).split(b";")[0], 16)
                        del buf[: j + 2]
                        if size == 0:
                            while True:
                                while b"\r\n" not in buf:
                                    if not await more():
                                        self.errors.append(f"{self.name}#{cid}: cut in trailers")
                                        return
                                j = buf.index(b"\r\n")
                                line = bytes(buf[:j]).decode("latin-1")
                                del buf[: j + 2]
                                if not line:
                                    break
                                k, _, v = line.partition(":")
                                trailers.append((k, v.strip()))
                            break
                        while len(buf) < size + 2:
                            if not await more():
                                self.errors.append(f"{self.name}#{cid}: cut in chunk data")
                                return
                        body += buf[:size]
                        del buf[: size + 2]
                elif "content-length" in lower:
                    framing = "cl"
                    n = int(lower["content-length"])
                    while len(buf) < n:
                        if not await more():
                            self.errors.append(f"{self.name}#{cid}: cut in body ({len(buf)}/{n})")
                            return
                    body += buf[:n]
                    del buf[:n]
                else:
                    framing = "none"
                self.got.append(
                    Got(method, target, version, headers, bytes(body), framing, cid, trailers)
                )
                if self.scripts:
                    reply, close = self.scripts.pop(0)
                    if reply == b"<hang>":
                        await asyncio.sleep(10)
                        return
                    writer.write(reply)
                    await writer.drain()
                    if close:
                        return
                    continue
                payload = f"echo {method} {target}".encode()
                out = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                    % len(payload)
                )
                writer.write(out + (b"" if method == "HEAD" else payload))
                await writer.drain()
        except (ConnectionError, ValueError) as exc:
            self.errors.append(f"{self.name}#{cid}: {exc!r}")
        finally:
            writer.close()


class Upstreams:
    def __init__(self) -> None:
        self.ls = {n: Listener(n) for n in ("ngx-legacy", "ngx-svc", "str-legacy", "str-svc")}
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            for ln in self.ls.values():
                srv = await asyncio.start_server(ln.handle, "127.0.0.1", 0)
                ln.port = srv.sockets[0].getsockname()[1]

        self.loop.run_until_complete(start())
        self.ready.set()
        self.loop.run_forever()

    def reset(self, side: str, scripts: list[tuple[bytes, bool]]) -> None:
        def do() -> None:
            self.ls[f"{side}-legacy"].reset(scripts)
            self.ls[f"{side}-svc"].reset([])

        self.loop.call_soon_threadsafe(do)
        ev = threading.Event()
        self.loop.call_soon_threadsafe(ev.set)
        ev.wait(5)

    def snapshot(self, side: str) -> dict:
        out = {"requests": [], "errors": []}
        for up in ("legacy", "svc"):
            ln = self.ls[f"{side}-{up}"]
            for g in ln.got:
                out["requests"].append((up, g))
            out["errors"] += ln.errors
        return out


# -- the proxies ---------------------------------------------------------------------------


def nginx_conf(work: Path, port: int, legacy: int, svc: int) -> Path:
    conf = work / "nginx.conf"
    conf.write_text(
        textwrap.dedent(
            f"""\
            worker_processes 1;
            daemon off;
            pid {work}/nginx.pid;
            error_log {work}/nginx.err info;
            events {{ worker_connections 1024; }}
            http {{
                access_log off;
                client_body_temp_path {work}/body;
                proxy_temp_path {work}/proxy;
                fastcgi_temp_path {work}/fcgi;
                uwsgi_temp_path {work}/uwsgi;
                scgi_temp_path {work}/scgi;
                client_max_body_size 100m;
                client_body_buffer_size 16m;
                upstream legacy {{ server 127.0.0.1:{legacy}; keepalive 16; }}
                upstream svc {{ server 127.0.0.1:{svc}; keepalive 16; }}
                server {{
                    listen 127.0.0.1:{port};
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                    proxy_set_header Host $http_host;
                    proxy_read_timeout 3s;
                    proxy_connect_timeout 1s;
                    location / {{ proxy_pass http://legacy; }}
                    location /svc/ {{ proxy_pass http://svc; }}
                    location = /svc {{ proxy_pass http://svc; }}
                }}
            }}
            """
        )
    )
    return conf


def strangler_conf(work: Path, port: int, admin: int, legacy: int, svc: int) -> Path:
    conf = work / "routes.yaml"
    conf.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            listen: {{host: 127.0.0.1, port: {port}}}
            admin: {{host: 127.0.0.1, port: {admin}}}
            upstreams:
              legacy:
                url: "http://127.0.0.1:{legacy}"
                timeout: {{connect: 1.0, read: 3.0, total: 5.0}}
                retry: {{retries: 0}}
                breaker: {{consecutive_failures: 100000, min_requests: 100000}}
              svc:
                url: "http://127.0.0.1:{svc}"
                timeout: {{connect: 1.0, read: 3.0, total: 5.0}}
                retry: {{retries: 0}}
                breaker: {{consecutive_failures: 100000, min_requests: 100000}}
            default: legacy
            routes:
              - name: svc-prefix
                match: {{prefix: "/svc"}}
                mode: extracted
                target: svc
            """
        )
    )
    return conf


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}) before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"GET /ready HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 "):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not ready")


# -- the client ----------------------------------------------------------------------------


@dataclass
class Resp:
    status: int = 0
    reason: str = ""
    version: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    framing: str = ""
    interim: list[int] = field(default_factory=list)
    error: str = ""


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.eof = False
        self.raw = b""

    def _more(self, deadline: float) -> bool:
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        self.raw += data
        return True

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the peer closed: what it sent before is still there to read

    def line(self, deadline: float) -> bytes | None:
        while b"\n" not in self.buf:
            if not self._more(deadline):
                return None
        i = self.buf.index(b"\n")
        out, self.buf = self.buf[: i + 1], self.buf[i + 1 :]
        return out

    def take(self, n: int, deadline: float) -> bytes | None:
        while len(self.buf) < n:
            if not self._more(deadline):
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, method: str, timeout: float = 6.0) -> Resp:
        deadline = time.monotonic() + timeout
        r = Resp()
        while True:
            status_line = self.line(deadline)
            if status_line is None:
                r.error = "no response" if not self.buf else f"partial head {self.buf[:200]!r}"
                return r
            m = re.match(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?\r?\n$", status_line)
            if not m:
                r.error = f"bad status line {status_line!r}"
                return r
            r.version, r.status = m[1].decode(), int(m[2])
            r.reason = (m[3] or b"").decode("latin-1").rstrip("\r")
            r.headers = []
            while True:
                ln = self.line(deadline)
                if ln is None:
                    r.error = "cut in head"
                    return r
                if ln in (b"\r\n", b"\n"):
                    break
                k, _, v = ln.decode("latin-1").partition(":")
                r.headers.append((k, v.strip(" \t\r\n")))
            if 100 <= r.status < 200 and r.status != 101:
                r.interim.append(r.status)
                continue
            break
        h = {}
        for k, v in r.headers:
            h.setdefault(k.lower(), []).append(v)
        if method == "HEAD" or r.status in (204, 304) or r.status < 200:
            r.framing = "none"
            return r
        if "chunked" in ",".join(h.get("transfer-encoding", [])).lower():
            r.framing = "chunked"
            body = b""
            while True:
                ln = self.line(deadline)
                if ln is None:
                    r.error = "cut in chunk size"
                    break
                try:
                    size = int(ln.split(b";")[0].strip(), 16)
                except ValueError:
                    r.error = f"bad chunk size {ln!r}"
                    break
                if size == 0:
                    while True:
                        ln = self.line(deadline)
                        if ln is None:
                            r.error = "cut in trailers"
                            break
                        if ln in (b"\r\n", b"\n"):
                            break
                    break
                data = self.take(size + 2, deadline)
                if data is None:
                    r.error = "cut in chunk"
                    break
                body += data[:size]
            r.body = body
            return r
        if "content-length" in h:
            r.framing = "cl"
            try:
                n = int(h["content-length"][0])
            except ValueError:
                r.error = "bad content-length"
                return r
            data = self.take(n, deadline)
            if data is None:
                r.error = f"cut body ({len(self.buf)}/{n})"
                r.body = self.buf
                self.buf = b""
                return r
            r.body = data
            return r
        r.framing = "close"
        while self._more(deadline):
            pass
        r.body, self.buf = self.buf, b""
        if not self.eof:
            r.error = "close-delimited body never ended"
        return r

    def state(self) -> str:
        """closed / open / extra:<bytes>."""
        if self.buf:
            return f"extra:{self.buf[:80]!r}"
        if self.eof:
            return "closed"
        deadline = time.monotonic() + 0.25
        if self._more(deadline):
            return f"extra:{self.buf[:80]!r}"
        return "closed" if self.eof else "open"

    def close(self) -> None:
        self.sock.close()


# -- cases ---------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    data: bytes | list  # a list: pieces sent with a short pause between them
    methods: list[str] | None = None  # the methods answered, for HEAD framing
    scripts: list[tuple[bytes, bool]] = field(default_factory=list)
    half_close: bool = False
    close_after: bool = False  # close the socket right after sending, read nothing
    pause: float = 0.1  # between pieces


def req(method="GET", target="/", headers=(("Host", "h"),), body=b"", version="HTTP/1.1"):
    head = f"{method} {target} {version}\r\n".encode("latin-1")
    for k, v in headers:
        head += (k.encode("latin-1") if isinstance(k, str) else k) + b": "
        head += (v.encode("latin-1") if isinstance(v, str) else v) + b"\r\n"
    return head + b"\r\n" + body


def chunked(body: bytes, sizes=(3,), ext=b"", trailers=b"") -> bytes:
    out, rest, i = b"", body, 0
    while rest:
        n = sizes[i % len(sizes)]
        i += 1
        piece, rest = rest[:n], rest[n:]
        out += b"%x" % len(piece) + ext + b"\r\n" + piece + b"\r\n"
    return out + b"0\r\n" + trailers + b"\r\n"


H = (("Host", "h"),)


def hand_cases() -> list[Case]:
    c: list[Case] = []
    add = c.append
    # methods
    for m in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "MKCOL",
              "FOO", "get", "TRACE", "CONNECT", "PURGE", "M-SEARCH", "LINK"]:  # fmt: skip
        add(Case(f"method {m}", req(m), [m]))
    for m in ["POST", "PUT", "DELETE", "OPTIONS", "GET", "PROPFIND", "FOO"]:
        add(Case(f"method {m} + body", req(m, "/b", H + (("Content-Length", "5"),), b"hello")))
    # targets
    targets = [
        "/", "/a/b", "/a%20b", "/a%2fb", "/a%2Fb", "/%2e%2e/x", "/a/../b", "/a/./b", "/a//b",
        "//a", "/a;p=1/b", "/a;p", "/a?x=1&y=%20", "/a?", "/?", "/a??b", "/a?x=/../",
        "/a?x=%2f%2e%2e", "/a#frag", "/a%", "/a%zz", "/a%7e", "/a%7E", "/%C3%A9", "/%c3%a9",
        "/caf\xc3\xa9", "*", "http://h/x", "http://h/x?q=1", "https://h/x", "http://other/x",
        "/svc", "/svc/", "/svc/x", "/svc/../x", "/x/../svc/y", "/svc%2fx", "/svc;x/y",
        "/svc;x", "/SVC/x", "/svcx", "/svc/./x", "/svc//x", "/svc/%2e%2e/x", "/svc/..",
        "/svc/x/..", "/svc/x/../..", "/svc?x", "/x/..%2fsvc", "/x/%2e%2e/svc/y",
        "/.%2e/svc", "/svc/.;/x", "/x/..;/svc/y", "/a\\b", "/svc\\x", "/a%00b", "/a%5cb",
        "/a?q=\"x\"", "/a?q=<x>", "/a?q='x'", "/a?q=`", "/a?q={x}", "/a?q=|", "/a?q=^",
        "/a?q=%zz", "/a?q=%", "/a/?b", "/a/%3F/b", "/a%3Fb", "/a%23b", "/a/~b", "/a/!$&'()*+,=:@b",
        "/a?x=1;y=2", "/" + "a" * 4000, "/" + "a" * 8000, "/" + "a" * 9000,
        "/q?" + "x" * 6000, "/" + "%41" * 500, "/" + "a/" * 300, "/" + "../" * 5 + "etc/passwd",
        "/a/.", "/a/..", "/.", "/..", "/a/.../b", "/a/.b", "/a/b.", "/%2e", "/%2E%2E",
        "a/b", "", "/a b", "/a\tb", "/a\x7fb", "/a\x01b",
    ]  # fmt: skip
    for t in targets:
        add(Case(f"target {t[:60]!r}", req("GET", t)))
    # headers
    hs = [
        ("casing", (("hOsT", "h"), ("content-TYPE", "text/x"), ("X-MiXeD", "v"))),
        ("repeat", H + (("X-A", "1"), ("X-A", "2"), ("x-a", "3"))),
        ("cookie repeat", H + (("Cookie", "a=1"), ("Cookie", "b=2"))),
        ("empty", H + (("X-E", ""),)),
        ("odd ws", H + (("X-W", "  v  w  "),)),
        ("tab ws", H + (("X-W", "\tv\t"),)),
        ("underscore", H + (("X_U", "1"), ("X-U", "2"))),
        ("long 8k", H + (("X-L", "v" * 8000),)),
        ("long 9k", H + (("X-L", "v" * 9000),)),
        ("long 17k", H + (("X-L", "v" * 17000),)),
        ("100 headers", H + tuple((f"X-N{i}", str(i)) for i in range(100))),
        ("120 headers", H + tuple((f"X-N{i}", str(i)) for i in range(120))),
        ("latin1 value", H + (("X-V", "caf\xe9"),)),
        ("utf8 value", H + (("X-V", "caf\xc3\xa9"),)),
        ("nul value", H + (("X-V", "a\x00b"),)),
        ("del value", H + (("X-V", "a\x7fb"),)),
        ("ctl value", H + (("X-V", "a\x01b"),)),
        ("no host", ()),
        ("dup host", (("Host", "h"), ("Host", "h"))),
        ("dup host differ", (("Host", "h"), ("Host", "g"))),
        ("host port", (("Host", "h:8080"),)),
        ("host empty", (("Host", ""),)),
        ("host ipv6", (("Host", "[::1]:80"),)),
        ("host other", (("Host", "other.example"),)),
        ("host trailing dot", (("Host", "h."),)),
        ("host upper", (("Host", "H.EXAMPLE"),)),
        ("host bad", (("Host", "h/x"),)),
        ("host userinfo", (("Host", "u@h"),)),
        ("x-forwarded-for", H + (("X-Forwarded-For", "1.2.3.4"),)),
        ("te trailers", H + (("TE", "trailers"),)),
        ("conn x-foo", H + (("Connection", "X-Foo"), ("X-Foo", "1"), ("X-Bar", "2"))),
        ("conn keep-alive", H + (("Connection", "keep-alive"),)),
        ("conn close", H + (("Connection", "close"),)),
        ("conn CLOSE", H + (("Connection", "CLOSE"),)),
        (
            "conn multi",
            H
            + (
                ("Connection", "keep-alive, X-A"),
                ("Connection", "X-B"),
                ("X-A", "1"),
                ("X-B", "1"),
                ("X-C", "1"),
            ),
        ),  # fmt: skip
        ("conn cookie", H + (("Connection", "Cookie"), ("Cookie", "a=1"))),
        ("conn host", H + (("Connection", "Host"),)),
        ("conn authz", H + (("Connection", "Authorization"), ("Authorization", "Bearer x"))),
        (
            "upgrade h2c",
            H
            + (
                ("Connection", "Upgrade, HTTP2-Settings"),
                ("Upgrade", "h2c"),
                ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
            ),
        ),  # fmt: skip
        ("upgrade foo", H + (("Connection", "upgrade"), ("Upgrade", "foo/1"))),
        ("proxy-conn", H + (("Proxy-Connection", "keep-alive"),)),
        ("proxy-authz", H + (("Proxy-Authorization", "Basic x"),)),
        ("max-forwards", H + (("Max-Forwards", "3"),)),
        ("x-original-url", H + (("X-Original-URL", "/svc/x"),)),
        ("via", H + (("Via", "1.0 a"),)),
        ("accept-encoding", H + (("Accept-Encoding", "gzip"),)),
        ("range", H + (("Range", "bytes=0-1"),)),
        ("if-none-match", H + (("If-None-Match", '"x"'),)),
        ("expect on get", H + (("Expect", "100-continue"),)),
        ("expect foo", H + (("Expect", "foo"),)),
        ("date", H + (("Date", "x"),)),
    ]
    for name, headers in hs:
        add(Case(f"header {name}", req("GET", "/h", headers)))
    raw_heads = [
        ("space before colon", b"GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n"),
        ("no colon", b"GET / HTTP/1.1\r\nHost: h\r\nX-A\r\n\r\n"),
        ("empty name", b"GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n"),
        ("bare LF", b"GET / HTTP/1.1\nHost: h\n\n"),
        ("bare LF end", b"GET / HTTP/1.1\r\nHost: h\r\n\n"),
        ("bare CR", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r2\r\n\r\n"),
        ("leading CRLF", b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("leading ws header", b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"),
        ("double space line", b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("trailing space line", b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n"),
        ("lower version", b"GET / http/1.1\r\nHost: h\r\n\r\n"),
        ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: h\r\n\r\n"),
        ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
        ("HTTP/0.9", b"GET /\r\n\r\n"),
        ("no version", b"GET / \r\nHost: h\r\n\r\n"),
        ("tab in line", b"GET\t/\tHTTP/1.1\r\nHost: h\r\n\r\n"),
        ("name with ctl", b"GET / HTTP/1.1\r\nHost: h\r\nX\x01A: 1\r\n\r\n"),
        ("name with utf8", b"GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: 1\r\n\r\n"),
        ("name with dot", b"GET / HTTP/1.1\r\nHost: h\r\nX.A: 1\r\n\r\n"),
        ("colon in value", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a:b::c\r\n\r\n"),
        ("value trailing tab", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\t\r\n\r\n"),
        ("value only ws", b"GET / HTTP/1.1\r\nHost: h\r\nX-A:   \r\n\r\n"),
        ("no space after colon", b"GET / HTTP/1.1\r\nHost:h\r\nX-A:b\r\n\r\n"),
    ]
    for name, data in raw_heads:
        add(Case(f"raw {name}", data))
    # framing
    B = b"hello world"
    framings = [
        ("cl 0", H + (("Content-Length", "0"),), b""),
        ("cl", H + (("Content-Length", "11"),), B),
        ("cl zeros", H + (("Content-Length", "011"),), B),
        ("cl dup same", H + (("Content-Length", "11"), ("Content-Length", "11")), B),
        ("cl list", H + (("Content-Length", "11, 11"),), B),
        ("cl differ", H + (("Content-Length", "11"), ("Content-Length", "5")), B),
        ("cl +", H + (("Content-Length", "+11"),), B),
        ("cl ws", H + (("Content-Length", " 11 "),), B),
        ("cl huge", H + (("Content-Length", "99999999999999999999"),), B),
        ("cl empty", H + (("Content-Length", ""),), B),
        ("cl+te", H + (("Content-Length", "11"), ("Transfer-Encoding", "chunked")), chunked(B)),
        ("te chunked", H + (("Transfer-Encoding", "chunked"),), chunked(B)),
        ("te Chunked", H + (("Transfer-Encoding", "Chunked"),), chunked(B)),
        ("te CHUNKED", H + (("Transfer-Encoding", "CHUNKED"),), chunked(B)),
        ("te gzip,chunked", H + (("Transfer-Encoding", "gzip, chunked"),), chunked(B)),
        ("te identity", H + (("Transfer-Encoding", "identity"),), B),
        ("te identity,chunked", H + (("Transfer-Encoding", "identity, chunked"),), chunked(B)),
        ("te chunked,chunked", H + (("Transfer-Encoding", "chunked, chunked"),), chunked(B)),
        (
            "te two",
            H + (("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")),
            chunked(B),
        ),  # fmt: skip
        ("te empty", H + (("Transfer-Encoding", ""),), B),
        ("chunk ext", H + (("Transfer-Encoding", "chunked"),), chunked(B, ext=b";a=b")),
        (
            "chunk ext quoted",
            H + (("Transfer-Encoding", "chunked"),),
            chunked(B, ext=b';a="b c"'),
        ),  # fmt: skip
        ("chunk ext bws", H + (("Transfer-Encoding", "chunked"),), chunked(B, ext=b" ; a=b")),
        ("chunk ext bare", H + (("Transfer-Encoding", "chunked"),), chunked(B, ext=b";a")),
        (
            "chunk trailers",
            H + (("Transfer-Encoding", "chunked"),),
            chunked(B, trailers=b"X-T: 1\r\n"),
        ),  # fmt: skip
        (
            "chunk 2 trailers",
            H + (("Transfer-Encoding", "chunked"),),
            chunked(B, trailers=b"X-T: 1\r\nX-U: 2\r\n"),
        ),  # fmt: skip
        (
            "chunk upper hex",
            H + (("Transfer-Encoding", "chunked"),),
            b"B\r\nhello world\r\n0\r\n\r\n",
        ),  # fmt: skip
        (
            "chunk zeros",
            H + (("Transfer-Encoding", "chunked"),),
            b"000b\r\nhello world\r\n00\r\n\r\n",
        ),  # fmt: skip
        ("chunk big one", H + (("Transfer-Encoding", "chunked"),), chunked(b"x" * 70000, (70000,))),
        ("chunk many small", H + (("Transfer-Encoding", "chunked"),), chunked(b"y" * 3000, (1,))),
        ("chunk empty body", H + (("Transfer-Encoding", "chunked"),), b"0\r\n\r\n"),
        ("chunk bad size", H + (("Transfer-Encoding", "chunked"),), b"zz\r\nhello\r\n0\r\n\r\n"),
        ("chunk overrun", H + (("Transfer-Encoding", "chunked"),), b"3\r\nhello\r\n0\r\n\r\n"),
        ("chunk lf only", H + (("Transfer-Encoding", "chunked"),), b"5\nhello\n0\n\n"),
        ("cl 64k", H + (("Content-Length", "65536"),), b"z" * 65536),
        ("cl 64k+1", H + (("Content-Length", "65537"),), b"z" * 65537),
        ("cl 1m", H + (("Content-Length", str(1 << 20)),), b"q" * (1 << 20)),
        (
            "chunk 1m+",
            H + (("Transfer-Encoding", "chunked"),),
            chunked(b"w" * ((1 << 20) + 10), (65536,)),
        ),  # fmt: skip
    ]
    for name, headers, body in framings:
        add(Case(f"framing POST {name}", req("POST", "/f", headers, body)))
    add(Case("framing GET cl body", req("GET", "/f", H + (("Content-Length", "3"),), b"abc")))
    add(
        Case(
            "framing DELETE chunked",
            req("DELETE", "/f", H + (("Transfer-Encoding", "chunked"),), chunked(B)),
        )
    )
    add(Case("framing HEAD cl body", req("HEAD", "/f", H + (("Content-Length", "3"),), b"abc"),
             ["HEAD"]))  # fmt: skip
    # versions and keep-alive
    add(Case("1.0", req("GET", "/v", H, version="HTTP/1.0")))
    add(Case("1.0 no host", req("GET", "/v", (), version="HTTP/1.0")))
    add(Case("1.0 keep-alive", req("GET", "/v", H + (("Connection", "keep-alive"),),
                                   version="HTTP/1.0")))  # fmt: skip
    add(Case("1.0 post cl", req("POST", "/v", H + (("Content-Length", "3"),), b"abc",
                                version="HTTP/1.0")))  # fmt: skip
    add(Case("1.0 te", req("POST", "/v", H + (("Transfer-Encoding", "chunked"),), chunked(B),
                           version="HTTP/1.0")))  # fmt: skip
    add(Case("1.0 head", req("HEAD", "/v", H, version="HTTP/1.0"), ["HEAD"]))
    # Expect
    add(
        Case(
            "expect 100 post",
            req("POST", "/e", H + (("Expect", "100-continue"), ("Content-Length", "3")), b"abc"),
        )
    )
    add(
        Case(
            "expect 100 post wait",
            [req("POST", "/e", H + (("Expect", "100-continue"), ("Content-Length", "3"))), b"abc"],
        )
    )
    add(Case("expect 100 chunked", req("POST", "/e", H + (("Expect", "100-continue"),
                                                          ("Transfer-Encoding", "chunked")),
                                       chunked(B))))  # fmt: skip
    add(Case("expect 100 1.0", req("POST", "/e", H + (("Expect", "100-continue"),
                                                      ("Content-Length", "3")), b"abc",
                                   version="HTTP/1.0")))  # fmt: skip
    add(
        Case(
            "expect 100 CL0",
            req("POST", "/e", H + (("Expect", "100-Continue"), ("Content-Length", "0"))),
        )
    )
    # pipelining
    g = req("GET", "/p1")
    p = req("POST", "/p2", H + (("Content-Length", "3"),), b"abc")
    ch = req("POST", "/p3", H + (("Transfer-Encoding", "chunked"),), chunked(B))
    cht = req("POST", "/p4", H + (("Transfer-Encoding", "chunked"),),
              chunked(B, trailers=b"X-T: 1\r\n"))  # fmt: skip
    hd = req("HEAD", "/p5")
    add(Case("pipe get get", g + g))
    add(Case("pipe get post get", g + p + g))
    add(Case("pipe chunked get", ch + g))
    add(Case("pipe trailers get", cht + g))
    add(Case("pipe head get", hd + g, ["HEAD", "GET"]))
    add(Case("pipe get close get", req("GET", "/c", H + (("Connection", "close"),)) + g))
    add(Case("pipe 1.0 get", req("GET", "/v", H, version="HTTP/1.0") + g))
    add(Case("pipe get bad", g + b"GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n"))
    add(Case("pipe 10", g * 10))
    add(Case("pipe split", [g[:10], g[10:] + g[:5], g[5:]]))
    add(
        Case(
            "pipe cl+te after get",
            g
            + req(
                "POST",
                "/s",
                H + (("Content-Length", "4"), ("Transfer-Encoding", "chunked")),
                b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
            ),
        )
    )
    add(
        Case(
            "pipe expect then get",
            req("POST", "/e", H + (("Expect", "100-continue"), ("Content-Length", "3")), b"abc")
            + g,
        )
    )
    # early close / half-close
    add(Case("half-close after get", g, half_close=True))
    add(Case("half-close after post", p, half_close=True))
    add(Case("half-close partial body", req("POST", "/x", H + (("Content-Length", "10"),),
                                            b"abc"), half_close=True))  # fmt: skip
    add(Case("half-close partial head", b"GET / HTTP/1.1\r\nHost: h\r\n", half_close=True))
    add(Case("half-close partial chunk", req("POST", "/x", H + (("Transfer-Encoding",
             "chunked"),), b"5\r\nhel"), half_close=True))  # fmt: skip
    add(Case("close partial body", req("POST", "/x", H + (("Content-Length", "10"),), b"abc"),
             close_after=True))  # fmt: skip
    return c


def resp_cases() -> list[Case]:
    c: list[Case] = []
    g = req("GET", "/r")
    replies = {
        "ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "empty reason": b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok",
        "no reason": b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
        "latin1 reason": b"HTTP/1.1 200 Tr\xe8s bien\r\nContent-Length: 2\r\n\r\nok",
        "utf8 reason": b"HTTP/1.1 200 Tr\xc3\xa8s bien\r\nContent-Length: 2\r\n\r\nok",
        "custom reason": b"HTTP/1.1 404 Nope Nope\r\nContent-Length: 2\r\n\r\nno",
        "long reason": b"HTTP/1.1 200 " + b"R" * 2000 + b"\r\nContent-Length: 2\r\n\r\nok",
        "1.0 cl": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "1.0 close": b"HTTP/1.0 200 OK\r\n\r\nclose-delimited",
        "1.1 close-delimited": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclose-delimited",
        "1.1 no framing": b"HTTP/1.1 200 OK\r\n\r\nno framing at all",
        "100 then 200": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "103 then 200": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "102 then 200": b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "two 103": b"HTTP/1.1 103 EH\r\nLink: <a>\r\n\r\nHTTP/1.1 103 EH\r\nLink: <b>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "101": b"HTTP/1.1 101 Switching\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n",
        "204 cl body": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
        "204 body": b"HTTP/1.1 204 No Content\r\n\r\nhello",
        "204 plain": b"HTTP/1.1 204 No Content\r\n\r\n",
        "204 chunked": b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "304 body": b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\nhello',
        "304 cl": b'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: "x"\r\n\r\n',
        "205 body": b"HTTP/1.1 205 Reset\r\nContent-Length: 3\r\n\r\nabc",
        "cl dup same": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        "cl dup differ": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
        "cl list": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
        "cl invalid": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok",
        "cl neg": b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
        "cl zeros": b"HTTP/1.1 200 OK\r\nContent-Length: 002\r\n\r\nok",
        "cl short": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok",
        "cl long": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
        "cl+te": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "chunked trailers": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
        b"2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
        "chunked ext": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b\r\nok\r\n0\r\n\r\n",
        "chunked bad size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
        "chunked no end": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n",
        "chunked gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "te identity": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nbody",
        "chunked uppercase": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "many headers 100": b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(100))
        + b"Content-Length: 2\r\n\r\nok",
        "many headers 300": b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(300))
        + b"Content-Length: 2\r\n\r\nok",
        "set-cookie x3": b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2; Path=/\r\n"
        b"Set-Cookie: c=3, d=4\r\nContent-Length: 2\r\n\r\nok",
        "obs-fold": b"HTTP/1.1 200 OK\r\nX-F: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
        "bare LF": b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: 1\n\nok",
        "bare LF status": b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok",
        "bare CR": b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok",
        "no colon": b"HTTP/1.1 200 OK\r\nX-A\r\nContent-Length: 2\r\n\r\nok",
        "space before colon": b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 2\r\n\r\nok",
        "nul value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
        "latin1 value": b"HTTP/1.1 200 OK\r\nX-A: caf\xe9\r\nContent-Length: 2\r\n\r\nok",
        "empty value": b"HTTP/1.1 200 OK\r\nX-A:\r\nX-B: \r\nContent-Length: 2\r\n\r\nok",
        "underscore name": b"HTTP/1.1 200 OK\r\nX_A: 1\r\nContent-Length: 2\r\n\r\nok",
        "status 999": b"HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\nok",
        "status 600": b"HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok",
        "status 099": b"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok",
        "status 2000": b"HTTP/1.1 2000 Odd\r\nContent-Length: 2\r\n\r\nok",
        "status 20": b"HTTP/1.1 20 Odd\r\nContent-Length: 2\r\n\r\nok",
        "status 599": b"HTTP/1.1 599 Odd\r\nContent-Length: 2\r\n\r\nok",
        "status 418": b"HTTP/1.1 418 Teapot\r\nContent-Length: 2\r\n\r\nok",
        "status 500": b"HTTP/1.1 500 Boom\r\nContent-Length: 4\r\n\r\nboom",
        "status 503 retry": b"HTTP/1.1 503 Busy\r\nRetry-After: 5\r\nContent-Length: 4\r\n\r\nbusy",
        "HTTP/2": b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.2": b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "lower http": b"http/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "garbage": b"garbage\r\n\r\n",
        "empty": b"",
        "partial head": b"HTTP/1.1 200 OK\r\nContent-Le",
        "partial body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some",
        "conn x-foo": b"HTTP/1.1 200 OK\r\nConnection: X-Foo\r\nX-Foo: 1\r\nX-Bar: 2\r\n"
        b"Content-Length: 2\r\n\r\nok",
        "conn close cl": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        "keep-alive hdr": b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: x\r\n"
        b"Upgrade: foo\r\nTrailer: X\r\nContent-Length: 2\r\n\r\nok",
        "www-auth x2": b"HTTP/1.1 401 No\r\nWWW-Authenticate: Basic\r\nWWW-Authenticate: Bearer\r\n"
        b"Content-Length: 2\r\n\r\nno",
        "gzip body": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\n\x1f\x8b\x00\x01",
        "no content-type": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "cl 0": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "big cl": b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + b"B" * 1048576,
        "big chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b"C" * 300000, (65536,)),
        "big close": b"HTTP/1.0 200 OK\r\n\r\n" + b"D" * 300000,
        "header 9k": b"HTTP/1.1 200 OK\r\nX-L: " + b"l" * 9000 + b"\r\nContent-Length: 2\r\n\r\nok",
        "header 20k": b"HTTP/1.1 200 OK\r\nX-L: "
        + b"l" * 20000
        + b"\r\nContent-Length: 2\r\n\r\nok",
        "location": b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n",
        "date server": b"HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nServer: up\r\n"
        b"Content-Length: 2\r\n\r\nok",
        "leading crlf": b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "tab sep status": b"HTTP/1.1\t200\tOK\r\nContent-Length: 2\r\n\r\nok",
        "multi space status": b"HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\nok",
        "content-length ws": b"HTTP/1.1 200 OK\r\nContent-Length:  2 \r\n\r\nok",
        "te chunked cl 0": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
        "chunked lf": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\n0\n\n",
        "chunk ext bws": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 ; a=b\r\nok\r\n0\r\n\r\n",
    }
    for name, reply in replies.items():
        c.append(Case(f"resp {name}", g, scripts=[(reply, True)]))
        if name in ("ok", "chunked", "chunked trailers", "204 plain", "304 cl", "1.0 cl",
                    "set-cookie x3", "cl long", "204 body", "100 then 200", "103 then 200"):  # fmt: skip
            c.append(Case(f"resp {name} keep", g, scripts=[(reply, False)]))
    # HEAD answers
    for name, reply in {
        "head cl": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        "head body": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "head chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "head no cl": b"HTTP/1.1 200 OK\r\n\r\n",
    }.items():
        for close in (True, False):
            c.append(Case(f"resp {name} close={close}", req("HEAD", "/r"), ["HEAD"],
                          [(reply, close)]))  # fmt: skip
    # 1.0 client with chunked upstream answer, and upstream hang
    c.append(Case("resp chunked to 1.0 client", req("GET", "/r", H, version="HTTP/1.0"),
                  scripts=[(replies["chunked"], True)]))  # fmt: skip
    c.append(Case("resp close-delimited to 1.0 client", req("GET", "/r", H, version="HTTP/1.0"),
                  scripts=[(replies["1.0 close"], True)]))  # fmt: skip
    c.append(Case("resp hang", g, scripts=[(b"<hang>", True)]))
    post = req("POST", "/r", H + (("Content-Length", "3"),), b"abc")
    for name in ("empty", "partial head", "partial body", "garbage", "cl short", "100 then 200",
                 "chunked no end"):  # fmt: skip
        c.append(Case(f"resp POST {name}", post, scripts=[(replies[name], True)]))
    # pipelined with scripted replies
    c.append(Case("resp pipe cl-long then get", g + g, scripts=[(replies["cl long"], False)]))
    c.append(Case("resp pipe 204 body then get", g + g, scripts=[(replies["204 body"], False)]))
    c.append(Case("resp post early answer", req("POST", "/r", H + (("Content-Length", "3"),),
                                                b"abc"),
                  scripts=[(b"HTTP/1.1 413 Too Big\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig",
                            True)]))  # fmt: skip
    return c


def random_cases(seed: int, n: int) -> list[Case]:
    rnd = random.Random(seed)
    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO"]
    segs = ["a", "svc", "..", ".", "", "%2e", "%2E%2e", "%2f", "%41", "x;p=1", ";", "%", "%7e",
            "~", "b c", "%c3%a9", "%00", "\\", "?", "?q=1", "#f", "!", "*", "@", ":",
            "%20", "%25", "%3f", "+", "..;", ".;x"]  # fmt: skip
    hnames = ["X-A", "x-a", "X-A ", "X_A", "Cookie", "Accept", "Connection", "Keep-Alive",
              "TE", "Trailer", "Upgrade", "Via", "X-Forwarded-For", "Forwarded", "Expect",
              "Content-Type", "Range", "Authorization", "Max-Forwards", "Proxy-Connection"]  # fmt: skip
    hvals = ["1", "", " ", "a, b", "close", "keep-alive", "X-A", "trailers", "100-continue",
             "\t1", "v ", "caf\xe9", "x" * 300, "X-A, Cookie", "upgrade", "h2c", "0"]  # fmt: skip
    out = []
    for i in range(n):
        m = rnd.choice(methods)
        path = "/" + "/".join(rnd.choice(segs) for _ in range(rnd.randint(0, 4)))
        if rnd.random() < 0.3:
            path += "?" + "&".join(rnd.choice(segs) for _ in range(rnd.randint(1, 3)))
        headers = [("Host", rnd.choice(["h", "h", "H:80", "other.example"]))]
        for _ in range(rnd.randint(0, 5)):
            headers.append((rnd.choice(hnames), rnd.choice(hvals)))
        rnd.shuffle(headers)
        body = b""
        fr = rnd.choice(["none", "none", "cl", "chunked", "chunked-trailer", "cl0"])
        payload = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 50)))
        if fr == "cl":
            headers.append(("Content-Length", str(len(payload))))
            body = payload
        elif fr == "cl0":
            headers.append(("Content-Length", "0"))
        elif fr.startswith("chunked"):
            headers.append(("Transfer-Encoding", "chunked"))
            tr = b"X-T: 1\r\n" if fr == "chunked-trailer" else b""
            body = chunked(payload, (rnd.randint(1, 9),), trailers=tr)
        version = "HTTP/1.0" if rnd.random() < 0.1 else "HTTP/1.1"
        data = req(m, path, headers, body, version)
        n_pipe = 1
        if rnd.random() < 0.2:
            data += req("GET", "/after")
            n_pipe = 2
        out.append(Case(f"random {i}", data, [m] + ["GET"] * (n_pipe - 1)))
    return out


def split_cases(seed: int, n: int) -> list[Case]:
    """Valid pipelines (bodies of every framing, Expect, HEAD, big bodies) cut into pieces
    at random offsets: both proxies must forward and answer every request, in order."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        reqs, methods = [], []
        for j in range(rnd.randint(1, 5)):
            kind = rnd.choice(["get", "head", "cl", "cl-big", "chunked", "chunked-ext", "expect",
                               "expect-chunked", "delete-cl", "options", "cl0", "chunked-big"])  # fmt: skip
            t = f"/s{i}/{j}/{kind}"
            body = bytes(rnd.choice(b"abcGET /\r\n") for _ in range(rnd.randint(1, 200)))
            if kind == "get":
                r, m = req("GET", t), "GET"
            elif kind == "head":
                r, m = req("HEAD", t), "HEAD"
            elif kind == "options":
                r, m = req("OPTIONS", t), "OPTIONS"
            elif kind == "cl0":
                r, m = req("POST", t, H + (("Content-Length", "0"),)), "POST"
            elif kind in ("cl", "delete-cl"):
                m = "POST" if kind == "cl" else "DELETE"
                r = req(m, t, H + (("Content-Length", str(len(body))),), body)
            elif kind == "cl-big":
                big = body * (70000 // len(body) + 1)
                r, m = req("PUT", t, H + (("Content-Length", str(len(big))),), big), "PUT"
            elif kind == "chunked-big":
                big = body * (70000 // len(body) + 1)
                r = req("PUT", t, H + (("Transfer-Encoding", "chunked"),), chunked(big, (8000, 3)))
                m = "PUT"
            elif kind.startswith("chunked"):
                ext = b";x=y" if kind == "chunked-ext" else b""
                sizes = (rnd.randint(1, 50), rnd.randint(1, 50))
                r = req("POST", t, H + (("Transfer-Encoding", "chunked"),),
                        chunked(body, sizes, ext=ext))  # fmt: skip
                m = "POST"
            elif kind == "expect":
                r = req("POST", t, H + (("Expect", "100-continue"),
                                        ("Content-Length", str(len(body)))), body)  # fmt: skip
                m = "POST"
            else:
                r = req("POST", t, H + (("Expect", "100-continue"),
                                        ("Transfer-Encoding", "chunked")), chunked(body, (7,)))  # fmt: skip
                m = "POST"
            reqs.append(r)
            methods.append(m)
        data = b"".join(reqs)
        cuts = sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, rnd.randint(1, 4))))
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)], strict=True)]
        out.append(Case(f"split {i}", pieces, methods, pause=0.02))
    return out


# -- running -------------------------------------------------------------------------------


def summarize_req(up: str, g: Got) -> dict:
    hdrs = sorted(
        (k.lower(), v) for k, v in g.headers if k.lower() not in ADDED and not k.startswith("x-n")
    )
    return {
        "up": up,
        "method": g.method,
        "target": g.target,
        "body": g.body.hex() if len(g.body) < 64 else f"{len(g.body)}B:{hash(g.body)}",
        "headers": hdrs,
        "version": g.version,
        "framing": g.framing,
        "trailers": g.trailers,
        "conn": g.conn,
    }


def run_case(port: int, ups: Upstreams, side: str, case: Case) -> dict:
    ups.reset(side, case.scripts)
    cl = Client(port)
    pieces = case.data if isinstance(case.data, list) else [case.data]
    for i, piece in enumerate(pieces):
        if i:
            time.sleep(case.pause)
        cl.send(piece)
    if case.half_close:
        try:
            cl.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    responses: list[Resp] = []
    state = ""
    if case.close_after:
        cl.close()
        time.sleep(0.3)
        state = "client-closed"
    else:
        methods = (
            case.methods
            or [
                m.decode("latin-1")
                for m in re.findall(
                    rb"(?:^|\n)([A-Za-z-]+) [^ \r\n]* HTTP/1\.[01]\r\n", b"".join(pieces)
                )
            ]
            or [pieces[0].split(b" ", 1)[0].decode("latin-1")]
        )
        for m in methods:
            r = cl.response(m)
            responses.append(r)
            if r.error or not r.status:
                break
            if any(k.lower() == "connection" and "close" in v.lower() for k, v in r.headers):
                break
        state = cl.state()
        usable = False
        if state == "open":
            cl.send(b"GET /followup HTTP/1.1\r\nHost: h\r\n\r\n")
            fr = cl.response("GET", timeout=3)
            usable = fr.status == 200 and not fr.error
            state = "usable" if usable else f"hung/broken({fr.status},{fr.error})"
        cl.close()
    # let the upstream see everything (bounded wait: the upstream's recording settles)
    time.sleep(0.05)
    snap = ups.snapshot(side)
    return {
        "forwarded": [
            summarize_req(up, g) for up, g in snap["requests"] if g.target != "/followup"
        ],
        "upstream_errors": snap["errors"],
        "responses": [
            {
                "status": r.status,
                "reason": r.reason,
                "version": r.version,
                "interim": r.interim,
                "framing": r.framing,
                "body": r.body.decode("latin-1")
                if len(r.body) <= 80
                else f"{len(r.body)}B:{hash(r.body)}",
                "text": r.body[:200].decode("latin-1"),
                "headers": sorted(
                    (k.lower(), v) for k, v in r.headers if k.lower() not in RESP_IGNORED
                ),
                "error": r.error,
            }
            for r in responses
        ],
        "state": state,
    }


def route_of(target: str) -> str:
    path = target.split("?", 1)[0]
    return "svc" if path == "/svc" or path.startswith("/svc/") else "legacy"


def compare(name: str, a: dict, b: dict) -> list[str]:
    """Differences between nginx (a) and strangler (b), as short strings."""
    diffs = []
    fa = [(f["up"], f["method"], f["target"], f["body"]) for f in a["forwarded"]]
    fb = [(f["up"], f["method"], f["target"], f["body"]) for f in b["forwarded"]]
    if len(fa) != len(fb):
        diffs.append(f"forwarded count ngx={len(fa)} str={len(fb)}")
    for x, y in zip(fa, fb, strict=False):
        if x != y:
            diffs.append(f"forwarded ngx={x} str={y}")
    for x, y in zip(a["forwarded"], b["forwarded"], strict=False):
        hx, hy = set(map(tuple, x["headers"])), set(map(tuple, y["headers"]))
        if hx != hy:
            diffs.append(f"upstream headers ngx-only={sorted(hx - hy)} str-only={sorted(hy - hx)}")
    for f in b["forwarded"]:
        if route_of(f["target"]) != f["up"]:
            diffs.append(f"STRANGLER ROUTE MISMATCH {f['target']} reached {f['up']}")

    def key(r: dict) -> tuple:
        # the proxies' own error pages differ by design: compare their status only
        return (r["status"], r["body"] if r["status"] < 400 else "", r["error"] != "")

    sa = [key(r) for r in a["responses"]]
    sb = [key(r) for r in b["responses"]]
    if sa != sb:
        diffs.append(f"client ngx={sa} str={sb}")
    if [r["interim"] for r in a["responses"]] != [r["interim"] for r in b["responses"]]:
        diffs.append("interim differ")
    for x, y in zip(a["responses"], b["responses"], strict=False):
        if x["headers"] != y["headers"] and x["status"] == y["status"] and x["status"] < 400:
            hx, hy = set(map(tuple, x["headers"])), set(map(tuple, y["headers"]))
            diffs.append(f"client headers ngx-only={sorted(hx - hy)} str-only={sorted(hy - hx)}")
        if x["version"] and y["version"] and x["version"] != y["version"]:
            diffs.append(f"status line version ngx={x['version']} str={y['version']}")
        if (x["error"] or y["error"]) and x["error"] != y["error"]:
            diffs.append(f"client error ngx={x['error']!r} str={y['error']!r}")
    if a["state"] != b["state"]:
        diffs.append(f"conn ngx={a['state']} str={b['state']}")
    if b["upstream_errors"]:
        diffs.append(f"STRANGLER upstream errors {b['upstream_errors']}")
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--random", type=int, default=300)
    ap.add_argument("--split", type=int, default=100)
    ap.add_argument("--only", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--hold", type=float, default=0, help="only start both proxies for N s")
    args = ap.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    work = Path(tempfile.mkdtemp(prefix="ngxdiff-"))
    ups = Upstreams()
    ngx_port, str_port, admin = free_port(), free_port(), free_port()
    ls = ups.ls
    ngx_conf = nginx_conf(work, ngx_port, ls["ngx-legacy"].port, ls["ngx-svc"].port)
    s_conf = strangler_conf(work, str_port, admin, ls["str-legacy"].port, ls["str-svc"].port)
    for sub in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
        (work / sub).mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                [nginx, "-p", str(work), "-c", str(ngx_conf)],
                stdout=subprocess.DEVNULL,
                stderr=(work / "nginx.stderr").open("w"),
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "proxy.cli", "serve", "-c", str(s_conf)],
                stdout=(work / "strangler.log").open("w"),
                stderr=subprocess.STDOUT,
                env=env,
                cwd=work,
            )
        )
        wait_port(ngx_port, procs[0])
        wait_port(str_port, procs[1])
        if args.hold:
            print(f"nginx {ngx_port} strangler {str_port}", flush=True)
            time.sleep(args.hold)
            return 0
        cases = (
            hand_cases()
            + resp_cases()
            + random_cases(args.seed, args.random)
            + split_cases(args.seed, args.split)
        )
        if args.only:
            cases = [c for c in cases if args.only in c.name]
        results = []
        for case in cases:
            a = run_case(ngx_port, ups, "ngx", case)
            b = run_case(str_port, ups, "str", case)
            diffs = compare(case.name, a, b)
            results.append({"case": case.name, "ngx": a, "str": b, "diffs": diffs})
            if diffs:
                print(f"== {case.name}")
                for d in diffs:
                    print("   ", d[:400])
                if args.verbose:
                    print("    ngx:", json.dumps(a)[:1500])
                    print("    str:", json.dumps(b)[:1500])
            for p in procs:
                if p.poll() is not None:
                    print(f"!! process {p.args[0]} died ({p.returncode}) at {case.name}")
                    return 2
        print(
            f"{len(cases)} cases, {sum(bool(r['diffs']) for r in results)} differ; logs in {work}"
        )
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
