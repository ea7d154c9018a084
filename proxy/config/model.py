"""The route table as immutable, typed data.

`routes.yaml` is parsed once into these objects (see `proxy.config.loader`); the request
path only ever reads them. A reload builds a whole new `Config` and swaps one reference,
so no request ever sees half of an old table and half of a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Mode = Literal["legacy", "shadow", "canary", "extracted"]
MODES: tuple[str, ...] = ("legacy", "shadow", "canary", "extracted")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
IDEMPOTENT_METHODS = SAFE_METHODS | {"PUT", "DELETE"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A host and port to listen on."""

    host: str = "127.0.0.1"
    port: int = 8080


_ANY_ADDRESS = frozenset({"0.0.0.0", "::", "[::]", ""})


def same_port(a: Endpoint, b: Endpoint) -> bool:
    """Whether two listeners would take one socket: the same port (not 0, any free one) on
    the same address, or on a wildcard address that covers the other's."""
    if a.port != b.port or a.port == 0:
        return False
    hosts = {"127.0.0.1" if h == "localhost" else h for h in (a.host, b.host)}
    return len(hosts) == 1 or bool(hosts & _ANY_ADDRESS)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds; `None` means no limit. Envoy's route timeout is 15 s, Kong's 60 s."""

    connect: float = 5.0
    read: float | None = 30.0
    total: float | None = 60.0
    # How long an idle kept-alive connection is reused. Keep it below the upstream's own
    # keep-alive timeout (gunicorn: 2 s), or a request may meet a connection being closed.
    idle: float = 30.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Envoy's defaults: 1 retry, 25 ms base backoff (max 10x), budget 20% / min 3."""

    retries: int = 1
    backoff_base: float = 0.025
    backoff_max: float = 0.25
    budget_percent: float = 20.0
    budget_min_concurrent: int = 3
    retry_on_status: frozenset[int] = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """Opens on consecutive failures (Envoy's consecutive_5xx = 5) or a failure ratio."""

    consecutive_failures: int = 5
    failure_ratio: float = 0.5
    window: float = 10.0
    min_requests: int = 20
    open_for: float = 30.0
    half_open_probes: int = 1
    # What counts as a failure: "5xx" (any 5xx, Envoy's consecutive_5xx) or "gateway"
    # (502/503/504, Envoy's consecutive_gateway_failure). Transport errors and timeouts
    # always count. The loader resolves None: "gateway" for the default upstream, whose
    # open breaker would refuse every legacy route because one URL crashes, "5xx" for others.
    failures: str | None = None


@dataclass(frozen=True, slots=True)
class BulkheadPolicy:
    """Envoy's per-cluster thresholds default to 1024 requests and 1024 pending."""

    max_concurrent: int = 1024
    max_queued: int = 1024
    queue_timeout: float = 1.0


@dataclass(frozen=True, slots=True)
class Upstream:
    """A named backend: the legacy monolith or one extracted service."""

    name: str
    url: str  # e.g. "http://127.0.0.1:8101" or "http://host:port/base"
    scheme: str = "http"
    host: str = "127.0.0.1"
    port: int = 80
    base_path: str = ""  # prefix prepended to every forwarded path, no trailing slash
    timeout: Timeouts = field(default_factory=Timeouts)
    host_header: str | None = None  # overrides the client's Host when set
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    bulkhead: BulkheadPolicy = field(default_factory=BulkheadPolicy)


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """A header condition: an exact value, or a regex that must match the whole value."""

    name: str  # lower-case
    value: str | None = None
    regex: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """Exactly one of `path`, `prefix`, `regex` is set."""

    path: str | None = None  # "/api/customers/{id}" or an exact path
    prefix: str | None = None  # segment-aligned, no trailing slash (except "/")
    regex: str | None = None  # full match; named groups feed `rewrite`
    methods: frozenset[str] | None = None  # upper-case; None = any
    headers: tuple[HeaderMatch, ...] = ()
    host: str | None = None  # lower-case, without port

    @property
    def has_conditions(self) -> bool:
        return bool(self.methods or self.headers or self.host)


