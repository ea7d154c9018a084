"""Rate limiting at the gateway: how many requests a client may send a route (pure).

GCRA (the generic cell rate algorithm, as in Stripe's and redis-cell's limiters): each key
keeps one number, the time its next request is due at the steady rate ("theoretical arrival
time"). A request is allowed while that time is less than a burst's worth of intervals
ahead of now; allowed, it pushes the time one interval on. Against a fixed window it has no
boundary burst (two windows' worth in one second), and against a bucket of tokens it needs
no refill arithmetic: `requests` per `per` seconds, up to `burst` at once.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from proxy.config.model import RateLimit

# Keys kept per limiter before expired ones are swept (an expired key is the same as a new
# one, so sweeping loses nothing); bounds memory against clients that vary their key.
MAX_KEYS = 100_000
_LOW_MARK = MAX_KEYS * 9 // 10  # what a sweep brings the table down to
_KEY_AS_IS = 64  # a `header:` value up to this long is its own key; a longer one is digested
_EPSILON = 1e-9  # sums of intervals drift in floating point; a nanosecond is no burst


@dataclass(frozen=True, slots=True)
class Verdict:
    """A refused request's answer: when to come back, and the limit in the IETF draft's
    RateLimit header terms (limit, remaining, seconds until the limit is whole again)."""

    retry_after: float
    limit: int
    reset: float


def gcra_terms(policy: RateLimit) -> tuple[float, float]:
    """(interval, tolerance) in seconds: one request is due every `interval`, and a key may
    run up to `tolerance` ahead of now (a burst's worth, less the request itself)."""
    interval = policy.per / policy.requests
    return interval, interval * (policy.burst - 1)


class RateLimiter:
    """One route's buckets, by key. Not thread-safe: one per worker's event loop."""

    __slots__ = ("policy", "interval", "tolerance", "_due")

    def __init__(self, policy: RateLimit) -> None:
        self.policy = policy
        self.interval, self.tolerance = gcra_terms(policy)
        self._due: dict[str, float] = {}

    def take(self, key: str, now: float) -> Verdict | None:
        """None when the request may pass (and it is counted), else why not."""
        due = self._due.get(key, now)
        if due < now:
            due = now
        ahead = due - now
        if ahead > self.tolerance + _EPSILON:
            return Verdict(
                retry_after=ahead - self.tolerance,
                limit=self.policy.burst,
                reset=ahead,
            )
        if len(self._due) >= MAX_KEYS and key not in self._due:
            self._sweep(now)
        self._due[key] = due + self.interval
        return None

    def give_back(self, key: str, now: float, amount: float | None = None) -> None:
        """Undo one `take` that let a request pass (a reservation that was not used):
        `amount` seconds of it, at most one interval (what time has not paid back yet,
        see `unpaid`)."""
        due = self._due.get(key)
        if due is None:
            return
        due -= self.interval if amount is None else min(amount, self.interval)
        if due <= now:
            del self._due[key]
        else:
            self._due[key] = due

    def _sweep(self, now: float) -> None:
        """Forget expired keys; if that is not enough to get under `_LOW_MARK`, forget the
        ones due soonest (the nearest to a full budget anyway). Sweeping down to a mark,
        not just under the cap, keeps a table held near the cap from being swept at every
        new key."""
        live = {k: t for k, t in self._due.items() if t > now}
        if len(live) > _LOW_MARK:
            live = dict(sorted(live.items(), key=lambda kv: kv[1])[len(live) - _LOW_MARK :])
        self._due = live


def unpaid(interval: float, held: float) -> float:
    """What is left to give back of a request taken `held` seconds ago: time pays a taken
    request back at one interval per interval, so one held that long is paid already, and
    giving its whole interval back then would erase a request taken since (a client holding
    slow checks would get twice its refusal budget). Exact for a budget that was whole when
    it was taken, less than owed for one already partly spent (never more)."""
    return interval - max(0.0, held)


def verdict_for(policy: RateLimit, retry_after: float, reset: float) -> Verdict:
    """A refusal decided elsewhere (a shared budget in Redis), in this module's terms."""
    return Verdict(retry_after=retry_after, limit=policy.burst, reset=reset)


def budget_id(route: str, policy: RateLimit, key: str) -> str:
    """A shared budget's name: the route, its policy (a changed limit starts afresh, as a
    reload does for local limiters) and the key, digested so that an API key used as the
    key is never stored, and a key of any length makes a name of fixed size. Nothing
    per-replica goes in (replicas may reach the monolith by different addresses):
    deployments sharing one Redis database keep apart by the state URL's `?prefix=`."""
    material = "\0".join(
        (route, str(policy.requests), repr(policy.per), str(policy.burst), policy.key, key)
    )
    return hashlib.blake2b(material.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def limit_key(policy: RateLimit, *, client: str, tenant: str | None, header: str | None) -> str:
    """The bucket a request counts against. A tenant or header key that is absent falls
    back to the client address, so leaving it out does not escape the limit."""
    kind = policy.key
    if kind == "tenant" and tenant:
        return "t:" + tenant
    if kind.startswith("header:") and header:
        if len(header) <= _KEY_AS_IS:
            return "h:" + header
        # A long value (a JWT, a signed API key) is digested, never cut: values that share
        # their first few hundred bytes (tokens of one issuer do) are different callers.
        digest = hashlib.blake2b(header.encode("utf-8", "surrogatepass"), digest_size=16)
        return "hd:" + digest.hexdigest()
    if kind == "route":
        return "r"
    return "ip:" + (client or "unknown")


def header_value(headers: Sequence[tuple[str, str]], lower_name: str) -> str | None:
    """A `header:NAME` key's value in the headers as forwarded: None when absent or sent
    more than once. With two fields the upstream may act on either (or on both joined),
    so counting the first would let a client spend a budget of its choosing while the
    upstream honours the other value: the request counts against its address instead,
    as `tenant` does with a repeated tenant header."""
    found = None
    for name, value in headers:
        if len(name) == len(lower_name) and name.lower() == lower_name:
            if found is not None:
                return None
            found = value
    return found


def refusal_key(client: str) -> str:
    """The bucket an address's refused authentication attempts count against: apart from
    every `limit_key` (a refused client proves no tenant or header, and must not spend the
    budget of one it merely names), and apart from its own successful requests."""
    return "refused:" + (client or "unknown")


def retry_after_header(verdict: Verdict) -> str:
    """Whole seconds, rounded up: a client that waits that long is allowed."""
    return str(max(1, math.ceil(verdict.retry_after)))


def reset_header(verdict: Verdict) -> str:
    """Whole seconds until the whole burst is available again (RateLimit-Reset)."""
    return str(max(1, math.ceil(verdict.reset)))
