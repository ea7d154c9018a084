"""Upstream resilience: a guard per upstream (breaker, bulkhead, retry budget), shared state."""

from proxy.upstream.breaker import Breaker, Ticket
from proxy.upstream.bulkhead import Bulkhead, BulkheadFull, Rejected
from proxy.upstream.guard import BreakerOpen, RetryBudgetExhausted, Slot, UpstreamGuard
from proxy.upstream.registry import GuardRegistry

__all__ = [
    "Breaker",
    "BreakerOpen",
    "Bulkhead",
    "BulkheadFull",
    "GuardRegistry",
    "Rejected",
    "RetryBudgetExhausted",
    "Slot",
    "Ticket",
    "UpstreamGuard",
]
