"""Connection handling with real peers: client keep-alive, pipelining, and upstreams that
close keep-alive connections (nginx keepalive_requests 2, gunicorn sync and max_requests,
gunicorn's 1 s idle timeout) without any client seeing an error."""

from __future__ import annotations

import http.client
import json
import subprocess
import urllib.request

import httpx

from tests.conformance.wire import Wire
from tests.support.procs import wait_until


def test_one_client_connection_serves_many_requests_to_every_upstream(stack):
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    conn.connect()
    sock = conn.sock
    paths = ["/gs/echo", "/gt/echo", "/gt/chunked", "/ng/text.txt", "/ai/echo", "/h10/x",
             "/health"]  # fmt: skip
    for i in range(10 * len(paths)):
        conn.request("GET", paths[i % len(paths)])
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, (paths[i % len(paths)], resp.status)
        assert conn.sock is sock, f"the proxy closed the client connection after {paths[i % 7]}"
    conn.close()


def test_upstreams_closing_keep_alive_cause_no_client_errors(stack):
    # nginx closes after 2 requests, gunicorn sync after every one, gm restarts its worker
    # every 3 requests: each pooled connection the proxy holds goes stale in turn.
    pids = set()
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        for i in range(24):
            for path in ("/ng/text.txt", "/gs/echo", "/gm/echo"):
                r = client.get(path)
                assert r.status_code == 200, (i, path, r.status_code, r.text[:200])
                if path == "/gm/echo":
                    pids.add(r.json()["pid"])
            r = client.head("/ng/file.bin")
            assert r.status_code == 200
    assert len(pids) >= 4, f"gunicorn max_requests restarts were not exercised: {pids}"


def test_concurrent_clients_against_closing_upstreams(stack):
    import concurrent.futures

    def burst(path: str) -> list[int]:
        with httpx.Client(base_url=stack.url, timeout=10) as c:
            return [c.get(path).status_code for _ in range(10)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(burst, ["/ng/text.txt", "/gs/echo", "/gm/echo", "/gt/echo"] * 2))
    assert all(s == 200 for r in results for s in r), results


def _pooled_to(port: int) -> int:
    """Established connections the proxy holds to an upstream port."""
    out = subprocess.run(
        ["ss", "-tnH", "state", "established", "dst", f"127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return len([line for line in out.stdout.splitlines() if line.strip()])


def test_post_after_the_upstream_closed_an_idle_connection(stack):
    port = stack.ports["gt"]  # gunicorn gthread, --keep-alive 1
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        for i in range(3):
            r = client.post("/gt/echo", content=b"first")
            assert r.status_code == 200
            wait_until(lambda: _pooled_to(port) == 0, timeout=5, what="gunicorn's idle close")
            r = client.post("/gt/echo", content=b"after idle close %d" % i)
            assert r.status_code == 200, (i, r.status_code, r.text[:300], stack.log_tail())
            assert r.json()["body_len"] == len(b"after idle close %d" % i)


def test_pipelined_requests_across_upstreams_that_close(stack):
    reqs = b"".join(
        b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p
        for p in (
            b"/ng/text.txt",
            b"/gs/echo",
            b"/ng/text.txt",
            b"/ai/echo",
            b"/ng/file.bin",
            b"/gm/echo",
            b"/h10/x",
        )  # fmt: skip
    )
    with Wire(stack.port, timeout=10) as w:
        w.send(reqs)
        got = [w.response() for _ in range(7)]
    assert [r.status for r in got] == [200] * 7
    assert json.loads(got[1].body)["uri"] == "/gs/echo"
    assert got[6].body.startswith(b"line 00000")


def test_urllib_against_the_monolith(stack):
    req = urllib.request.Request(
        stack.url + "/api/customers?page_size=3",
        headers={"Authorization": "Token demo-token-acme", "X-Tenant-ID": "acme"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        assert json.loads(resp.read())


def test_sixty_pipelined_requests_across_all_upstreams(stack):
    paths = [b"/ng/text.txt", b"/gs/echo", b"/gm/echo", b"/h10/x", b"/ai/echo", b"/gt/chunked"]
    reqs = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % paths[i % 6] for i in range(60))
    with Wire(stack.port, timeout=20) as w:
        w.send(reqs)
        got = [w.response() for _ in range(60)]
    assert [r.status for r in got] == [200] * 60
    assert [json.loads(got[i].body)["uri"] for i in range(1, 60, 6)] == ["/gs/echo"] * 10
    assert all(
        got[i].body == b"".join(b"chunk-%d;" % n for n in range(50)) for i in range(5, 60, 6)
    )


def test_posts_to_upstreams_that_close_after_n_requests(stack):
    # Not retryable, so only correct connection handling (never reusing a connection the
    # upstream announced it would close) keeps these from failing.
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        for i in range(30):
            for path in ("/gm/echo", "/gs/echo"):
                r = client.post(path, content=b"p%d" % i)
                assert r.status_code == 200, (i, path, r.status_code, r.text[:200])
                assert r.json()["body_len"] == len(b"p%d" % i)
