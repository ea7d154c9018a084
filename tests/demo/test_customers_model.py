"""The customers service's pure rules, no sockets."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extracted.customers import model

VALID = {
    "name": {"given": "Jane", "family": "Doe"},
    "email": "jane@example.com",
    "phone": "555-0100",
    "address": {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345"},
    "active": True,
}


@given(st.integers(min_value=0, max_value=10**12))
def test_cursor_round_trips(offset):
    cursor = model.encode_cursor(offset)
    assert "=" not in cursor
    assert model.decode_cursor(cursor) == offset


def test_cursor_is_base64url_json_offset():
    assert model.encode_cursor(50) == "eyJvZmZzZXQiOjUwfQ"
    for bad in ("!!", "eyJ4IjoxfQ", model.encode_cursor(0)[:-2] + "zz", "eyJvZmZzZXQiOi0xfQ"):
        with pytest.raises(ValueError, match="cursor"):
            model.decode_cursor(bad)


def test_validate_create_fills_defaults():
    row, errors = model.validate(
        {"name": {"given": "Jane", "family": "Doe"}, "email": "j@x.io"}, creating=True
    )
    assert errors == []
    assert row == {
        "given_name": "Jane", "family_name": "Doe", "email": "j@x.io", "phone": "",
        "line1": "", "city": "", "postal_code": "", "active": True,
    }  # fmt: skip


def test_validate_reports_nested_field_paths():
    doc = {
        "name": {"given": "", "family": "Doe, Jr", "middle": "X"},
        "email": "nope",
        "address": {"postal_code": "1234"},
        "active": "yes",
        "color": "red",
    }
    _, errors = model.validate(doc, creating=False)
    fields = {e["field"] for e in errors}
    assert fields == {
        "name.given", "name.family", "name.middle", "email", "address.postal_code",
        "active", "color", "phone",
    }  # fmt: skip


def test_replace_requires_everything_and_ignores_read_only():
    row, errors = model.validate(
        {**VALID, "id": 5, "tenant": "evil", "created_at": "x"}, creating=False
    )
    assert errors == [] and "tenant" not in row and "id" not in row
    _, errors = model.validate({"name": VALID["name"], "email": VALID["email"]}, creating=False)
    assert {e["field"] for e in errors} == {"phone", "address", "active"}


def test_merge_patch_is_rfc7396():
    doc = model.to_json({
        "id": 1, "tenant": "acme", "given_name": "Jane", "family_name": "Doe", "email": "j@x.io",
        "phone": "1", "line1": "l", "city": "c", "postal_code": "12345", "active": 1,
        "created_at": "2024-01-02T03:04:05Z",
    })  # fmt: skip
    patched = model.merge_patch(doc, {"name": {"given": "Joan"}, "phone": None})
    assert patched["name"] == {"given": "Joan", "family": "Doe"}
    assert "phone" not in patched and patched["address"] == doc["address"]
    assert model.merge_patch(doc, [1]) == [1]


def test_list_query_parsing_and_sql():
    q, errors = model.parse_list_query(
        {"limit": "10", "active": "false", "q": "50%_x", "order_by": "-family"}
    )
    assert errors == []
    where, params, order, page = model.list_sql("acme", q)
    assert params == ["acme", False, "%50\\%\\_x%"]
    assert order.startswith("ORDER BY upper(family_name) DESC, given_name DESC, id ASC")
    assert page == [10, 0]
    _, errors = model.parse_list_query(
        {"limit": "0", "active": "yes", "order_by": "email", "page": "2"}
    )
    assert {e["field"] for e in errors} == {"limit", "active", "order_by", "page"}


def test_next_cursor_stops_at_the_end():
    q = model.ListQuery(limit=10, offset=20)
    assert model.decode_cursor(model.next_cursor(q, 10, 35)) == 30
    assert model.next_cursor(q, 10, 30) is None
    assert model.next_cursor(q, 0, 5) is None


def test_from_legacy_maps_fields_and_keeps_id():
    legacy = {
        "cust_id": 17, "cust_nm": "WALSH-PARKER, Jane", "email_addr": "j@x.io", "phone_no": "555",
        "addr_line1": "1 Main St", "addr_city": "Springfield", "addr_zip": "12345",
        "status_cd": "I", "created_ts": "20240102030405", "tenant_id": "acme",
    }  # fmt: skip
    row = model.from_legacy(legacy)
    assert row["id"] == 17 and row["family_name"] == "Walsh-Parker" and row["given_name"] == "Jane"
    assert row["active"] is False and row["created_at"] == "2024-01-02T03:04:05Z"
    with pytest.raises(ValueError, match="created_ts"):
        model.from_legacy({**legacy, "created_ts": "2024"})
