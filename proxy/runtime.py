"""Everything one config load produces, swapped as a single reference on reload.

A request reads `holder.current` once at its start and uses that snapshot to the end, so
a reload in the middle of a request never mixes two tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.config.model import Config, Route
from proxy.filters.headers import Network, parse_trusted
from proxy.routing import RouteTable


@dataclass(frozen=True, slots=True)
class Runtime:
    config: Config
    table: RouteTable
    trusted: tuple[Network, ...]
    translators: Mapping[str, Any] = field(default_factory=dict)
    generation: int = 0

    @classmethod
    def build(
        cls, config: Config, *, translators: Mapping[str, Any] | None = None, generation: int = 0
    ) -> Runtime:
        return cls(
            config=config,
            table=RouteTable(config.routes),
            trusted=parse_trusted(config.trusted_proxies),
            translators=translators or {},
            generation=generation,
        )

    def translator_for(self, route: Route) -> Any | None:
        return self.translators.get(route.acl) if route.acl else None


class RuntimeHolder:
    """The one mutable cell: the current runtime. Assignment is atomic in asyncio."""

    __slots__ = ("current",)

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime
