"""The clean customer model as pure functions: validation, JSON <-> row, list queries.

Rows are flat dicts matching the `customers` table; the JSON shape nests name and address.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from extracted.db import MAX_OFFSET

FieldErrors = list[dict[str, str]]

WRITABLE = ("name", "email", "phone", "address", "active")
READ_ONLY = ("id", "created_at", "tenant")
MAX_LIMIT = 100
ORDERINGS: dict[str, tuple[str, ...]] = {
    "id": ("id ASC",),
    "-id": ("id DESC",),
    "family": ("upper(family_name) ASC", "given_name ASC", "id ASC"),
    "-family": ("upper(family_name) DESC", "given_name DESC", "id ASC"),
    "created_at": ("created_at ASC", "id ASC"),
    "-created_at": ("created_at DESC", "id ASC"),
}
COLUMNS = (
    "id", "tenant", "given_name", "family_name", "email", "phone",
    "line1", "city", "postal_code", "active", "created_at",
)  # fmt: skip

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_POSTAL_RE = re.compile(r"^\d{5}$")
_ISO_Z_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_json(row: Mapping) -> dict:
    return {
        "id": row["id"],
        "name": {"given": row["given_name"], "family": row["family_name"]},
        "email": row["email"],
        "phone": row["phone"],
        "address": {"line1": row["line1"], "city": row["city"], "postal_code": row["postal_code"]},
        "active": bool(row["active"]),
        "created_at": row["created_at"],
        "tenant": row["tenant"],
    }


def merge_patch(target: object, patch: object) -> object:
    """RFC 7396 JSON merge patch: objects merge recursively, `null` removes a key."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def validate(data: object, *, creating: bool) -> tuple[dict, FieldErrors]:
    """Check a full customer document (POST body, PUT body, or a PATCH already merged).

    Returns the writable columns of a row. On create, phone/address/active may be omitted;
    on replace every writable field is required. Read-only keys are ignored.
    """
    if not isinstance(data, dict):
        return {}, [{"field": "", "message": "expected a JSON object"}]
    errors: FieldErrors = []

    def err(field: str, message: str) -> None:
        errors.append({"field": field, "message": message})

    for key in data:
        if key not in WRITABLE and key not in READ_ONLY:
            err(key, "unknown field")
    required = ("name", "email") if creating else WRITABLE
    for key in required:
        if key not in data:
            err(key, "required")
    row: dict = {}
    name = data.get("name")
    if "name" in data:
        if not isinstance(name, dict):
            err("name", "must be an object with given and family")
        else:
            for extra in sorted(set(name) - {"given", "family"}):
                err(f"name.{extra}", "unknown field")
            for part, column in (("given", "given_name"), ("family", "family_name")):
                value = name.get(part)
                if not isinstance(value, str) or not value.strip():
                    err(f"name.{part}", "required, a non-empty string")
                elif len(value) > 100:
                    err(f"name.{part}", "at most 100 characters")
                elif part == "family" and ("," in value or " " in value.strip()):
                    err("name.family", "must not contain commas or spaces")
                else:
                    row[column] = value.strip()
    if "email" in data:
        email = data["email"]
        if not isinstance(email, str) or not _EMAIL_RE.match(email.strip()) or len(email) > 254:
            err("email", "must be a valid email address")
        else:
            row["email"] = email.strip()
    if "phone" in data:
        phone = data["phone"]
        if not isinstance(phone, str) or len(phone) > 32:
            err("phone", "must be a string of at most 32 characters")
        else:
            row["phone"] = phone.strip()
    elif creating:
        row["phone"] = ""
    if "address" in data:
        _validate_address(data["address"], row, err)
    elif creating:
        row.update(line1="", city="", postal_code="")
    if "active" in data:
        if not isinstance(data["active"], bool):
            err("active", "must be true or false")
        else:
            row["active"] = data["active"]
    elif creating:
        row["active"] = True
    return row, errors


def _validate_address(address: object, row: dict, err) -> None:
    if not isinstance(address, dict):
        err("address", "must be an object with line1, city, postal_code")
        return
    for extra in sorted(set(address) - {"line1", "city", "postal_code"}):
        err(f"address.{extra}", "unknown field")
    for part in ("line1", "city", "postal_code"):
        value = address.get(part, "")
        if not isinstance(value, str) or len(value) > 200:
            err(f"address.{part}", "must be a string of at most 200 characters")
        elif part == "postal_code" and value and not _POSTAL_RE.match(value):
            err("address.postal_code", "must be 5 digits")
        else:
            row[part] = value.strip()


