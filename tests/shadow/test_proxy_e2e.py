"""End to end: the real proxy in shadow mode in front of real primary/candidate processes,
then `strangler report` over what it stored."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import httpx

from tests.support.procs import PYTHON, ROOT, free_port, running, stop, wait_until


def test_proxy_shadows_compares_and_reports(tmp_path):
    legacy, cand, port, admin = free_port(), free_port(), free_port(), free_port()
    config = tmp_path / "routes.yaml"
    config.write_text(
        "version: 1\n"
        "upstreams:\n"
        f"  legacy: http://127.0.0.1:{legacy}\n"
        f"  items: http://127.0.0.1:{cand}\n"
        "routes:\n"
        "  - name: items\n"
        "    match:\n"
        '      path: "/items/{id}"\n'
        "    mode: shadow\n"
        "    target: items\n"
        "    shadow:\n"
        "      noise: primary-twice\n"
        "  - name: echo\n"
        "    match: {path: /echo}\n"
        "    mode: shadow\n"
        "    target: items\n"
        "shadow:\n"
        "  store: sqlite:///diffs.db\n"
        "telemetry:\n"
        "  redact: [X-Partner-Ref]\n"
    )
    app = [PYTHON, "-m", "tests.shadow.upstream_app", "--port"]
    with (
        running(
            app + [str(legacy), "--role", "primary"], ready_url=f"http://127.0.0.1:{legacy}/health"
        ),
        running(
            app + [str(cand), "--role", "candidate"], ready_url=f"http://127.0.0.1:{cand}/health"
        ),
        running(
            [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config), "--port", str(port)]
            + ["--admin-port", str(admin)],
            ready_url=f"http://127.0.0.1:{admin}/-/ready",
        ) as proxy,
    ):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for ident in range(1, 21):
                resp = client.get(f"/items/{ident}")
                assert resp.status_code == 200
                # the client always gets the primary's answer
                assert resp.json()["price_with_tax"] == 21.64
                assert resp.json()["email"].endswith("@example.com")
            # an upstream page echoing the request head: the store keeps the lines, not the
            # credentials (the client, of course, gets them back)
            creds = {"Cookie": "sid=SIDSECRET123", "X-Api-Key": "APIKEYSECRET"}
            creds["X-Partner-Ref"] = "REFSECRET"
            echoed = client.get("/echo", headers=creds)
            assert "APIKEYSECRET" in echoed.text

        def compared():
            snap = httpx.get(f"http://127.0.0.1:{admin}/-/shadow").json()
            routes = {r["route"]: r for r in snap["routes"]}
            done = routes.get("echo", {}).get("compared") == 1
            return done and routes.get("items", {}).get("compared") == 20 and routes["items"]

        live = wait_until(compared, timeout=20, what="21 shadow comparisons (20 items, 1 echo)")
        assert live["results"].get("mismatch", 0) + live["results"].get("noise", 0) == 20
        assert stop(proxy) == 0  # SIGTERM: the mirror flushes the store on the way out

    out = subprocess.run(
        [PYTHON, "-m", "proxy.cli", "report", "-c", str(config), "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    endpoints = {ep["route"]: ep for ep in json.loads(out.stdout)["endpoints"]}
    ep = endpoints["items"]
    assert ep["route"] == "items" and ep["method"] == "GET" and ep["samples"] == 20
    assert ep["noise_samples"] == 20
    assert {"$.trace_id", "$.generated_at"} <= set(ep["noise"])
    fields = {f["path"]: f for f in ep["fields"]}
    # even ids round differently in the candidate; id 3 renames a field; e-mails differ
    assert fields["$.price_with_tax"]["count"] == 10
    assert fields["$.price_with_tax"]["verdict"] == "failure"
    assert fields["$.name"]["kinds"] == {"missing": 1}
    assert fields["$.email"]["example"]["primary"] == "[REDACTED]"
    assert ep["matches"] == 0
    assert "example.com" not in out.stdout
    with sqlite3.connect(tmp_path / "diffs.db") as db:
        (stored,) = db.execute("SELECT record FROM comparisons WHERE route = 'echo'").fetchone()
    assert "X-Api-Key: [REDACTED]" in stored and "X-Partner-Ref: [REDACTED]" in stored
    for secret in ("SIDSECRET123", "APIKEYSECRET", "REFSECRET"):
        assert secret not in stored and secret not in out.stdout