@dataclass(frozen=True, slots=True)
class CanaryPolicy:
    percent: float = 0.0  # 0..100
    sticky: str | None = None  # "header:X-User-Id" | "cookie:NAME" | "tenant" | "ip" | None


@dataclass(frozen=True, slots=True)
class TenantPins:
    extracted: frozenset[str] = frozenset()
    legacy: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ShadowPolicy:
    sample: float = 1.0  # 0..1
    noise: str = "off"  # off | primary-twice | <name of a second legacy upstream>
    ignore: tuple[str, ...] = ()  # field paths, "$.generated_at", "$.items[*].etag"
    unsafe: str = "skip"  # skip | dry-run
    max_body: int = 1_048_576  # request bytes buffered for shadowing; larger: not shadowed
    tolerance: float = 0.0  # numeric tolerance (absolute)
    unordered: MappingProxyType[str, str] = field(
        default_factory=lambda: MappingProxyType({})
    )  # array path -> key field: compare as a set keyed by that field
    case_insensitive: tuple[str, ...] = ()  # field paths compared case-insensitively
    ignore_list_order: bool = False
    # Allow-list of headers compared (lower-case); None: content-type only, () none at all.
    headers: tuple[str, ...] | None = None
    concurrency: int = 16  # shadow requests in flight per route
    queue: int = 256  # shadow requests waiting per route; beyond: dropped and counted


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    match: Match
    mode: Mode = "legacy"
    target: str | None = None  # the extracted upstream's name
    rewrite: str | None = None  # "/v1/customers/{id}"; {params} from the match
    acl: str | None = None  # name of a translator in acl/translators/
    fallback: str | None = None  # "legacy" (the only value today) or None
    canary: CanaryPolicy = field(default_factory=CanaryPolicy)
    tenants: TenantPins = field(default_factory=TenantPins)
    shadow: ShadowPolicy = field(default_factory=ShadowPolicy)
    # With a top-level `auth:`, whether requests this route sends to its target are checked
    # first (legacy checks its own); `auth: false` opts a public endpoint out.
    auth: bool = True
    rate_limit: RateLimit | None = None  # 429 past it, per key (client address by default)
    # Set on every answer an upstream gives on this route (value None: removed), so an
    # extracted service's answers carry what the monolith's did (X-Frame-Options, ...).
    response_headers: tuple[tuple[str, str | None], ...] = ()
    line: int = 0  # line in routes.yaml where the route starts, for messages


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`requests` per `per` seconds for each key, up to `burst` at once (GCRA; see
    `proxy.filters.ratelimit`). `key`: "ip" (the client address the proxy trusts),
    "tenant", "header:<name>" (an API key, say) or "route" (one budget for everyone).
    `scope`: "local" (each process counts alone) or "shared" (every replica spends one
    budget, kept in the `state:` Redis)."""

    requests: int
    per: float = 1.0
    burst: int = 0  # 0: the loader sets it to `requests`
    key: str = "ip"
    scope: str = "local"

    @property
    def shared(self) -> bool:
        return self.scope == "shared"


@dataclass(frozen=True, slots=True)
class AuthCheck:
    """Forward authentication (nginx `auth_request`, Traefik ForwardAuth, Envoy ext_authz):
    before an extracted service answers a request, `upstream` (usually the monolith, which
    keeps being the identity provider) is asked `GET path` with the client's credentials.
    A 2xx lets the request through, any other answer is the client's."""

    upstream: str
    path: str  # origin-form, e.g. "/api/auth/check"
    send: tuple[str, ...] = ("authorization", "cookie")  # client headers the check sees
    copy: tuple[str, ...] = ()  # headers of a 2xx answer added to the forwarded request


JWT_LEEWAY = 60.0  # seconds; TenantSource.jwt_leeway's default


