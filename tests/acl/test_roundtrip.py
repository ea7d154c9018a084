"""Bidirectional translators: to_legacy(to_new(x)) == x for every valid legacy payload."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from acl import RequestMessage, ResponseMessage, load_translators
from tests.acl.strategies import legacy_customer

CUSTOMERS = load_translators()["customers"]


@settings(max_examples=300, deadline=None)
@given(legacy_customer())
def test_customer_round_trip(customer):
    assert CUSTOMERS.bidirectional
    new = CUSTOMERS.to_new(customer)
    assert CUSTOMERS.to_legacy(new) == customer
    # And the new shape is the service's, not the legacy one renamed.
    assert new["name"]["family"] == new["name"]["family"].title()
    assert isinstance(new["active"], bool) and new["created_at"].endswith("Z")


@settings(max_examples=50, deadline=None)
@given(
    st.lists(legacy_customer(), max_size=10),
    st.integers(min_value=1, max_value=50),
    st.integers(min_value=1, max_value=100),
)
def test_customer_page_round_trip(customers, page, page_size):
    """A page the service builds from backfilled records reads back as the legacy page."""
    req = RequestMessage(
        "GET", "/api/customers", (("page", str(page)), ("page_size", str(page_size)))
    )
    body = {
        "items": [CUSTOMERS.to_new(c) for c in customers],
        "next_cursor": None,
        "total_count": len(customers) + 1000,
    }
    legacy = CUSTOMERS.response_to_legacy(ResponseMessage(200, (), body), req).body
    assert legacy.pop("generated_at") and legacy.pop("trace_id")
    assert legacy == {
        "page": page,
        "page_size": page_size,
        "total": len(customers) + 1000,
        "results": customers,
    }
