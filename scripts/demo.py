#!/usr/bin/env python3
"""`make demo`: the Acme Shop monolith, both extracted services and the proxy, on one machine.

Steps (each idempotent, so the demo runs twice in a row): migrate + seed the monolith's SQLite
database, start it under gunicorn, backfill the customers service's database from the
monolith's API, seed the catalog, start both services, start the proxy with routes.yaml, wait
until everything answers its health check, print what to try, and stop everything on Ctrl-C
or SIGTERM (or when the monolith or the proxy exits; an extracted service that stops leaves
the rest running, to show fallback). State lives in var/demo/ (logs in var/demo/logs/).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TENANTS = ("acme", "globex", "initech")
# The extracted services: the demo keeps running when one stops, so fallback can be tried.
SERVICES = ("customers", "catalog")
DEFAULT_PORTS = {"legacy": 8000, "customers": 8101, "catalog": 8102, "proxy": 8080, "admin": 8081}


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    health: str
    log: Path


@dataclass
class Demo:
    args: argparse.Namespace
    var: Path
    children: list[Child] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "legacy_demo.settings",
            "LEGACY_DB_PATH": str(self.var / "legacy.sqlite3"),
        }

    def step(self, what: str, args: list[str]) -> None:
        """Run a one-shot command; on failure show its output and stop the demo."""
        print(f"  {what} ...", flush=True)
        started = time.monotonic()
        result = subprocess.run(args, cwd=ROOT, env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(
                f"demo: {what} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )
        print(f"  {what}: done in {time.monotonic() - started:.1f}s", flush=True)

    def start(self, name: str, args: list[str], health: str, port: int) -> None:
        if not port_free(port):
            raise SystemExit(
                f"demo: port {port} for {name} is already in use (another demo still running?); "
                f"stop it or pass --{name}-port"
            )
        log = self.var / "logs" / f"{name}.log"
        sink = log.open("a")
        sink.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(args)}\n")
        sink.flush()
        proc = subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        sink.close()
        self.children.append(Child(name, proc, health, log))
        self.wait_healthy(self.children[-1])

    def wait_healthy(self, child: Child, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping.is_set():
            if child.proc.poll() is not None:
                tail = child.log.read_text().splitlines()[-20:]
                raise SystemExit(
                    f"demo: {child.name} exited with {child.proc.returncode} while starting; "
                    f"last lines of {child.log}:\n" + "\n".join(tail)
                )
            if healthy(child.health):
                print(
                    f"  {child.name}: healthy at {child.health} (pid {child.proc.pid})", flush=True
                )
                return
            time.sleep(0.05)
        if not self.stopping.is_set():
            raise SystemExit(f"demo: {child.name} not healthy after {timeout}s; see {child.log}")

    def stop_all(self) -> None:
        for child in reversed(self.children):
            if child.proc.poll() is None:
                try:
                    os.killpg(child.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait(5)
            print(f"  stopped {child.name} (exit {child.proc.returncode})", flush=True)
        self.children.clear()


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return response.status < 500
    except (urllib.error.URLError, OSError):
        return False


def routes_file(args: argparse.Namespace, var: Path, ports: dict[str, int]) -> Path:
    """routes.yaml itself on the default ports (so edits + reload work); else a derived copy."""
    template = Path(args.routes).resolve()
    if not template.is_file():
        raise SystemExit(f"demo: routes file {template} not found (see --routes)")
    if ports == DEFAULT_PORTS:
        return template
    import yaml

    doc = yaml.safe_load(template.read_text())
    doc.setdefault("listen", {})["port"] = ports["proxy"]
    doc.setdefault("admin", {})["port"] = ports["admin"]
    for name, upstream in (doc.get("upstreams") or {}).items():
        if name in ports:
            upstream["url"] = f"http://127.0.0.1:{ports[name]}"
    store = (doc.get("shadow") or {}).get("store")
    if store and store.startswith("sqlite:///") and not store.startswith("sqlite:////"):
        doc["shadow"]["store"] = f"sqlite:///{var / Path(store[len('sqlite:///') :]).name}"
    derived = var / "routes.yaml"
    derived.write_text(
        f"# Generated by scripts/demo.py from {template} for non-default ports; edit that file.\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    return derived


def banner(ports: dict[str, int], routes: Path, var: Path) -> str:
    proxy, admin = f"http://127.0.0.1:{ports['proxy']}", f"http://127.0.0.1:{ports['admin']}"
    auth = "-H 'Authorization: Token demo-token-acme' -H 'X-Tenant-ID: acme'"
    return f"""
