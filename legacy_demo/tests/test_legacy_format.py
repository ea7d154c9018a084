from datetime import UTC, datetime

import pytest

from legacy_demo.shop import legacy_format as lf


def test_name_round_trip_and_rejects_other_forms():
    assert lf.format_name("Doe", "Jane") == "DOE, Jane"
    assert lf.parse_name("WALSH-PARKER, Amara") == ("WALSH-PARKER", "Amara")
    for bad in ("Jane Doe", "Doe, Jane", "DOE,Jane", ", Jane", "DOE, ", ""):
        with pytest.raises(ValueError, match="FAMILY, Given"):
            lf.parse_name(bad)


def test_timestamps_are_utc_compact():
    dt = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert lf.to_ts(dt) == "20240102030405"
    assert lf.from_ts("20240102030405") == dt


@pytest.mark.parametrize(
    ("cents", "rate", "expected"),
    [
        ("1999", "0.0825", "21.64"),
        (115, "0.1000", "1.27"),  # 126.5 cents: half-up says 1.27 where half-even says 1.26
        (125, "0.1000", "1.38"),
        (0, "0.07", "0.00"),
    ],
)
def test_price_with_tax_rounds_half_up(cents, rate, expected):
    assert lf.price_with_tax(cents, rate) == expected


def test_parse_page_bounds_name_the_field():
    assert lf.parse_page({})[0] == lf.PageRequest(1, 50)
    assert lf.parse_page({"page": "3", "page_size": "10"})[0].offset == 20
    _, errors = lf.parse_page({"page": "0", "page_size": "101"})
    assert set(errors) == {"page", "page_size"}
    _, errors = lf.parse_page({"page_size": "ten"})
    assert "'ten'" in errors["page_size"][0]


def test_validate_customer_create_defaults_and_errors():
    clean, errors = lf.validate_customer(
        {"cust_nm": "DOE, Jane", "email_addr": "jane@example.com"}, partial=False, creating=True
    )
    assert errors == {}
    assert clean["status_cd"] == "A" and clean["addr_zip"] == ""
    _, errors = lf.validate_customer(
        {
            "cust_nm": "Jane Doe",
            "email_addr": "nope",
            "addr_zip": "12",
            "status_cd": "X",
            "shoe": 1,
        },
        partial=False,
        creating=True,
    )
    assert errors["email_addr"] == ["Enter a valid email address."]
    assert set(errors) == {"cust_nm", "email_addr", "addr_zip", "status_cd", "shoe"}


def test_validate_customer_put_requires_all_patch_requires_none_read_only_ignored():
    _, errors = lf.validate_customer({"cust_nm": "DOE, Jane"}, partial=False, creating=False)
    assert "email_addr" in errors and "cust_nm" not in errors
    clean, errors = lf.validate_customer(
        {"status_cd": "I", "cust_id": 99, "tenant_id": "evil"}, partial=True, creating=False
    )
    assert errors == {} and clean == {"status_cd": "I"}


def test_validate_order_lines():
    clean, errors = lf.validate_order(
        {"cust_id": 1, "lines": [{"sku": "SKU-00001", "qty": 2}]}, partial=False, creating=True
    )
    assert errors == {} and clean["status_cd"] == "N"
    _, errors = lf.validate_order(
        {"cust_id": True, "lines": [{"sku": "", "qty": 0, "unit_price_cents": "1.5"}]},
        partial=False,
        creating=True,
    )
    assert set(errors) == {"cust_id", "lines[0].sku", "lines[0].qty", "lines[0].unit_price_cents"}
    assert (
        lf.order_total([{"qty": 2, "unit_price_cents": "150"}, {"qty": 1, "unit_price_cents": "5"}])
        == "305"
    )
