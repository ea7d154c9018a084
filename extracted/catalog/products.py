"""Product data and pricing, pure.

`product()` is a verbatim copy of the monolith's generator formula (legacy_demo/shop/seeddata.py),
deliberately not imported: the service must not depend on the monolith's code. A test checks
the two stay in step through the HTTP APIs.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal

TENANT_CODES = ("acme", "globex", "initech")
DEFAULT_SEED = 42
ADJECTIVES = ("Sturdy", "Deluxe", "Compact", "Rocket", "Giant", "Quiet", "Smart", "Classic")
NOUNS = ("Anvil", "Widget", "Sprocket", "Skates", "Magnet", "Catapult", "Gizmo", "Lamp")
HALF_CENT = {"0.0825": (400, 200), "0.1000": (10, 5), "0.0700": (100, 50), "0.0600": (50, 25)}


def product(seed: int, i: int) -> dict:
    """Product number `i` (1-based), identical to the monolith's seed data."""
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


def price_with_tax(price_cents: int | str, tax_rate: str) -> str:
    """Gross price in dollars, rounded half-even (banker's rounding) — the monolith rounds
    half-up, so the two disagree whenever the gross ends in exactly half a cent after an even
    digit. See README.md."""
    gross = Decimal(int(price_cents)) * (Decimal(1) + Decimal(tax_rate)) / Decimal(100)
    return str(gross.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def to_json(row: Mapping) -> dict:
    """A row as the legacy product shape (without the monolith's generated_at/trace_id)."""
    return {
        "prod_id": row["id"],
        "sku": row["sku"],
        "prod_nm": row["name"],
        "price_cents": str(row["price_cents"]),
        "tax_rate": row["tax_rate"],
        "price_with_tax": price_with_tax(row["price_cents"], row["tax_rate"]),
        "tenant_id": row["tenant"],
    }


def to_row(p: Mapping) -> dict:
    return {
        "id": p["prod_id"],
        "tenant": p["tenant_id"],
        "sku": p["sku"],
        "name": p["prod_nm"],
        "price_cents": int(p["price_cents"]),
        "tax_rate": p["tax_rate"],
    }
