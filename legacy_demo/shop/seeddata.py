"""The deterministic demo dataset as plain dicts (no Django), so seeding is reproducible.

Products are derived per product from `random.Random(f"{seed}:product:{i}")` so another
component (the extracted catalog) can reproduce them from the same formula without importing
this module. Customers and orders come from one stream each.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from legacy_demo.shop.legacy_format import format_name, order_total, to_ts

TENANTS: tuple[tuple[str, str], ...] = (
    ("acme", "Acme Corporation"),
    ("globex", "Globex Corporation"),
    ("initech", "Initech"),
)
TENANT_CODES = tuple(code for code, _ in TENANTS)
DEFAULT_SEED = 42

GIVEN = (
    "Jane", "John", "Maria", "Wei", "Aisha", "Carlos", "Olga", "Liam", "Noor", "Kenji",
    "Fatima", "Pedro", "Ingrid", "Tariq", "Mei", "Lucas", "Amara", "Sven", "Priya", "Diego",
)  # fmt: skip
FAMILY = (
    "DOE", "SMITH", "GARCIA", "NGUYEN", "OKAFOR", "MULLER", "KOWALSKI", "TANAKA", "SILVA",
    "O'BRIEN", "PETROV", "HANSEN", "LOPEZ", "KHAN", "ROSSI", "DUBOIS", "JOHANSSON", "MORALES",
    "CHEN", "WALSH-PARKER", "IVANOVA", "SATO", "NOVAK", "FISCHER", "BAKER",
)  # fmt: skip
CITIES = (
    ("Springfield", "12345"), ("Shelbyville", "23456"), ("Ogdenville", "34567"),
    ("North Haverbrook", "45678"), ("Capital City", "56789"), ("Brockway", "67890"),
)  # fmt: skip
STREETS = ("Main St", "Oak Ave", "Elm St", "Maple Dr", "Cedar Ln", "Pine Rd", "Lake Blvd")
ADJECTIVES = ("Sturdy", "Deluxe", "Compact", "Rocket", "Giant", "Quiet", "Smart", "Classic")
NOUNS = ("Anvil", "Widget", "Sprocket", "Skates", "Magnet", "Catapult", "Gizmo", "Lamp")
# tax rate -> (modulus, residue): price_cents ≡ residue (mod modulus) makes price × rate end
# in exactly half a cent, where half-up and half-even rounding can disagree.
HALF_CENT = {"0.0825": (400, 200), "0.1000": (10, 5), "0.0700": (100, 50), "0.0600": (50, 25)}
EPOCH = datetime(2019, 1, 1, tzinfo=UTC)
SPAN_SECONDS = 5 * 365 * 24 * 3600


def product(seed: int, i: int) -> dict:
    """Product number `i` (1-based). Copied verbatim by extracted/catalog: keep them in sync."""
    rng = random.Random(f"{seed}:product:{i}")
    tax_rate = rng.choice(sorted(HALF_CENT))
    price = rng.randrange(199, 49_999)
    if rng.random() < 0.5:
        modulus, residue = HALF_CENT[tax_rate]
        price = price - price % modulus + residue
    return {
        "prod_id": i,
        "tenant_id": TENANT_CODES[(i - 1) % len(TENANT_CODES)],
        "sku": f"SKU-{i:05d}",
        "prod_nm": f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}",
        "price_cents": str(price),
        "tax_rate": tax_rate,
    }


@dataclass
class Dataset:
    customers: list[dict] = field(default_factory=list)
    products: list[dict] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)
    lines: list[dict] = field(default_factory=list)
    invoices: list[dict] = field(default_factory=list)


def generate(seed: int, customers: int, products: int, orders: int) -> Dataset:
    """Everything the `seed` command writes, with explicit ids so reruns are identical."""
    if orders and (customers < len(TENANT_CODES) or products < len(TENANT_CODES)):
        raise ValueError(
            f"orders need at least {len(TENANT_CODES)} customers and products "
            f"(one per tenant); got customers={customers}, products={products}"
        )
    data = Dataset()
    data.products = [product(seed, i) for i in range(1, products + 1)]
    data.customers = list(_customers(seed, customers))
    by_tenant_cust: dict[str, list[dict]] = {t: [] for t in TENANT_CODES}
    for c in data.customers:
        by_tenant_cust[c["tenant_id"]].append(c)
    by_tenant_prod: dict[str, list[dict]] = {t: [] for t in TENANT_CODES}
    for p in data.products:
        by_tenant_prod[p["tenant_id"]].append(p)
    rng = random.Random(f"{seed}:orders")
    line_id = inv_id = 0
    for no in range(1, orders + 1):
        tenant = TENANT_CODES[(no - 1) % len(TENANT_CODES)]
        cust = rng.choice(by_tenant_cust[tenant])
        picks = rng.sample(
            by_tenant_prod[tenant], k=min(rng.randint(1, 4), len(by_tenant_prod[tenant]))
        )
        lines = []
        for p in picks:
            line_id += 1
            lines.append({
                "line_id": line_id, "order_no": no, "tenant_id": tenant, "sku": p["sku"],
                "qty": rng.randint(1, 5), "unit_price_cents": p["price_cents"],
            })  # fmt: skip
        status = rng.choices("NPSC", weights=(2, 3, 4, 1))[0]
        created = EPOCH + timedelta(seconds=rng.randrange(SPAN_SECONDS))
        total = order_total(lines)
        data.orders.append({
            "order_no": no, "tenant_id": tenant, "cust_id": cust["cust_id"], "status_cd": status,
            "total_cents": total, "created_ts": to_ts(created),
        })  # fmt: skip
        data.lines.extend(lines)
        if status != "C":
            inv_id += 1
            data.invoices.append({
                "inv_id": inv_id, "order_no": no, "tenant_id": tenant, "amount_cents": total,
                "status_cd": "O" if status == "N" else "P",
                "issued_ts": to_ts(created + timedelta(hours=rng.randint(1, 72))),
            })  # fmt: skip
    return data


def _customers(seed: int, count: int) -> Iterator[dict]:
    rng = random.Random(f"{seed}:customers")
    for i in range(1, count + 1):
        given, family = rng.choice(GIVEN), rng.choice(FAMILY)
        city, zip_code = rng.choice(CITIES)
        email_family = family.lower().replace("'", "")
        yield {
            "cust_id": i,
            "tenant_id": TENANT_CODES[(i - 1) % len(TENANT_CODES)],
            "cust_nm": format_name(family, given),
            "email_addr": f"{given.lower()}.{email_family}{i}@example.com",
            "phone_no": f"555-{rng.randrange(10_000):04d}",
            "addr_line1": f"{rng.randint(1, 999)} {rng.choice(STREETS)}",
            "addr_city": city,
            "addr_zip": zip_code,
            "status_cd": "A" if rng.random() < 0.85 else "I",
            "created_ts": to_ts(EPOCH + timedelta(seconds=rng.randrange(SPAN_SECONDS))),
        }
