"""A 502 for an upstream the proxy cannot connect to says why: the host name did not
resolve, the TLS certificate was refused, the port refused. (It said "connection refused
or failed" for all three, in the answer and in the log line alike.)"""

from __future__ import annotations

import socket
import subprocess
import textwrap
from pathlib import Path

import httpx

from tests.support.procs import PYTHON, free_port, running, wait_until

TLS_SERVER = """\
import ssl, sys
from aiohttp import web
async def hello(_): return web.Response(text="hello")
app = web.Application(); app.router.add_get("/{tail:.*}", hello)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[2], sys.argv[3])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), ssl_context=ctx, print=None)
"""


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_a_502_names_the_dns_tls_or_refusal_behind_it(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    tls_port, closed_port, port, admin_port = free_port(), free_port(), free_port(), free_port()
    config = tmp_path / "routes.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            listen: {{host: 127.0.0.1, port: {port}}}
            admin: {{host: 127.0.0.1, port: {admin_port}}}
            upstreams:
              legacy: {{url: "http://127.0.0.1:{closed_port}"}}
              nowhere: {{url: "http://no-such-host.invalid:80"}}
              selfsigned: {{url: "https://127.0.0.1:{tls_port}"}}
            default: legacy
            routes:
              - {{name: dns, match: {{prefix: /dns}}, mode: extracted, target: nowhere}}
              - {{name: tls, match: {{prefix: /tls}}, mode: extracted, target: selfsigned}}
            """
        )
    )
    log = tmp_path / "proxy.log"
    with (
        running(
            [PYTHON, "-c", TLS_SERVER, str(tls_port), str(cert), str(key)],
            ready_url=None,
        ),
        running(
            [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config)],
            ready_url=f"http://127.0.0.1:{admin_port}/-/ready",
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        ),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client,
    ):
        wait_until(lambda: _listening(tls_port), what="the TLS upstream")
        answers = {path: client.get(path) for path in ("/dns/x", "/tls/x", "/x")}

    messages = {path: r.json()["message"] for path, r in answers.items()}
    assert {r.status_code for r in answers.values()} == {502}, messages
    assert "upstream nowhere unreachable: its host name did not resolve" in messages["/dns/x"]
    assert "upstream selfsigned unreachable: its TLS certificate was refused" in messages["/tls/x"]
    assert "self-signed certificate" in messages["/tls/x"]
    assert messages["/x"] == "upstream legacy unreachable: connection refused"
    text = log.read_text()
    for message in messages.values():
        assert message in text  # the log line says it too


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
