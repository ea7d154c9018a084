"""What shadow mode costs the primary path: throughput of one proxy process on a route in
shadow mode (the candidate a fast upstream) against the same route in legacy mode.

One `python -m proxy.cli serve` process carries both routes (`/legacy/...` in mode legacy,
`/shadow/...` in mode shadow, otherwise identical), so both are measured in the same process
and the same run; nginx (one worker) serves the same small JSON as primary and as candidate.
Load is `wrk`, the two routes measured in alternating rounds (the machine is shared and
noisy, so only the ratio means anything). Target: shadow >= 0.8x legacy requests/s.

The mirror yields to client traffic: while the event loop runs late its workers wait and the
bounded queue drops further shadow calls (counted as `queue_full`), so under saturation only a
small share of requests is compared. A second, paced phase (`hey`, PACED_RATE requests/s, well
below saturation) shows the other side: nearly every request compared, and the latency the
client sees on each route.

    python bench/shadow_bench.py            # BENCH_DURATION=5s BENCH_ROUNDS=3 BENCH_CONNECTIONS=32
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.procs import free_port, running, wait_http  # noqa: E402

PY = sys.executable
DURATION = os.environ.get("BENCH_DURATION", "5s")
CONNECTIONS = os.environ.get("BENCH_CONNECTIONS", "32")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PACED_RATE = int(os.environ.get("BENCH_PACED_RATE", "400"))
PACED_SECONDS = int(os.environ.get("BENCH_PACED_SECONDS", "4"))
TARGET = 0.8
BODY = '{"prod_id": 17, "sku": "SKU-00017", "prod_nm": "Sturdy Anvil", "price_cents": "1999", "tax_rate": "0.0825", "price_with_tax": "21.64", "tenant_id": "acme"}'
MODES = ("legacy", "shadow")


def nginx_conf(work: Path, port: int) -> Path:
    conf = work / "nginx.conf"
    body = BODY.replace("'", "\\'")
    conf.write_text(
        textwrap.dedent(
            f"""
            worker_processes 1;
            daemon off;
            pid {work}/nginx.pid;
            error_log {work}/nginx.err warn;
            events {{ worker_connections 4096; }}
            http {{
                access_log off;
                client_body_temp_path {work};
                proxy_temp_path {work};
                fastcgi_temp_path {work};
                uwsgi_temp_path {work};
                scgi_temp_path {work};
                keepalive_requests 100000;
                server {{
                    listen 127.0.0.1:{port};
                    location / {{ default_type application/json; return 200 '{body}'; }}
                }}
            }}
            """
        )
    )
    return conf


def routes_yaml(work: Path, upstream: int, port: int, admin: int) -> Path:
    """Two routes differing only in mode; primary and candidate are the same nginx."""
    path = work / "routes.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            version: 1
            listen: {{host: 127.0.0.1, port: {port}}}
            admin: {{host: 127.0.0.1, port: {admin}}}
            upstreams:
              legacy: {{url: "http://127.0.0.1:{upstream}"}}
              candidate: {{url: "http://127.0.0.1:{upstream}"}}
            default: legacy
            telemetry: {{log_format: text, metrics: true, traces: {{exporter: none}}}}
            shadow: {{store: "sqlite:///{work}/shadow.db"}}
            routes:
              - name: legacy
                match: {{prefix: /legacy}}
                mode: legacy
              - name: shadow
                match: {{prefix: /shadow}}
                mode: shadow
                target: candidate
            """
        )
    )
    return path


