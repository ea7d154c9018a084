"""Start the demo world (monolith, customers, catalog) as real processes for tests.

The monolith's SQLite database is migrated and seeded once per (counts) per test session into
a template file; each `start_legacy` copies the template, so a test gets a fresh database in
milliseconds and can write to it freely.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import PYTHON, ROOT, free_port, running

TENANTS = ("acme", "globex", "initech")
DEMO_TOKENS = {t: f"demo-token-{t}" for t in TENANTS}


@dataclass(frozen=True)
class SeedSize:
    """Small enough to seed in about a second; big enough for pagination and filters."""

    customers: int = 200
    products: int = 30
    orders: int = 600
    seed: int = 42


SMALL = SeedSize()
_templates: dict[SeedSize, Path] = {}
_lock = threading.Lock()
_cache_dir: Path | None = None


def legacy_headers(tenant: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Token {DEMO_TOKENS[tenant]}", "X-Tenant-ID": tenant}


def _cache() -> Path:
    global _cache_dir
    if _cache_dir is None:
        _cache_dir = Path(tempfile.mkdtemp(prefix="strangler-world-"))
        atexit.register(shutil.rmtree, _cache_dir, True)
    return _cache_dir


def seed_legacy_db(path: Path, size: SeedSize = SMALL) -> None:
    """Migrate and seed a monolith SQLite file in one subprocess (settings read from env)."""
    code = (
        "import django; django.setup();"
        "from django.core.management import call_command;"
        "call_command('migrate', verbosity=0);"
        f"call_command('seed', customers={size.customers}, products={size.products},"
        f" orders={size.orders}, seed={size.seed}, verbosity=0)"
    )
    env = legacy_env(path)
    subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120
    )


def legacy_template(size: SeedSize = SMALL) -> Path:
    """A migrated+seeded database file, built once per session per size; never mutate it."""
    with _lock:
        if size not in _templates:
            path = (
                _cache()
                / f"legacy-{size.customers}-{size.products}-{size.orders}-{size.seed}.sqlite3"
            )
            seed_legacy_db(path, size)
            _templates[size] = path
        return _templates[size]


def legacy_env(db_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a monolith process on SQLite file `db_path` (DATABASE_URL removed)."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="legacy_demo.settings",
        LEGACY_DB_PATH=str(db_path),
        PYTHONPATH=str(ROOT),
    )
    env.update(extra or {})
    return env


@contextmanager
def start_legacy(
    tmp_path: Path, size: SeedSize = SMALL, env: dict[str, str] | None = None, stdout=None
) -> Iterator[str]:
    """gunicorn serving a fresh copy of the seeded monolith; yields its base URL."""
    db = Path(tmp_path) / "legacy.sqlite3"
    shutil.copyfile(legacy_template(size), db)
    port = free_port()
    args = [
        PYTHON, "-m", "gunicorn", "legacy_demo.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4",
        "--worker-class", "gthread", "--graceful-timeout", "5", "--no-control-socket",
    ]  # fmt: skip
    with running(
        args,
        ready_url=f"http://127.0.0.1:{port}/health",
        env=legacy_env(db, env),
        stdout=stdout,
    ):
        yield f"http://127.0.0.1:{port}"


def customers_db(tmp_path: Path) -> Path:
    """Where `start_customers(tmp_path)` keeps its SQLite database."""
    return Path(tmp_path) / "customers.sqlite3"


def catalog_db(tmp_path: Path) -> Path:
    return Path(tmp_path) / "catalog.sqlite3"


def backfill_customers(db: Path | str, legacy_url: str, tenants=TENANTS) -> None:
    for tenant in tenants:
        subprocess.run(
            [
                PYTHON, "-m", "extracted.customers.backfill", "--legacy-url", legacy_url,
                "--token", DEMO_TOKENS[tenant], "--tenant", tenant, "--db", str(db),
            ],
            cwd=ROOT, check=True, capture_output=True, timeout=120,
        )  # fmt: skip


@contextmanager
def start_customers(
    tmp_path: Path, backfill_from: str | None = None, env: dict[str, str] | None = None, stdout=None
) -> Iterator[str]:
    """The customers service on its own SQLite file; optionally backfilled from a monolith URL."""
    db = customers_db(tmp_path)
    if backfill_from:
        backfill_customers(db, backfill_from)
    port = free_port()
    args = [PYTHON, "-m", "extracted.customers", "--port", str(port), "--db", str(db)]
    with running(args, ready_url=f"http://127.0.0.1:{port}/health", env=env, stdout=stdout):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def start_catalog(
    tmp_path: Path, size: SeedSize = SMALL, env: dict[str, str] | None = None, stdout=None
) -> Iterator[str]:
    """The catalog service, seeded with the same products as a monolith of `size`."""
    db = catalog_db(tmp_path)
    subprocess.run(
        [PYTHON, "-m", "extracted.catalog.seed", "--db", str(db),
         "--products", str(size.products), "--seed", str(size.seed)],
        cwd=ROOT, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    args = [PYTHON, "-m", "extracted.catalog", "--port", str(port), "--db", str(db)]
    with running(args, ready_url=f"http://127.0.0.1:{port}/health", env=env, stdout=stdout):
        yield f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class ProxyUrls:
    base: str
    admin: str
    pid: int = 0  # the proxy's process (one worker: `serve` without --workers)


# Forward authentication against the monolith's own token check (docs/routes.md, `auth`).
MONOLITH_AUTH = {
    "upstream": "legacy",
    "path": "/api/auth/check",
    "send": ["Authorization", "X-Tenant-ID"],
}


def proxy_config(
    upstreams: dict[str, str],
    routes: list[dict],
    tmp_path: Path,
    *,
    port: int | None = None,
    admin_port: int | None = None,
    **top_level,
) -> dict:
    """A routes.yaml document (as a dict) on ephemeral ports with the given upstream URLs."""
    return {
        "version": 1,
        "listen": {"host": "127.0.0.1", "port": port or free_port()},
        "admin": {"host": "127.0.0.1", "port": admin_port or free_port()},
        "upstreams": {name: {"url": url} for name, url in upstreams.items()},
        "default": "legacy",
        "tenant": {"header": "X-Tenant-ID"},
        "routes": routes,
        "shadow": {"store": f"sqlite:///{Path(tmp_path) / 'shadow.db'}"},
        "telemetry": {"traces": {"exporter": "none"}, "metrics": True, "log_format": "json"},
        **top_level,
    }


@contextmanager
def start_proxy(tmp_path: Path, config: dict, stderr=None) -> Iterator[ProxyUrls]:
    """`python -m proxy.cli serve -c <tmp>/routes.yaml`, ready when its admin says so."""
    import yaml

    path = Path(tmp_path) / "routes.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    base = f"http://127.0.0.1:{config['listen']['port']}"
    admin = f"http://127.0.0.1:{config['admin']['port']}"
    args = [PYTHON, "-m", "proxy.cli", "serve", "-c", str(path)]
    with running(args, ready_url=f"{admin}/-/ready", stderr=stderr) as proc:
        yield ProxyUrls(base, admin, proc.pid)
