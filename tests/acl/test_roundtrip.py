"""Bidirectional translators: to_legacy(to_new(x)) == x for every valid legacy payload."""

from __future__ import annotations

from hypothesis import example, given, settings
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


# Any family name the monolith accepts: upper-case as Python upper-cases, no comma or space.
any_family = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp", "Cn")),
    min_size=1,
    max_size=12,
).filter(lambda s: s == s.upper() and "," not in s and not any(c.isspace() for c in s))


@settings(max_examples=300, deadline=None)
@given(any_family)
@example("ÇİFTÇİ")  # Turkish: "İ".title() is "i" + a combining dot
@example("GROẞ")  # the capital sharp s title-cases to ß, which upper-cases to SS
@example("\u212aELVIN")  # the Kelvin sign title-cases to a plain k
def test_every_legacy_family_name_comes_back_as_it_was_sent(family):
    """A name the service keeps title-cased must upper-case back to the very characters the
    legacy client sent, or the client reads back another name than it wrote."""
    customer = {
        "cust_id": 1, "cust_nm": f"{family}, Ali", "email_addr": "a@b.co", "phone_no": "",
        "addr_line1": "", "addr_city": "", "addr_zip": "", "status_cd": "A",
        "created_ts": "20240102030405", "tenant_id": "acme",
    }  # fmt: skip
    new = CUSTOMERS.to_new(customer)
    assert CUSTOMERS.to_legacy(new) == customer
    if family.title().upper() == family:  # where title case is lossless, it is used
        assert new["name"]["family"] == family.title()