def wrk(url: str, duration: str = DURATION) -> tuple[float, int, int]:
    """(requests/s, requests completed, non-2xx/3xx answers)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    done = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, done, int(bad.group(1)) if bad else 0


def hey(url: str, rate: int = PACED_RATE, seconds: int = PACED_SECONDS) -> dict:
    """A paced load: p50/p99 latency in ms and the number of answers."""
    workers = 8
    out = subprocess.run(
        ["hey", "-z", f"{seconds}s", "-c", str(workers), "-q", str(max(1, rate // workers)), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ok = re.search(r"\[200\]\s+(\d+) responses", out)
    p99 = re.search(r"99% in ([\d.]+) secs", out)
    return {
        "p50": float(re.search(r"50%+ in ([\d.]+) secs", out).group(1)) * 1000,
        # hey prints no 99% line for small counts; then the slowest answer stands in
        "p99": float((p99 or re.search(r"Slowest:\s+([\d.]+) secs", out)).group(1)) * 1000,
        "ok": int(ok.group(1)) if ok else 0,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def shadow_figures(admin: str) -> dict:
    snap = httpx.get(f"{admin}/-/shadow", timeout=10).json()
    route = next((r for r in snap["routes"] if r["route"] == "shadow"), None) or {}
    return {
        "compared": route.get("compared", 0),
        "dropped": sum(route.get("dropped", {}).values()),
        "results": route.get("results", {}),
        "pending": route.get("queued", 0) + route.get("in_flight", 0),
    }


def drained(admin: str, timeout: float = 30.0) -> int:
    """Wait until no shadow work is queued or in flight; comparisons made so far."""
    deadline = time.monotonic() + timeout
    while True:
        figures = shadow_figures(admin)
        if figures["pending"] == 0 or time.monotonic() > deadline:
            return figures["compared"]
        time.sleep(0.05)


def run(
    rounds: int = ROUNDS,
    duration: str = DURATION,
    paced_rate: int = PACED_RATE,
    paced_seconds: int = PACED_SECONDS,
) -> dict:
    """Measure both routes `rounds` times, alternating; medians, ratio and shadow coverage;
    then the paced phase (skipped when `hey` is missing or `paced_seconds` is 0)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not shutil.which("wrk") or not Path(nginx).exists():
        raise SystemExit("wrk and nginx are required: apt-get install -y wrk nginx-light")
    rps: dict[str, list[float]] = {m: [] for m in MODES}
    cpu_us: dict[str, list[float]] = {m: [] for m in MODES}
    shadow_requests = 0
    with tempfile.TemporaryDirectory(prefix="strangler-shadowbench-") as tmp:
        work = Path(tmp)
        up, port, admin = free_port(), free_port(), free_port()
        admin_url = f"http://127.0.0.1:{admin}"
        with (
            running([nginx, "-c", str(nginx_conf(work, up))], ready_url=f"http://127.0.0.1:{up}/"),
            running(
                [PY, "-m", "proxy.cli", "serve", "-c", str(routes_yaml(work, up, port, admin))],
                ready_url=f"{admin_url}/-/ready",
                env={"STRANGLER_LOG_LEVEL": "WARNING"},
                stderr=subprocess.DEVNULL,
            ) as proxy,
        ):
            urls = {m: f"http://127.0.0.1:{port}/{m}/products/17" for m in MODES}
            for url in urls.values():
                wait_http(url)
                wrk(url, "1s")  # warm-up: connections, lanes, caches
            drained(admin_url)
            before = shadow_figures(admin_url)
            for i in range(rounds):
                for mode in MODES if i % 2 == 0 else MODES[::-1]:
                    cpu0 = cpu_seconds(proxy.pid)
                    per_second, done, bad = wrk(urls[mode], duration)
                    if bad:
                        raise SystemExit(f"{bad} error answers on the {mode} route")
                    rps[mode].append(per_second)
                    cpu_us[mode].append((cpu_seconds(proxy.pid) - cpu0) / max(done, 1) * 1e6)
                    if mode == "shadow":
                        shadow_requests += done
            after = shadow_figures(admin_url)
            paced = {}
            if shutil.which("hey") and paced_seconds > 0:
                start = drained(admin_url)  # what the saturated phase queued is done first
                for mode in MODES:
                    paced[mode] = hey(urls[mode], paced_rate, paced_seconds)
                paced_compared = drained(admin_url) - start
    compared = after["compared"] - before["compared"]
    dropped = after["dropped"] - before["dropped"]
    pending = after["pending"]  # admitted during the saturated phase, compared later
    legacy, shadow = statistics.median(rps["legacy"]), statistics.median(rps["shadow"])
    return {
        "paced": paced,
        "paced_rate": paced_rate,
        "paced_seconds": paced_seconds,
        "paced_compared": paced_compared if paced else None,
        "rps": {"legacy": legacy, "shadow": shadow},
        "rps_rounds": rps,
        "ratio": shadow / legacy,
        "cpu_us": {m: statistics.median(v) for m, v in cpu_us.items()},
        "shadow_requests": shadow_requests,
        "compared": compared,
        "dropped": dropped,
        "pending": pending,
        "results": after["results"],
        "rounds": rounds,
        "duration": duration,
        "connections": int(CONNECTIONS),
    }


def render(result: dict) -> str:
    share = result["compared"] / max(result["shadow_requests"], 1)
    lines = [
        f"shadow mode on the primary path: wrk -c{result['connections']} -d{result['duration']},"
        f" {result['rounds']} alternating rounds, medians; one proxy process, nginx upstream",
        "",
        "| route mode | requests/s | proxy CPU us/request |",
        "|---|---|---|",
        f"| legacy (pass-through) | {result['rps']['legacy']:,.0f} "
        f"| {result['cpu_us']['legacy']:.0f} |",
        f"| shadow (fast candidate) | {result['rps']['shadow']:,.0f} "
        f"| {result['cpu_us']['shadow']:.0f} |",
        "",
        f"shadow / legacy = **{result['ratio']:.2f}x** (target >= {TARGET}x)",
        "rounds (requests/s): "
        + "; ".join(
            f"{m} " + ", ".join(f"{v:,.0f}" for v in result["rps_rounds"][m]) for m in MODES
        ),
        f"shadowed: {result['compared']:,} of {result['shadow_requests']:,} requests compared "
        f"({share:.0%}) during the rounds, {result['pending']:,} queued for later, "
        f"{result['dropped']:,} shadow calls dropped (queue full); "
        f"results since start {result['results']}",
    ]
    paced = result["paced"]
    if paced:
        cover = result["paced_compared"] / max(paced["shadow"]["ok"], 1)
        lines += [
            "",
            f"paced at {result['paced_rate']} requests/s (hey -c8,"
            f" {result['paced_seconds']}s per route):",
            "",
            "| route mode | p50 ms | p99 ms |",
            "|---|---|---|",
        ]
        lines += [f"| {m} | {paced[m]['p50']:.2f} | {paced[m]['p99']:.2f} |" for m in MODES]
        lines += [
            "",
            f"shadowed: {result['paced_compared']:,} of {paced['shadow']['ok']:,} requests "
            f"compared ({cover:.0%})",
        ]
    return "\n".join(lines)


def main() -> None:
    print(render(run()))


if __name__ == "__main__":
    main()