Strangler demo is up.
  proxy       {proxy}          (routes: {routes})
  admin       {admin}/-/health  {admin}/-/shadow  {admin}/metrics
  monolith    http://127.0.0.1:{ports["legacy"]}/   (log in as admin / admin; Django admin at /admin/)
  customers   http://127.0.0.1:{ports["customers"]}/v1/customers
  catalog     http://127.0.0.1:{ports["catalog"]}/v1/products
  logs        {var / "logs"}

Try:
  curl -s {auth} '{proxy}/api/customers?page_size=2'
  curl -s {auth} {proxy}/api/customers/1
  curl -s {auth} {proxy}/api/products/1
  curl -s -H 'Authorization: Token demo-token-globex' -H 'X-Tenant-ID: globex' {proxy}/api/orders/2
  curl -s -H 'X-Tenant-ID: acme' 'http://127.0.0.1:{ports["customers"]}/v1/customers?limit=2'
  curl -s {admin}/-/shadow

Tokens: demo-token-acme, demo-token-globex, demo-token-initech. Ctrl-C stops everything.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", default=str(ROOT / "routes.yaml"))
    parser.add_argument("--var-dir", default=str(ROOT / "var" / "demo"))
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}-port", type=int, default=port)
    parser.add_argument("--customers", type=int, default=1000, help="seed size (monolith)")
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument(
        "--once", action="store_true", help="start, check health, print, then stop (for CI)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    var = Path(args.var_dir).resolve()
    (var / "logs").mkdir(parents=True, exist_ok=True)
    ports = {name: getattr(args, f"{name}_port") for name in DEFAULT_PORTS}
    demo = Demo(args, var)

    def on_signal(signum, _frame) -> None:
        demo.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    routes = routes_file(args, var, ports)
    legacy = f"http://127.0.0.1:{ports['legacy']}"
    manage = [PYTHON, str(ROOT / "legacy_demo" / "manage.py")]
    customers_db, catalog_db = str(var / "customers.sqlite3"), str(var / "catalog.sqlite3")
    try:
        print("Preparing the demo world:", flush=True)
        demo.step("monolith: migrate", [*manage, "migrate", "--noinput", "-v0"])
        demo.step(
            "monolith: seed",
            [*manage, "seed", "--customers", str(args.customers), "--products",
             str(args.products), "--orders", str(args.orders)],
        )  # fmt: skip
        demo.start(
            "legacy",
            [PYTHON, "-m", "gunicorn", "legacy_demo.wsgi:application", "--bind",
             f"127.0.0.1:{ports['legacy']}", "--workers", "2", "--threads", "4",
             "--worker-class", "gthread", "--no-control-socket"],
            f"{legacy}/health", ports["legacy"],
        )  # fmt: skip
        for tenant in TENANTS:
            demo.step(
                f"customers: backfill {tenant}",
                [PYTHON, "-m", "extracted.customers.backfill", "--legacy-url", legacy,
                 "--token", f"demo-token-{tenant}", "--tenant", tenant, "--db", customers_db],
            )  # fmt: skip
        demo.step(
            "catalog: seed",
            [PYTHON, "-m", "extracted.catalog.seed", "--db", catalog_db,
             "--products", str(args.products)],
        )  # fmt: skip
        for name, db in (("customers", customers_db), ("catalog", catalog_db)):
            port = ports[name]
            demo.start(
                name,
                [PYTHON, "-m", f"extracted.{name}", "--port", str(port), "--db", db],
                f"http://127.0.0.1:{port}/health", port,
            )  # fmt: skip
        demo.start(
            "proxy",
            [PYTHON, "-m", "proxy.cli", "serve", "-c", str(routes)],
            f"http://127.0.0.1:{ports['admin']}/-/ready", ports["proxy"],
        )  # fmt: skip
        if demo.stopping.is_set():
            return 130
        print(banner(ports, routes, var), flush=True)
        if args.once:
            return 0
        gone: set[str] = set()
        while not demo.stopping.wait(0.5):
            for child in demo.children:
                if child.name in gone or child.proc.poll() is None:
                    continue
                if child.name in SERVICES:
                    # What `fallback: legacy` is for: the demo goes on without the service.
                    gone.add(child.name)
                    print(f"demo: {child.name} exited with {child.proc.returncode} (see "
                          f"{child.log}); still running without it: routes with "
                          "`fallback: legacy` are answered by the monolith. Ctrl-C stops "
                          "everything.", file=sys.stderr, flush=True)  # fmt: skip
                    continue
                print(f"demo: {child.name} exited with {child.proc.returncode}; "
                      f"see {child.log}. Stopping.", file=sys.stderr)  # fmt: skip
                return 1
        return 0
    finally:
        print("Stopping:", flush=True)
        demo.stop_all()


if __name__ == "__main__":
    sys.exit(main())