def encode_cursor(offset: int) -> str:
    raw = json.dumps({"offset": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> int:
    """Offset from an opaque cursor; raises ValueError on anything we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        offset = json.loads(raw)["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValueError(f"cursor {cursor!r} is not one this service issued") from None
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"cursor {cursor!r} holds an invalid offset")
    return offset


@dataclass(frozen=True, slots=True)
class ListQuery:
    limit: int = 50
    offset: int = 0
    active: bool | None = None
    city: str | None = None
    q: str | None = None
    order_by: str = "id"


def parse_list_query(query: Mapping[str, str]) -> tuple[ListQuery | None, FieldErrors]:
    errors: FieldErrors = []
    limit, offset, active = 50, 0, None
    if "limit" in query:
        try:
            limit = int(query["limit"])
            if not 1 <= limit <= MAX_LIMIT:
                raise ValueError
        except ValueError:
            errors.append({"field": "limit", "message": f"must be an integer 1..{MAX_LIMIT}"})
    if query.get("cursor"):
        try:
            offset = decode_cursor(query["cursor"])
        except ValueError as exc:
            errors.append({"field": "cursor", "message": str(exc)})
    if "active" in query:
        if query["active"] not in ("true", "false"):
            errors.append({"field": "active", "message": "must be true or false"})
        else:
            active = query["active"] == "true"
    order_by = query.get("order_by", "id")
    if order_by not in ORDERINGS:
        errors.append({"field": "order_by", "message": f"must be one of {', '.join(ORDERINGS)}"})
    unknown = sorted(set(query) - {"limit", "cursor", "active", "city", "q", "order_by"})
    for name in unknown:
        errors.append({"field": name, "message": "unknown query parameter"})
    if errors:
        return None, errors
    return ListQuery(limit, offset, active, query.get("city"), query.get("q") or None, order_by), []


def list_sql(tenant: str, q: ListQuery, dialect: str = "sqlite") -> tuple[str, list, str, list]:
    """(WHERE clause, params, ORDER BY ... LIMIT ... OFFSET clause, params) for a list page."""
    where, params = ["tenant = ?"], [tenant]
    if q.active is not None:
        where.append("active = ?")
        params.append(q.active)
    if q.city is not None:
        where.append("city = ?")
        params.append(q.city)
    if q.q:
        escaped = q.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        # The monolith's haystack, `cust_nm` ("FAMILY, Given"), matched as Django's icontains
        # matches it on the same database: on SQLite, LIKE folds ASCII letters only
        # (`müller` does not find `MÜLLER`, `İNCE` finds `İNCE`); on PostgreSQL, UPPER on
        # both sides folds every script. `unicode_upper` is Python's str.upper (extracted.db).
        if dialect == "postgresql":
            where.append("upper(upper(family_name) || ', ' || given_name) LIKE upper(?)")
        else:
            where.append("(unicode_upper(family_name) || ', ' || given_name) LIKE ? ESCAPE '\\'")
        params.append(f"%{escaped}%")
    order = f"ORDER BY {', '.join(ORDERINGS[q.order_by])} LIMIT ? OFFSET ?"
    return " AND ".join(where), params, order, [q.limit, min(q.offset, MAX_OFFSET)]


def next_cursor(q: ListQuery, returned: int, total: int) -> str | None:
    end = q.offset + returned
    return encode_cursor(end) if returned and end < total else None


def from_legacy(legacy: Mapping) -> dict:
    """A legacy API customer as a row: the backfill's direct field mapping."""
    family, _, given = legacy["cust_nm"].partition(", ")
    ts = legacy["created_ts"]
    created = f"{ts[0:4]}-{ts[4:6]}-{ts[6:8]}T{ts[8:10]}:{ts[10:12]}:{ts[12:14]}Z"
    if not _ISO_Z_RE.match(created):
        raise ValueError(
            f"customer {legacy.get('cust_id')}: created_ts {ts!r} is not YYYYMMDDHHMMSS"
        )
    return {
        "id": int(legacy["cust_id"]),
        "tenant": legacy["tenant_id"],
        "given_name": given,
        "family_name": family.title(),
        "email": legacy["email_addr"],
        "phone": legacy["phone_no"],
        "line1": legacy["addr_line1"],
        "city": legacy["addr_city"],
        "postal_code": legacy["addr_zip"],
        "active": legacy["status_cd"] == "A",
        "created_at": created,
    }