@dataclass(frozen=True, slots=True)
class TenantSource:
    """Where the tenant id comes from; exactly one field is set."""

    header: str | None = None  # "X-Tenant-ID"
    jwt_claim: str | None = None  # "tid", read from "Authorization: Bearer <jwt>"
    host: str | None = None  # "{tenant}.shop.example"
    # Environment variable holding the HS256 secret that signs the JWTs; without it the
    # claim is read unverified, so a client could name any tenant (a startup warning).
    jwt_secret_env: str | None = None
    # While secrets rotate: the variable holding the previous secret, whose tokens verify
    # too until the variable is unset (then only `jwt_secret_env`'s do).
    jwt_previous_secret_env: str | None = None
    # Seconds of clock skew allowed when checking a verified JWT's `exp` and `nbf` (Envoy's
    # `clock_skew_seconds` default): an issuer whose clock runs ahead must not make fresh
    # tokens name no tenant, dropping their tenant pins for a minute.
    jwt_leeway: float = JWT_LEEWAY


@dataclass(frozen=True, slots=True)
class TracesConfig:
    exporter: str = "none"  # otlp | console | none
    endpoint: str | None = None
    sample: float = 1.0
    # follow: a client's traceparent decides whether its request is recorded (its sampled
    # flag), as Envoy's client_sampling at 100%; ignore: its trace is joined, `sample` decides.
    client_sampling: str = "follow"


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    traces: TracesConfig = field(default_factory=TracesConfig)
    metrics: bool = True
    log_format: str = "json"  # json | text
    redact: tuple[str, ...] = ()  # extra header / field names never logged or stored


@dataclass(frozen=True, slots=True)
class Limits:
    """Listener limits. aiohttp's own defaults are 8190 bytes for both."""

    max_request_line: int = 8190
    max_header_size: int = 8190
    max_headers: int = 100
    # All header fields of a request together (names and values): per-field and count
    # limits alone still let one request carry 100 x 8 KiB. Envoy answers 431 past 60 KiB.
    max_header_total: int = 64 * 1024
    # Seconds a connection may stay without a complete request: idle between keep-alive
    # requests, or trickling in a request's headers (slowloris). nginx: 75 s keepalive.
    idle_timeout: float = 75.0
    # Largest WebSocket message relayed, in bytes (after decompression): the proxy holds a
    # whole message, so without a bound one client could make it inflate gigabytes. uvicorn's
    # default; larger messages close the connection with 1009 (Message Too Big).
    websocket_message: int = 16 * 1024 * 1024
    # Seconds a WebSocket session's side may stay silent before the proxy pings it; no
    # answer within half that ends the session (a peer that vanished without a FIN, a
    # laptop closed, a NAT that forgot the flow). None: never pinged, the session lasts
    # until a side closes it.
    websocket_heartbeat: float | None = 30.0


@dataclass(frozen=True, slots=True)
class ShadowStoreConfig:
    # "sqlite:///path.db" | "redis://host:6379/0"; None = a SQLite file beside routes.yaml
    store: str | None = None
    retention_count: int = 100_000
    retention_days: float = 7.0
    # Bytes of primary answers and request bodies held for shadow comparisons (relayed,
    # queued, in flight) in one process, all routes together; beyond: dropped (`memory_full`).
    max_memory: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Config:
    version: int
    upstreams: MappingProxyType[str, Upstream]
    routes: tuple[Route, ...]
    default: str = "legacy"
    listen: Endpoint = field(default_factory=Endpoint)
    admin: Endpoint = field(default_factory=lambda: Endpoint(port=8081))
    tenant: TenantSource | None = None
    auth: AuthCheck | None = None
    state: str | None = None  # "redis://..." to share breaker/budget state across replicas
    shadow: ShadowStoreConfig = field(default_factory=ShadowStoreConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-*/Forwarded are kept
    limits: Limits = field(default_factory=Limits)
    grace_period: float = 30.0  # seconds in-flight requests get on SIGTERM
    source: str = "routes.yaml"  # the file this came from, for messages

    def route(self, name: str) -> Route | None:
        for route in self.routes:
            if route.name == name:
                return route
        return None
