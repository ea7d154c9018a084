"""The monolith's wire quirks as pure functions: names, timestamps, money, validation.

Kept free of Django so the same rules can be tested without a database and read in one place
by whoever writes the anti-corruption layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

TS_FORMAT = "%Y%m%d%H%M%S"
CUSTOMER_STATUS = ("A", "I")
ORDER_STATUS = ("N", "P", "S", "C")
INVOICE_STATUS = ("O", "P")
CUSTOMER_WRITABLE = (
    "cust_nm",
    "email_addr",
    "phone_no",
    "addr_line1",
    "addr_city",
    "addr_zip",
    "status_cd",
)
CUSTOMER_READ_ONLY = ("cust_id", "created_ts", "tenant_id", "generated_at", "trace_id")
ORDER_WRITABLE = ("cust_id", "status_cd", "lines")
ORDER_READ_ONLY = ("order_no", "total_cents", "created_ts", "tenant_id", "generated_at", "trace_id")
LINE_FIELDS = ("sku", "qty", "unit_price_cents")
CUSTOMER_ORDERINGS = {
    "id": ("cust_id",),
    "-id": ("-cust_id",),
    "name": ("cust_nm", "cust_id"),
    "-name": ("-cust_nm", "cust_id"),
    "created": ("created_ts", "cust_id"),
    "-created": ("-created_ts", "cust_id"),
}
ORDER_ORDERINGS = {
    "id": ("order_no",),
    "-id": ("-order_no",),
    "created": ("created_ts", "order_no"),
    "-created": ("-created_ts", "order_no"),
}

_NAME_RE = re.compile(r"^(?P<family>[^,\s][^,]*?), (?P<given>\S.*)$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_ZIP_RE = re.compile(r"^\d{5}$")
_CENTS_RE = re.compile(r"^(0|[1-9]\d{0,11})$")

Errors = dict[str, list[str]]


def format_name(family: str, given: str) -> str:
    """Legacy `cust_nm`: the family name shouted, then the given name."""
    return f"{family.upper()}, {given}"


def parse_name(cust_nm: str) -> tuple[str, str]:
    """Split `"FAMILY, Given"`; raises ValueError naming the expected form."""
    m = _NAME_RE.match(cust_nm or "")
    if not m or m.group("family") != m.group("family").upper():
        raise ValueError(f"cust_nm {cust_nm!r} is not of the form 'FAMILY, Given'")
    return m.group("family"), m.group("given")


def to_ts(dt: datetime) -> str:
    """A UTC datetime as the legacy `YYYYMMDDHHMMSS` string."""
    return dt.astimezone(UTC).strftime(TS_FORMAT)


def from_ts(ts: str) -> datetime:
    return datetime.strptime(ts, TS_FORMAT).replace(tzinfo=UTC)


def price_with_tax(price_cents: int | str, tax_rate: str) -> str:
    """Gross price in dollars, rounded half-up to cents (the extracted catalog rounds half-even)."""
    gross = Decimal(int(price_cents)) * (Decimal(1) + Decimal(tax_rate)) / Decimal(100)
    return str(gross.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int
    page_size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


def parse_page(query: dict[str, str], *, default_size: int = 50, max_size: int = 100):
    """`page`/`page_size` from a query dict; returns (PageRequest | None, errors)."""
    errors: Errors = {}
    page = _parse_int(query.get("page", "1"), "page", 1, None, errors)
    size = _parse_int(query.get("page_size", str(default_size)), "page_size", 1, max_size, errors)
    if errors:
        return None, errors
    return PageRequest(page, size), {}


def _parse_int(raw: str, name: str, lo: int, hi: int | None, errors: Errors) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        errors[name] = [f"Enter a whole number (got {raw!r})."]
        return 0
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        errors[name] = [f"Must be {bound} (got {value})."]
    return value


def validate_customer(data: object, *, partial: bool, creating: bool) -> tuple[dict, Errors]:
    """Check a customer payload; returns the writable fields to apply and per-field errors.

    `creating`: POST (only `cust_nm` and `email_addr` required); otherwise PUT requires every
    writable field unless `partial` (PATCH). Read-only keys are ignored, unknown keys rejected.
    """
    if not isinstance(data, dict):
        return {}, {"__all__": ["Expected a JSON object."]}
    errors: Errors = {}
    clean: dict = {}
    for key in data:
        if key not in CUSTOMER_WRITABLE and key not in CUSTOMER_READ_ONLY:
            errors[key] = ["Unknown field."]
    required = ("cust_nm", "email_addr") if creating else () if partial else CUSTOMER_WRITABLE
    for key in CUSTOMER_WRITABLE:
        if key not in data:
            if key in required:
                errors[key] = ["This field is required."]
            continue
        value = data[key]
        if not isinstance(value, str):
            errors[key] = ["Must be a string."]
            continue
        value = value.strip()
        problem = _customer_field_problem(key, value)
        if problem:
            errors[key] = [problem]
        else:
            clean[key] = value
    if creating:
        clean.setdefault("status_cd", "A")
        for key in ("phone_no", "addr_line1", "addr_city", "addr_zip"):
            clean.setdefault(key, "")
    return clean, errors


def _customer_field_problem(key: str, value: str) -> str | None:
    if key == "cust_nm":
        try:
            parse_name(value)
        except ValueError:
            return "Enter a name of the form 'FAMILY, Given'."
    elif key == "email_addr":
        if not _EMAIL_RE.match(value) or len(value) > 254:
            return "Enter a valid email address."
    elif key == "status_cd":
        if value not in CUSTOMER_STATUS:
            return "Must be one of A, I."
    elif key == "addr_zip":
        if value and not _ZIP_RE.match(value):
            return "Enter a 5-digit ZIP code."
    elif len(value) > 200:
        return "Ensure this value has at most 200 characters."
    return None


def validate_order(data: object, *, partial: bool, creating: bool) -> tuple[dict, Errors]:
    """Check an order payload; `lines` items need `sku` and `qty` (unit price defaults later)."""
    if not isinstance(data, dict):
        return {}, {"__all__": ["Expected a JSON object."]}
    errors: Errors = {}
    clean: dict = {}
    for key in data:
        if key not in ORDER_WRITABLE and key not in ORDER_READ_ONLY:
            errors[key] = ["Unknown field."]
    required = ("cust_id", "lines") if creating else () if partial else ORDER_WRITABLE
    for key in ORDER_WRITABLE:
        if key not in data:
            if key in required:
                errors[key] = ["This field is required."]
            continue
        value = data[key]
        if key == "cust_id":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                errors[key] = ["Must be a positive integer."]
            else:
                clean[key] = value
        elif key == "status_cd":
            if value not in ORDER_STATUS:
                errors[key] = ["Must be one of N, P, S, C."]
            else:
                clean[key] = value
        else:
            lines, problems = _validate_lines(value)
            errors.update(problems)
            clean[key] = lines
    if creating:
        clean.setdefault("status_cd", "N")
    return clean, errors


def _validate_lines(value: object) -> tuple[list[dict], Errors]:
    if not isinstance(value, list) or not value:
        return [], {"lines": ["Expected a non-empty list of order lines."]}
    errors: Errors = {}
    lines = []
    for i, line in enumerate(value):
        where = f"lines[{i}]"
        if not isinstance(line, dict):
            errors[where] = ["Expected an object with sku and qty."]
            continue
        unknown = sorted(set(line) - set(LINE_FIELDS))
        if unknown:
            errors[where] = [f"Unknown field(s): {', '.join(unknown)}."]
            continue
        sku, qty, price = line.get("sku"), line.get("qty"), line.get("unit_price_cents")
        if not isinstance(sku, str) or not sku:
            errors[f"{where}.sku"] = ["This field is required."]
        if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= 1000:
            errors[f"{where}.qty"] = ["Must be an integer from 1 to 1000."]
        if price is not None and (not isinstance(price, str) or not _CENTS_RE.match(price)):
            errors[f"{where}.unit_price_cents"] = ["Must be a string of digits (cents)."]
        lines.append({"sku": sku, "qty": qty, "unit_price_cents": price})
    return lines, errors


def order_total(lines: list[dict]) -> str:
    """Sum of qty × unit price, in cents, as the legacy string."""
    return str(sum(int(line["qty"]) * int(line["unit_price_cents"]) for line in lines))
