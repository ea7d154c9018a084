"""Whatever arrives, a translator answers or raises TranslationError: never a crash with a
stack trace, never a half-translated body."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from acl import RequestMessage, ResponseMessage, TranslationError, load_translators
from tests.acl.strategies import legacy_customer

CUSTOMERS = load_translators()["customers"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
PATHS = st.sampled_from(["/api/customers", "/api/customers/5", "/v1/customers/5", "/api/x"])
METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
QUERY = st.lists(
    st.tuples(
        st.sampled_from(["page", "page_size", "status", "ordering", "q", "city", "zzz"]),
        st.text(max_size=5),
    ),
    max_size=5,
).map(tuple)


def _only_translation_errors(call) -> None:
    try:
        call()
    except TranslationError as exc:
        assert exc.to_json()  # always renderable


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_records_in_either_direction(value):
    _only_translation_errors(lambda: CUSTOMERS.to_new(value))
    _only_translation_errors(lambda: CUSTOMERS.to_legacy(value))


@settings(max_examples=200, deadline=None)
@given(legacy_customer(), JSON)
def test_one_corrupted_field(customer, junk):
    for key in list(customer):
        corrupted = {**customer, key: junk}
        _only_translation_errors(lambda c=corrupted: CUSTOMERS.to_new(c))


@settings(max_examples=300, deadline=None)
@given(METHODS, PATHS, QUERY, JSON, st.integers(min_value=200, max_value=599), JSON)
def test_requests_and_responses(method, path, query, body, status, resp_body):
    req = RequestMessage(method, path, query, (), body)
    _only_translation_errors(lambda: CUSTOMERS.request_to_new(req, {}))
    resp = ResponseMessage(status, (), resp_body)
    _only_translation_errors(lambda: CUSTOMERS.response_to_legacy(resp, req))


@settings(max_examples=200, deadline=None)
@given(st.lists(JSON | legacy_customer().map(CUSTOMERS.to_new), max_size=4), JSON, JSON)
def test_page_envelopes(items, total, cursor):
    req = RequestMessage("GET", "/api/customers", (("page", "2"),))
    for body in (
        {"items": items, "total_count": total, "next_cursor": cursor},
        {"items": items, "total_count": 3, "next_cursor": None},
    ):
        _only_translation_errors(
            lambda b=body: CUSTOMERS.response_to_legacy(ResponseMessage(200, (), b), req)
        )
