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
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.procs import free_port, running, wait_http  # noqa: E402

PY = sys.executable
DURATION = os.environ.get("BENCH_DURATION", "8s")
CONNECTIONS = os.environ.get("BENCH_CONNECTIONS", "32")


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


def wrk(url: str) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def hey(url: str, rate: int = 2000, seconds: int = 8) -> tuple[float, float]:
    workers = 20
    out = subprocess.run(
        ["hey", "-z", f"{seconds}s", "-c", str(workers), "-q", str(rate // workers), url],
        capture_output=True,
        text=True,
        check=True,
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
        up_port, ngx_port, px_port, admin_port = free_port(), free_port(), free_port(), free_port()
        routes = work / "routes.yaml"
        routes.write_text(
            textwrap.dedent(
                f"""
                version: 1
                listen: {{host: 127.0.0.1, port: {px_port}}}
                admin: {{host: 127.0.0.1, port: {admin_port}}}
                upstreams:
                  legacy: {{url: "http://127.0.0.1:{up_port}"}}
                default: legacy
                telemetry: {{log_format: text}}
                routes: []
                """
            )
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
            running(
                [PY, "-m", "proxy.cli", "serve", "-c", str(routes)],
                ready_url=f"http://127.0.0.1:{admin_port}/-/ready",
                env={"STRANGLER_LOG_LEVEL": "WARNING"},
            ),
        ):
            wait_http(f"http://127.0.0.1:{px_port}/")
            direct = wrk(f"http://127.0.0.1:{up_port}/")
            via_nginx = wrk(f"http://127.0.0.1:{ngx_port}/")
            via_strangler = wrk(f"http://127.0.0.1:{px_port}/")
            d50, d99 = hey(f"http://127.0.0.1:{up_port}/")
            s50, s99 = hey(f"http://127.0.0.1:{px_port}/")
    ratio = via_strangler / via_nginx
    results += [
        "### Pass-through proxy (wrk, small JSON, 1 worker each)",
        "",
        "| target | requests/s |",
        "|---|---|",
        f"| upstream direct (nginx static) | {direct:,.0f} |",
        f"| nginx reverse proxy | {via_nginx:,.0f} |",
        f"| strangler | {via_strangler:,.0f} |",
        "",
        f"strangler / nginx = **{ratio:.2f}x** (target ≥ 0.5x)",
        "",
        "### Latency added at 2,000 requests/s (hey)",
        "",
        "| | p50 ms | p99 ms |",
        "|---|---|---|",
        f"| direct | {d50:.2f} | {d99:.2f} |",
        f"| strangler | {s50:.2f} | {s99:.2f} |",
        f"| added | {s50 - d50:.2f} (target < 0.5) | {s99 - d99:.2f} (target < 1.5) |",
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
