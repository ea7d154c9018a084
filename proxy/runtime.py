"""Everything one config load produces, swapped as a single reference on reload.

A request reads `holder.current` once at its start and uses that snapshot to the end, so
a reload in the middle of a request never mixes two tables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.config.model import Config, Route
from proxy.filters.headers import CLIENT_DROPPED, Network, parse_trusted
from proxy.routing import RouteTable


@dataclass(frozen=True, slots=True)
class Runtime:
    config: Config
    table: RouteTable
    trusted: tuple[Network, ...]
    translators: Mapping[str, Any] = field(default_factory=dict)
    generation: int = 0
    tenant_key: bytes | None = None  # HS256 secret for JWT tenant claims, read once at load
    notes: tuple[str, ...] = ()  # warnings about the load, logged when it is swapped in
    # Request headers no client may send upstream: the proxy's own, and those the
    # authentication check vouches for (`auth.copy`).
    client_drop: frozenset[str] = CLIENT_DROPPED

    @classmethod
    def build(
        cls,
        config: Config,
        *,
        translators: Mapping[str, Any] | None = None,
        generation: int = 0,
        notes: tuple[str, ...] = (),
    ) -> Runtime:
        return cls(
            config=config,
            table=RouteTable(config.routes),
            trusted=parse_trusted(config.trusted_proxies),
            translators=translators or {},
            generation=generation,
            tenant_key=_tenant_key(config),
            notes=notes,
            client_drop=CLIENT_DROPPED.union(config.auth.copy) if config.auth else CLIENT_DROPPED,
        )

    def translator_for(self, route: Route) -> Any | None:
        return self.translators.get(route.acl) if route.acl else None


def _tenant_key(config: Config) -> bytes | None:
    env = config.tenant.jwt_secret_env if config.tenant else None
    if env is None:
        return None
    secret = os.environ.get(env)
    if not secret:
        raise ValueError(
            f"{config.source}: tenant.jwt_secret_env names the environment variable {env!r}, "
            "which is not set or empty; export it before starting the proxy"
        )
    return secret.encode()


class RuntimeHolder:
    """The one mutable cell: the current runtime. Assignment is atomic in asyncio."""

    __slots__ = ("current",)

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime
