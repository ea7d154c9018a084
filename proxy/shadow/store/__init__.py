"""Diff stores: SQLite by default, Redis to aggregate several replicas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxy.config.model import Config

from .base import DiffStore, StoreUnusable
from .sqlite import SQLiteStore

DEFAULT_FILENAME = "strangler-shadow.db"

__all__ = [
    "DiffStore",
    "SQLiteStore",
    "StoreUnusable",
    "open_store",
    "store_from_config",
    "default_store_url",
]


def default_store_url(config_source: str | Path) -> str:
    """`sqlite:///` + the absolute path of `strangler-shadow.db` beside routes.yaml."""
    base = Path(config_source).absolute().parent
    return f"sqlite:///{base / DEFAULT_FILENAME}"


def sqlite_path(url: str, base_dir: str | Path | None = None) -> Path:
    """SQLAlchemy's convention, as the config loader writes it: `sqlite:////abs/path.db` is
    absolute, `sqlite:///relative.db` (and a plain path) is relative to `base_dir`
    (routes.yaml's folder; the current directory when None)."""
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:") :]
        if not rest.startswith("///"):
            raise ValueError(
                f"shadow.store {url!r}: write sqlite:///relative.db or sqlite:////absolute.db"
            )
        rest = rest[3:]
    else:
        rest = url
    if not rest or rest == ":memory:" or rest.endswith("/"):
        raise ValueError(
            f"shadow.store {url!r} names no file; write e.g. sqlite:///strangler-shadow.db"
        )
    path = Path(rest)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path


def open_store(url: str, *, base_dir: str | Path | None = None, **kwargs: Any) -> DiffStore:
    """`sqlite:///abs/path.db`, `sqlite:relative.db`, a plain file path, or `redis://...`."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore

        return RedisStore(url, **kwargs)
    if "://" in url and not url.startswith("sqlite:"):
        raise ValueError(
            f"shadow.store {url!r}: unknown scheme; expected sqlite:///path.db or redis://host:port/db"
        )
    return SQLiteStore(sqlite_path(url, base_dir), **kwargs)


def store_from_config(config: Config, **kwargs: Any) -> DiffStore:
    """The store named by `shadow.store` in routes.yaml, with its retention settings."""
    url = config.shadow.store or default_store_url(config.source)
    kwargs.setdefault("retention_count", config.shadow.retention_count)
    kwargs.setdefault("retention_days", config.shadow.retention_days)
    kwargs.setdefault("base_dir", Path(config.source).absolute().parent)
    return open_store(url, **kwargs)
