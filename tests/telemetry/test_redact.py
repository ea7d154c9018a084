"""Redaction: secrets in headers, JSON, query strings and free text never survive."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from proxy.telemetry.redact import REDACTED, Redactor

secret_values = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="\"'"),
    min_size=12,
    max_size=40,
)


@given(secret_values, st.sampled_from(["Authorization", "COOKIE", "set-cookie", "X-Api-Key"]))
def test_credential_headers_never_survive(value, name):
    out = Redactor().headers([(name, value), ("Accept", "text/html")])
    assert out == {name: REDACTED, "Accept": "text/html"}


free_text_values = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="\"'&;\\"),
    min_size=8,
    max_size=40,
)
TEMPLATES = (
    "Authorization: {}\nnext line",
    "Authorization: Bearer {}",
    '{{"authorization": "{}", "n": 1}}',
    "{{'token': '{}'}}",
    "cookie={}",
    "Set-Cookie: {}",
    "x_api_key : {}",
    "retrying: password: {} failed",
    "GET /x?page=2&email_addr={}&q=1",
)


@given(free_text_values, st.sampled_from(TEMPLATES))
def test_credentials_in_free_text_never_survive(value, template):
    # A value that is part of the template or of the marker itself proves nothing.
    assume(value not in template.format("") and value not in REDACTED)
    assert value not in Redactor(["email_addr"]).text(template.format(value))


def test_configured_names_match_whatever_the_case_or_separator():
    r = Redactor(["Email_Addr", "x-partner-key"])
    assert r.is_secret("email-addr") and r.is_secret("EMAIL_ADDR")
    assert r.is_secret("X_Partner_Key")
    assert not r.is_secret("email")


def test_json_values_are_redacted_at_any_depth():
    r = Redactor(["email_addr"])
    body = {"results": [{"cust_id": 1, "email_addr": "a@b.example", "login": {"password": "pw"}}]}
    out = json.loads(r.body(json.dumps(body).encode(), "application/json"))
    assert out == {
        "results": [{"cust_id": 1, "email_addr": REDACTED, "login": {"password": REDACTED}}]
    }
    assert body["results"][0]["email_addr"] == "a@b.example"  # the input is untouched


def test_non_json_bodies_are_scrubbed_as_text():
    r = Redactor(["email_addr"])
    assert r.body(b"email_addr=a@b.example&x=1", "application/x-www-form-urlencoded") == (
        b"email_addr=" + REDACTED.encode() + b"&x=1"
    )
    assert r.body(b"\xff\xfe binary") == b"\xff\xfe binary"


def test_query_strings_keep_harmless_parameters():
    r = Redactor(["email_addr"])
    assert r.query("page=2&api_key=k1&email_addr=x&status=A") == (
        f"page=2&api_key={REDACTED}&email_addr={REDACTED}&status=A"
    )


def test_bearer_tokens_in_messages_but_not_prose():
    r = Redactor()
    assert r.text("sent Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig to x") == f"sent Bearer {REDACTED} to x"
    assert r.text("Token is missing") == "Token is missing"


def test_query_parameters_whose_names_say_secret_are_redacted_without_configuring_them():
    r = Redactor()
    secrets = "id_token=a&apikey=b&X-Amz-Signature=c&X-Amz-Security-Token=d&client_secret=e"
    assert all(value.endswith(REDACTED) for value in r.query(secrets).split("&"))
    harmless = "keyword=shoes&author=bob&page=2&sort=name"
    assert r.query(harmless) == harmless


def test_free_text_loses_secret_query_values_and_keeps_prose():
    r = Redactor()
    text = r.text("check (idp /auth/check?key=SHARED&sig=SIGNED&realm=shop) failed")
    assert "SHARED" not in text and "SIGNED" not in text and "realm=shop" in text
    for prose in ("worker exit code=137", "sorted(items, key=len)", "consecutive=5 attempt=2"):
        assert r.text(prose) == prose


def test_logs_hide_the_fields_a_query_string_hides():
    """`secret_name` is shared: a `jwt`, `signature` or `auth` field is as secret in a log line
    as `?jwt=` in a query string (a whole `auth` object included)."""
    r = Redactor()
    doc = {"jwt": "j", "signature": "s", "auth": {"user": "u"}, "author": "bob", "code": "E1"}
    assert r.value(doc) == {
        "jwt": REDACTED,
        "signature": REDACTED,
        "auth": REDACTED,
        "author": "bob",
        "code": "E1",
    }
    assert r.query("code=c&author=bob") == f"code={REDACTED}&author=bob"
    head = "GET / HTTP/1.1\nX-Session-Id: S1\nX-Amz-Signature: S2\nAccept: */*"
    assert r.text(head) == (
        f"GET / HTTP/1.1\nX-Session-Id: {REDACTED}\nX-Amz-Signature: {REDACTED}\nAccept: */*"
    )


def test_short_password_and_one_time_code_names_are_secret():
    """`pwd`, `otp`, a passphrase or a passcode in a login form's query string is a
    credential; `pwdx`, `otpx`-like names stay readable (whole names only for the short)."""
    r = Redactor()
    query = "user=a&pwd=P1&otp=123456&passphrase=P2&sms_passcode=P3&pwd_hint=x&otpmode=y"
    assert r.query(query) == (
        f"user=a&pwd={REDACTED}&otp={REDACTED}&passphrase={REDACTED}&sms_passcode={REDACTED}"
        "&pwd_hint=x&otpmode=y"
    )


@pytest.mark.parametrize(
    ("query", "logged"),
    [
        ("next=https://a/?access_token=T1&page=2", "next=https://a/?access_token={R}&page=2"),
        (
            "next=https%3A%2F%2Fa%2F%3Faccess_token%3DT1%26page%3D2",
            "next=https%3A%2F%2Fa%2F%3Faccess_token%3D{R}%26page%3D2",
        ),
        ("next=%3ftoken%3dT1%3bpage%3d2", "next=%3ftoken%3d{R}%3bpage%3d2"),
        ("a=1;token=T1;b=2", "a=1;token={R};b=2"),
        ("next=/cart?page=3&q=a%3Db", "next=/cart?page=3&q=a%3Db"),
        ("a=%zz;sid=T1%", "a=%zz;sid={R}"),
    ],
    ids=[
        "return-url",
        "encoded-return-url",
        "lower-case-encoding",
        "semicolons",
        "none",
        "stray-%",
    ],
)
def test_a_secret_nested_in_a_query_value_is_redacted(query, logged):
    """A return URL carries its own query (`next=https://a/?access_token=...`, often
    percent-encoded), and some frameworks split on `;`: the secret parameter inside is
    redacted, its separators and the parameters after it kept."""
    assert Redactor().query(query) == logged.format(R=REDACTED)


def test_session_ids_are_secret_in_queries_and_path_parameters():
    """Servlet containers, PHP, ASP.NET and Express name their session cookies and URL
    parameters differently: each is a secret wherever a log line or a span shows it."""
    r = Redactor()
    query = "jsessionid=A&PHPSESSID=B&sid=C&ASP.NET_SessionId=D&connect.sid=E&page=2&side=left"
    assert r.query(query) == (
        f"jsessionid={REDACTED}&PHPSESSID={REDACTED}&sid={REDACTED}"
        f"&ASP.NET_SessionId={REDACTED}&connect.sid={REDACTED}&page=2&side=left"
    )
    assert r.path("/shop;jsessionid=S3CRET/cart;v=2") == f"/shop;jsessionid={REDACTED}/cart;v=2"
    assert r.path("/plain/path") == "/plain/path"


def test_the_access_line_and_the_span_hide_a_session_in_the_path():
    from proxy.config.model import TelemetryConfig
    from proxy.telemetry import Telemetry

    stream = io.StringIO()
    t = Telemetry(TelemetryConfig(metrics=False), log_stream=stream)
    t.request_finished(
        None, "legacy", "legacy", "GET", 200, 0.001, 0, path="/cart;jsessionid=S3CRET"
    )
    t.log.flush()
    assert "S3CRET" not in stream.getvalue() and "/cart;jsessionid=" in stream.getvalue()


JWT_VALUE = (
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsInRpZCI6ImFjbWUifQ"
    ".Ugg7dFGIQwzdbSTADlv6vboFoBxqqPed1NEDRJ2Deko"
)


def test_a_jwt_in_a_query_or_a_path_is_redacted_under_any_name():
    """A magic link (`/verify/eyJ...`) or a short parameter name (`?t=eyJ...`) carries a
    bearer credential all the same; the name-based rules alone let it into the log."""
    r = Redactor()
    assert r.query(f"t={JWT_VALUE}&page=2") == f"t={REDACTED}&page=2"
    assert r.path(f"/verify/{JWT_VALUE}/done") == f"/verify/{REDACTED}/done"
    assert r.query("next=eyJump&page=2") == "next=eyJump&page=2"  # not a token: kept


def test_a_jwt_right_after_a_percent_escape_is_redacted():
    """`Bearer%20eyJ...` in a query value, or a return URL percent-encoded whole
    (`next=https%3A%2F%2Fa%2Fverify%2FeyJ...`): the escape's last hex digit is a word
    character, which alone must not make the token part of a longer word."""
    r = Redactor()
    assert r.query(f"h=Bearer%20{JWT_VALUE}&page=2") == f"h=Bearer%20{REDACTED}&page=2"
    encoded = f"next=https%3A%2F%2Fshop%2Fverify%2F{JWT_VALUE}%3Fa%3D1"
    assert r.query(encoded) == f"next=https%3A%2F%2Fshop%2Fverify%2F{REDACTED}%3Fa%3D1"
    assert r.path(f"/go/%2F{JWT_VALUE}") == f"/go/%2F{REDACTED}"
    assert r.text(f"redirect to /login?next=%2Fverify%2F{JWT_VALUE}") == (
        f"redirect to /login?next=%2Fverify%2F{REDACTED}"
    )
    # inside a word it is still no token, escape or not
    assert r.query(f"x=a%2{JWT_VALUE}") == f"x=a%2{JWT_VALUE}"
    assert r.path(f"/v/x{JWT_VALUE}") == f"/v/x{JWT_VALUE}"


def test_the_access_line_hides_a_jwt_in_the_path_and_the_query():
    from proxy.config.model import TelemetryConfig
    from proxy.telemetry import Telemetry

    stream = io.StringIO()
    t = Telemetry(TelemetryConfig(metrics=False), log_stream=stream)
    t.request_finished(
        None,
        "legacy",
        "legacy",
        "GET",
        200,
        0.001,
        0,
        path=f"/verify/{JWT_VALUE}",
        query=f"ticket={JWT_VALUE}",
    )
    t.log.flush()
    line = stream.getvalue()
    assert "eyJ" not in line and "/verify/" in line and "ticket=" in line, line
