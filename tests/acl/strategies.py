"""Hypothesis strategies for valid legacy payloads, per docs/demo-contracts.md and the
monolith's own validation (legacy_demo/shop/legacy_format.py)."""

from __future__ import annotations

from datetime import datetime

from hypothesis import strategies as st

FAMILY_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZÀÉÖØÜ'-"
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=30
).map(str.strip)

family = st.text(alphabet=FAMILY_CHARS, min_size=1, max_size=20).filter(lambda s: s[0].isalpha())
given = (
    st.text(
        alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Zs", "Pd")),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)
created_ts = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2999, 12, 31)).map(
    lambda d: d.strftime("%Y%m%d%H%M%S")
)
email = st.from_regex(r"[a-z0-9._%+-]{1,20}@[a-z0-9-]{1,20}\.[a-z]{2,6}", fullmatch=True)


@st.composite
def legacy_customer(draw) -> dict:
    return {
        "cust_id": draw(st.integers(min_value=1, max_value=2**31 - 1)),
        "cust_nm": f"{draw(family)}, {draw(given)}",
        "email_addr": draw(email),
        "phone_no": draw(st.one_of(st.just(""), st.from_regex(r"555-\d{4}", fullmatch=True))),
        "addr_line1": draw(TEXT),
        "addr_city": draw(TEXT),
        "addr_zip": draw(st.one_of(st.just(""), st.from_regex(r"\d{5}", fullmatch=True))),
        "status_cd": draw(st.sampled_from("AI")),
        "created_ts": draw(created_ts),
        "tenant_id": draw(st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)),
    }
