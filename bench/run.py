"""`make bench`: every benchmark in one run, peers measured side by side.

Machines here are shared and noisy, so each figure is a ratio against a peer measured in
the same run (nginx for the proxy, deepdiff for the diff engine), never an absolute
target. Results are printed and appended to bench/RESULTS.md with date and machine.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.procs import free_port, running  # noqa: E402

PY = sys.executable
DURATION = os.environ.get("BENCH_DURATION", "5s")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = os.environ.get("BENCH_CONNECTIONS", "32")
# Not part of the 1-worker comparison the issue fixes: what a second process buys on a
# machine whose two cores also run wrk and the upstream.
TWO_WORKERS = "strangler, 2 workers (--workers 2)"
LOGGED = "strangler, access log on (to /dev/null; nginx: access_log off)"


def nginx_conf(workdir: Path, listen: int, body_dir: Path, upstream_port: int | None) -> Path:
    if upstream_port is None:
        server = f"""
            location / {{ default_type application/json; root {body_dir}; try_files /small.json =404; }}
        """
    else:
        server = """
            location / {
                proxy_pass http://up;
                proxy_http_version 1.1;
                proxy_set_header Connection "";
            }
        """
    upstream = (
        f"upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}"
        if upstream_port
        else ""
    )
    conf = workdir / f"nginx-{listen}.conf"
    conf.write_text(
        textwrap.dedent(
            f"""
            worker_processes 1;
            daemon off;
            pid {workdir}/nginx-{listen}.pid;
            error_log {workdir}/nginx-{listen}.err warn;
            events {{ worker_connections 4096; }}
            http {{
                access_log off;
                client_body_temp_path {workdir};
                proxy_temp_path {workdir};
                fastcgi_temp_path {workdir};
                uwsgi_temp_path {workdir};
                scgi_temp_path {workdir};
                keepalive_requests 100000;
                {upstream}
                server {{ listen 127.0.0.1:{listen}; {server} }}
            }}
            """
        )
    )
    return conf


def hey(url: str, rate: int = 2000, seconds: int = 8, workers: int = 20) -> tuple[float, float]:
    out = subprocess.run(
        ["hey", "-z", f"{seconds}s", "-c", str(workers), "-q", str(rate // workers), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", out).group(1)) * 1000
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out).group(1)) * 1000
    return p50, p99


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children so far (Linux /proc):
    `--workers N` serves from child processes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    return own + sum(cpu_seconds(child) for child in children)


def wrk(url: str, pid: int | None = None) -> tuple[float, float]:
    """Requests/s, and the CPU µs process `pid` (if given) spent per request meanwhile."""
    before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spent = cpu_seconds(pid) - before if pid else 0.0
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return rate, spent / max(total, 1) * 1e6


def hey_sequential(url: str, n: int = 3000) -> tuple[float, float]:
    out = subprocess.run(
        ["hey", "-n", str(n), "-c", "1", url], capture_output=True, text=True, check=True
    ).stdout
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", out).group(1)) * 1000
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out).group(1)) * 1000
    return p50, p99


def proxy_bench(results: list[str]) -> None:
    for tool in ("wrk", "hey", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is required: apt-get install -y wrk hey nginx-light")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        body_dir = work / "www"
        body_dir.mkdir()
        (body_dir / "small.json").write_text('{"id": 1, "name": "small", "ok": true}')
        up_port, ngx_port = free_port(), free_port()
        px_port, px_admin, slow_port, slow_admin = (free_port() for _ in range(4))
        naive_port, pump_port, parse_port = free_port(), free_port(), free_port()
        task_port, task_admin = free_port(), free_port()
        logged_port, logged_admin = free_port(), free_port()
        pair_port, pair_admin = free_port(), free_port()

        def routes(port: int, admin: int) -> str:
            path = work / f"routes-{port}.yaml"
            path.write_text(
                textwrap.dedent(
                    f"""
                    version: 1
                    listen: {{host: 127.0.0.1, port: {port}}}
                    admin: {{host: 127.0.0.1, port: {admin}}}
                    upstreams:
                      legacy: {{url: "http://127.0.0.1:{up_port}"}}
                    default: legacy
                    routes: []
                    """
                )
            )
            return str(path)

        def serve(port: int, admin: int, *args: str, **env: str) -> Any:
            """`strangler serve` on `port`, with extra CLI `args` and environment."""
            return running(
                [PY, "-m", "proxy.cli", "serve", "-c", routes(port, admin), *args],
                ready_url=f"http://127.0.0.1:{admin}/-/ready",
                env={"STRANGLER_LOG_LEVEL": "WARNING", **env},
            )

        with (
            running(
                [nginx, "-c", str(nginx_conf(work, up_port, body_dir, None))],
                ready_url=f"http://127.0.0.1:{up_port}/",
            ),
            running(
                [nginx, "-c", str(nginx_conf(work, ngx_port, body_dir, up_port))],
                ready_url=f"http://127.0.0.1:{ngx_port}/",
            ),
            serve(px_port, px_admin) as strangler,
            serve(task_port, task_admin, STRANGLER_EXPRESS="0") as task_lane,
            serve(logged_port, logged_admin, STRANGLER_LOG_LEVEL="INFO") as logged,
            serve(pair_port, pair_admin, "--workers", "2") as pair,
            serve(slow_port, slow_admin, STRANGLER_FAST_LANE="0") as slow_lane,
            running(
                [
                    PY,
                    str(ROOT / "bench/peers/naive_aiohttp_proxy.py"),
                    str(naive_port),
                    f"http://127.0.0.1:{up_port}",
                ],
                ready_url=f"http://127.0.0.1:{naive_port}/",
            ) as naive,
            running(
                [PY, str(ROOT / "bench/peers/byte_pump.py"), str(pump_port), str(up_port)],
                ready_url=f"http://127.0.0.1:{pump_port}/",
            ) as pump,
            running(
                [PY, str(ROOT / "bench/peers/parsing_pump.py"), str(parse_port), str(up_port)],
                ready_url=f"http://127.0.0.1:{parse_port}/",
            ) as parsing_pump,
        ):
            targets = {
                "upstream direct (nginx static)": (up_port, None),
                "nginx reverse proxy": (ngx_port, None),
                "strangler": (px_port, strangler.pid),
                LOGGED: (logged_port, logged.pid),
                "strangler, a task per request (STRANGLER_EXPRESS=0)": (task_port, task_lane.pid),
                TWO_WORKERS: (pair_port, pair.pid),
                "strangler, aiohttp lane only (STRANGLER_FAST_LANE=0)": (slow_port, slow_lane.pid),
                "naive aiohttp proxy (bench/peers)": (naive_port, naive.pid),
                "parsing pump, HTTP parsed, no features (bench/peers)": (
                    parse_port,
                    parsing_pump.pid,
                ),
                "byte pump, the Python floor (bench/peers)": (pump_port, pump.pid),
            }
            rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
            for _ in range(ROUNDS):  # interleaved, so a noisy moment hits every target
                for name, (port, pid) in targets.items():
                    rounds[name].append(wrk(f"http://127.0.0.1:{port}/", pid))
            latency = {
                name: hey(f"http://127.0.0.1:{targets[name][0]}/")
                for name in (
                    "upstream direct (nginx static)",
                    "nginx reverse proxy",
                    "strangler",
                    TWO_WORKERS,
                )
            }
            # hey's workers tick in step: 20 of them send 20 requests at once every 10 ms.
            # Four workers at 500/s each is the same rate in bursts of 4.
            steadier = {
                name: hey(f"http://127.0.0.1:{targets[name][0]}/", workers=4)
                for name in ("upstream direct (nginx static)", "strangler")
            }
            sequential = {
                name: hey_sequential(f"http://127.0.0.1:{targets[name][0]}/")
                for name in ("upstream direct (nginx static)", "strangler")
            }
    rate = {name: statistics.median(r for r, _ in runs) for name, runs in rounds.items()}
    cpu = {name: statistics.median(c for _, c in runs) for name, runs in rounds.items()}
    ngx = rate["nginx reverse proxy"]
    rows = [
        f"| {name} | {rate[name]:,.0f} | {rate[name] / ngx:.2f}x | "
        + (f"{cpu[name]:.0f} |" if cpu[name] else "- |")
        for name in targets
    ]
    d50, d99 = latency["upstream direct (nginx static)"]
    n50, n99 = latency["nginx reverse proxy"]
    s50, s99 = latency["strangler"]
    w50, w99 = latency[TWO_WORKERS]
    q50, _ = sequential["upstream direct (nginx static)"]
    t50, _ = sequential["strangler"]
    results += [
        f"### Pass-through proxy (wrk -c{CONNECTIONS}, small JSON, 1 worker each; "
        f"medians of {ROUNDS} interleaved rounds)",
        "",
        "| target | requests/s | vs nginx proxy | proxy CPU µs/request |",
        "|---|---|---|---|",
        *rows,
        "",
        f"strangler / nginx = **{rate['strangler'] / ngx:.2f}x** (target ≥ 0.5x); "
        f"with its access log on, {rate[LOGGED] / ngx:.2f}x; "
        f"strangler / naive aiohttp proxy = "
        f"{rate['strangler'] / rate['naive aiohttp proxy (bench/peers)']:.2f}x; "
        f"express / a task per request = "
        f"{rate['strangler'] / rate['strangler, a task per request (STRANGLER_EXPRESS=0)']:.2f}x; "
        f"fast lane / aiohttp lane = "
        f"{rate['strangler'] / rate['strangler, aiohttp lane only (STRANGLER_FAST_LANE=0)']:.2f}x",
        "",
        "### Latency added at 2,000 requests/s (hey -c20 -q100)",
        "",
        "| | p50 ms | p99 ms |",
        "|---|---|---|",
        f"| direct | {d50:.2f} | {d99:.2f} |",
        f"| nginx reverse proxy | {n50:.2f} | {n99:.2f} |",
        f"| strangler | {s50:.2f} | {s99:.2f} |",
        f"| added by strangler | {s50 - d50:.2f} (target < 0.5) | {s99 - d99:.2f} (target < 1.5) |",
        f"| strangler, 2 workers | {w50:.2f} | {w99:.2f} |",
        f"| added by strangler, 2 workers | {w50 - d50:.2f} | {w99 - d99:.2f} |",
        "",
        "The same rate in bursts of 4 (hey -c4 -q500): added p50 "
        f"{steadier['strangler'][0] - steadier['upstream direct (nginx static)'][0]:.2f} ms, "
        f"p99 {steadier['strangler'][1] - steadier['upstream direct (nginx static)'][1]:.2f} ms."
        f" One request at a time (hey -c1): p50 direct {q50:.2f} ms, through strangler "
        f"{t50:.2f} ms (added {t50 - q50:.2f} ms).",
        "",
    ]


def extra_bench(script: str, results: list[str]) -> None:
    path = ROOT / "bench" / script
    if not path.exists():
        return
    out = subprocess.run([PY, str(path)], capture_output=True, text=True, cwd=ROOT)
    results.append(f"### {script}\n")
    results.append("```\n" + (out.stdout.strip() or out.stderr.strip()[-2000:]) + "\n```\n")


def main() -> None:
    results: list[str] = []
    proxy_bench(results)
    for script in ("acl_bench.py", "diff_bench.py", "telemetry_bench.py", "shadow_bench.py"):
        extra_bench(script, results)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    section = f"\n## {stamp} ({machine})\n\n" + "\n".join(results) + "\n"
    print(section)
    with open(ROOT / "bench" / "RESULTS.md", "a") as f:
        f.write(section)
    time.sleep(0)


if __name__ == "__main__":
    main()
