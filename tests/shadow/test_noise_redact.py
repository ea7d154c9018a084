"""Noise accounting (Diffy's thresholds), endpoint templates and redaction."""

from __future__ import annotations

from proxy.config.model import Match, Route
from proxy.shadow.endpoint import endpoint_template, generalize_path
from proxy.shadow.model import Difference
from proxy.shadow.noise import BELOW, FAILURE, NOISE, NoiseAccount, is_failure, verdict
from proxy.shadow.redact import REDACTED, Redactor


def test_is_failure_thresholds():
    assert is_failure(10, 0, 100)
    assert not is_failure(10, 10, 100)  # exactly as noisy as two primaries
    assert not is_failure(10, 9, 100)  # relative gap 1/19 < 20%
    assert is_failure(10, 5, 100)  # relative 5/15 > 20%, absolute 5% > 0.03%
    assert not is_failure(2, 0, 10_000)  # absolute 0.02% < 0.03%
    assert is_failure(4, 0, 10_000)  # absolute 0.04%
    assert not is_failure(0, 0, 0)
    assert is_failure(10, 9, 100, relative=0.01)


def test_noise_account_separates_noise_from_failures():
    acc = NoiseAccount()
    for i in range(100):
        raw = {"$.trace_id", "$.generated_at"}
        if i % 2 == 0:
            raw.add("$.price_with_tax")
        acc.add(raw, {"$.trace_id", "$.generated_at"})
    v = acc.verdicts()
    assert v == {"$.trace_id": NOISE, "$.generated_at": NOISE, "$.price_with_tax": FAILURE}
    assert acc.failures() == {"$.price_with_tax"}
    assert acc.samples == acc.noise_samples == 100


def test_noise_is_scaled_when_only_some_samples_have_a_noise_sample():
    acc = NoiseAccount()
    for i in range(100):
        acc.add({"$.ts"}, {"$.ts"} if i < 10 else None)  # noise measured on 10 of 100
    assert acc.expected_noise("$.ts") == 100
    assert acc.verdicts() == {"$.ts": NOISE}


def test_rare_differences_are_below_threshold():
    assert verdict(1, 0, 100_000) == BELOW
    acc = NoiseAccount()
    acc.add({"$.a"}, None)
    assert acc.verdicts() == {"$.a": FAILURE}


def test_endpoint_templates():
    templ = Route(name="c", match=Match(path="/api/customers/{id}"))
    assert endpoint_template(templ, "/api/customers/17") == "/api/customers/{id}"
    pref = Route(name="p", match=Match(prefix="/api"))
    assert endpoint_template(pref, "/api/orders/17/lines?x=1") == "/api/orders/{id}/lines"
    uuid = "/a/123e4567-e89b-12d3-a456-426614174000/b"
    assert generalize_path(uuid) == "/a/{id}/b"
    assert generalize_path("/api/customers") == "/api/customers"


def test_redaction_of_fields_headers_and_text():
    r = Redactor(extra=("ssn",))
    doc = {
        "email_addr": "jane@example.com",
        "nested": [{"SSN": "123", "note": "mail bob@example.org now", "ok": 1}],
        "access_token": "abc",
        "X-Api-Key": "k",
    }
    assert r.value(doc) == {
        "email_addr": REDACTED,
        "nested": [{"SSN": REDACTED, "note": f"mail {REDACTED} now", "ok": 1}],
        "access_token": REDACTED,
        "X-Api-Key": REDACTED,
    }
    d = r.difference(
        Difference("$.customer.email", "$.customer.email", "value", "a@b.co", "c@d.co")
    )
    assert (d.primary, d.candidate) == (REDACTED, REDACTED)
    d = r.difference(Difference("header:set-cookie", "header:set-cookie", "missing", "s=1", None))
    assert (d.primary, d.candidate) == (REDACTED, None)
    d = r.difference(Difference("$.c", "$.c", "value", {"email": "x@y.io", "n": 1}, None))
    assert d.primary == {"email": REDACTED, "n": 1}
    assert r.text("sent Bearer abcdef123456 ?token=zzz") == (
        f"sent Bearer {REDACTED} ?token={REDACTED}"
    )
    assert r.text("Authorization: Bearer abcdef123456") == f"Authorization: {REDACTED}"
    stored = r.body(b'{"email":"x@y.io","name":"n"}', "json")
    assert "x@y.io" not in stored and '"name": "n"' in stored


def test_text_redaction_covers_configured_and_secret_looking_query_parameters():
    """URLs echoed in stored bodies: the same parameters the access log redacts, plus the
    configured names (`telemetry.redact`)."""
    r = Redactor(extra=("x_employee_ssn",))
    text = "cb: https://h/cb?client_secret=S1&id=7&x_employee_ssn=S2&X-Amz-Signature=S3&page=2"
    redacted = r.text(text)
    assert "S1" not in redacted and "S2" not in redacted and "S3" not in redacted
    assert "id=7" in redacted and "page=2" in redacted


def test_the_mirror_takes_new_redact_names_on_reload():
    from proxy.shadow.mirror import ShadowMirror

    class NoStore:
        def close(self) -> None: ...

    mirror = ShadowMirror(NoStore(), send=None)  # type: ignore[arg-type]
    assert "4242" in mirror._redactor.text("badge_nr=4242")
    mirror.set_redact(("badge_nr",))
    assert "4242" not in mirror._redactor.text("badge_nr=4242")


def test_payment_and_identity_fields_are_redacted_by_default():
    r = Redactor()
    body = {
        "user": {"pin_hint": "x", "cvv": "123", "card_number": "4111111111111111"},
        "ssn": "078-05-1120", "iban": "DE89", "otp_code": "999111", "shipping": "post",
    }  # fmt: skip
    out = r.value(body)
    assert out["user"]["cvv"] == out["user"]["card_number"] == REDACTED
    assert out["ssn"] == out["iban"] == out["otp_code"] == REDACTED
    assert out["shipping"] == "post" and out["user"]["pin_hint"] == "x"
