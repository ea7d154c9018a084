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
    # HS256 secrets for JWT tenant claims, read once at load: the current one, then the
    # previous one while secrets rotate.
    tenant_keys: tuple[bytes, ...] | None = None
    notes: tuple[str, ...] = ()  # warnings about the load, logged when it is swapped in
    # Request headers no client may send upstream: the proxy's own, and those the
    # authentication check vouches for (`auth.copy`).
    client_drop: frozenset[str] = CLIENT_DROPPED
    # Restart-only sections (`proxy.server.RESTART_ONLY`) the file changed since the process
    # started: `config` still holds the values in force, the file's wait for a restart.
    restart_pending: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        config: Config,
        *,
        translators: Mapping[str, Any] | None = None,
        generation: int = 0,
        notes: tuple[str, ...] = (),
        secrets: bool = True,
    ) -> Runtime:
        """`secrets=False` (for `strangler check`, which runs where the production secrets
        are not) builds everything but the keys read from the environment."""
        return cls(
            config=config,
            table=RouteTable(config.routes),
            trusted=parse_trusted(config.trusted_proxies),
            translators=translators or {},
            generation=generation,
            tenant_keys=_tenant_keys(config) if secrets else None,
            notes=notes,
            client_drop=CLIENT_DROPPED.union(config.auth.copy) if config.auth else CLIENT_DROPPED,
        )

    def translator_for(self, route: Route) -> Any | None:
        return self.translators.get(route.acl) if route.acl else None


def missing_secrets(config: Config) -> list[str]:
    """What the proxy would refuse to start without: environment variables the file names
    that are unset or empty (one message each)."""
    env = config.tenant.jwt_secret_env if config.tenant else None
    if env is None or os.environ.get(env):
        return []
    return [
        f"{config.source}: tenant.jwt_secret_env names the environment variable {env!r}, "
        "which is not set or empty; export it before starting the proxy"
    ]


def _tenant_keys(config: Config) -> tuple[bytes, ...] | None:
    missing = missing_secrets(config)
    if missing:
        raise ValueError(missing[0])
    tenant = config.tenant
    if tenant is None or not tenant.jwt_secret_env:
        return None
    keys = [os.environ[tenant.jwt_secret_env].encode()]
    previous = os.environ.get(tenant.jwt_previous_secret_env or "")
    if previous:  # unset once the rotation is over: the file need not change again
        keys.append(previous.encode())
    return tuple(keys)


class RuntimeHolder:
    """The one mutable cell: the current runtime. Assignment is atomic in asyncio."""

    __slots__ = ("current",)

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime
