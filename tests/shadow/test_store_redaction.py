"""What the diff store keeps is redacted: echoed request heads, HTML CSRF fields, JSON keys the
proxy treats as secret elsewhere, path-borne tokens in the endpoint, text-line differences.
Ordinary prose and data survive. Pure functions, plus one in-process mirror (no sockets)."""

from __future__ import annotations

import json

import pytest

from proxy.config.model import Match, Route, ShadowPolicy
from proxy.shadow.compare import diff_text
from proxy.shadow.endpoint import endpoint_template, generalize_path
from proxy.shadow.mirror import ShadowMirror
from proxy.shadow.model import CapturedResponse, Difference, ShadowRequest
from proxy.shadow.redact import REDACTED, Redactor
from proxy.telemetry.redact import Redactor as LogRedactor
from proxy.telemetry.redact import secret_name, secret_param

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlMTIz"
SECRETS = (
    "YIIGhgYJKoZIhvcSAQICAQBuggZ1",
    "SIDSECRET123",
    "APIKEYSECRET",
    "PARTNERSECRET",
    "REFSECRET",
    "SESSSECRET",
)


def echoed_head(name: str, nonce: str) -> str:
    """An upstream's debug page echoing the request head, as the security review found it."""
    return (
        f"{name} {nonce}\n"
        "GET /api/products/echo HTTP/1.1\n"
        "Host: shop.example\n"
        "Authorization: Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1MIIGcaADAgEFoQMCAQ6iBwMF\n"
        "Cookie: prefs=abc; sid=SIDSECRET123\n"
        "X-Api-Key: APIKEYSECRET\n"
        "X-Partner-Secret: PARTNERSECRET\n"
        "X-Partner-Ref: REFSECRET\n"
        "X-Session-Id: SESSSECRET\n"
        "Accept: text/plain\n"
    )


def test_header_lines_echoed_in_a_text_body_are_redacted():
    r = Redactor(["X-Partner-Ref"])  # telemetry.redact
    out = r.text(echoed_head("legacy", "n1"))
    assert not [s for s in SECRETS if s in out], out
    assert "Authorization: [REDACTED]\n" in out and "X-Partner-Ref: [REDACTED]\n" in out
    assert "Host: shop.example\n" in out and "Accept: text/plain\n" in out
    assert out.count("\n") == echoed_head("legacy", "n1").count("\n")  # line numbers hold


def test_text_line_differences_are_redacted_before_they_are_stored():
    r = Redactor(["X-Partner-Ref"])
    a = echoed_head("legacy", "n1").replace("SECRET", "SECRET-A")
    b = echoed_head("svc", "n2").replace("SECRET", "SECRET-B")
    stored = [r.difference(d) for d in diff_text(a, b)]
    assert len(stored) > 5  # every secret line differed
    dumped = json.dumps([d.to_json() for d in stored])
    assert "SECRET-" not in dumped and "YIIG" not in dumped
    assert {"primary": "legacy n1", "candidate": "svc n2"}.items() <= stored[0].to_json().items()


def test_csrf_fields_in_html_are_redacted():
    r = Redactor()
    html = (
        '<form><input type="hidden" name="csrfmiddlewaretoken" value="a1b2c3d4e5f6a7b8c9d0e1f2">\n'
        "<input value='V2' name='_csrf'><input name=\"authenticity_token\" value=V3>\n"
        '<meta name="csrf-token" content="V4">\n'
        '<input name="q" value="red shoes"><meta name="description" content="A shop">\n'
        f'<script>window.__AUTH__ = "{JWT}";</script></form>'
    )
    out = r.text(html)
    for secret in ("a1b2c3d4e5f6a7b8c9d0e1f2", "V2", "V3", "V4", JWT[:20]):
        assert secret not in out, secret
    assert 'name="csrfmiddlewaretoken" value="[REDACTED]"' in out
    assert 'value="red shoes"' in out and 'content="A shop"' in out


SECRET_KEYS = ("jwt", "access_key", "accesskey", "AccessKey", "signature", "auth", "pin", "key")
SECRET_KEYS += ("X-Amz-Signature", "private_key", "api_token", "sessionid", "csrftoken")
HARMLESS_KEYS = ("keyboard", "monkey", "author", "pin_hint", "code", "status", "signing")


@pytest.mark.parametrize("name", SECRET_KEYS)
def test_secret_names_agree_between_store_logs_and_query_strings(name):
    """One source of truth (`secret_name`): what a query string or a log line hides, the store
    hides too, as a JSON key, a header or a text `"name": value` pair."""
    assert secret_name(name) and secret_param(name)
    assert LogRedactor().is_secret(name) and Redactor().is_sensitive(name)
    stored = Redactor().value({name: "S3CR3T", "n": 1})
    assert stored == {name: REDACTED, "n": 1}
    assert "S3CR3T" not in Redactor().text(f'{{"{name}": "S3CR3T"}}')


@pytest.mark.parametrize("name", HARMLESS_KEYS)
def test_harmless_keys_are_kept(name):
    assert not secret_name(name) and not Redactor().is_sensitive(name)
    assert Redactor().value({name: "visible"}) == {name: "visible"}


def test_json_body_from_the_review_keeps_nothing_secret():
    r = Redactor()
    body = {
        "who": "legacy",
        "jwt": JWT,
        "access_key": "AKIA0123456789ABCDEF",
        "signature": "sig-0a1b2c",
        "auth": "k-0a1b2c",
        "pin": "4821",
        "product": "Token Ring adapter",
        "error": {"code": "E42", "message": "exit code=137"},
    }
    stored = json.loads(r.body(json.dumps(body).encode(), "json"))
    assert stored == {
        "who": "legacy",
        "jwt": REDACTED,
        "access_key": REDACTED,
        "signature": REDACTED,
        "auth": REDACTED,
        "pin": REDACTED,
        "product": "Token Ring adapter",
        "error": {"code": "E42", "message": "exit code=137"},
    }


@pytest.mark.parametrize(
    "prose",
    [
        "worker exit code=137",
        "exit code: 137",
        "status: ok",
        "sorted(items, key=len)",
        "Token Ring: 16 Mbit/s",
        "the Token Ring network",
        "Basic usage and Basic authentication",
        "Negotiate contracts",
        "sort key: name, user id: 42, the secret sauce: ketchup",
        '{"keyboard": "qwerty", "monkey": 3, "author": "bob", "code": "E42"}',
        '<input name="q" value="shoes"> <a href=\'/x?page=2\'>next</a>',
        "GET /items/17 HTTP/1.1\nHost: shop.example\nAccept: */*",
    ],
)
def test_ordinary_prose_and_data_are_not_mangled(prose):
    assert Redactor().text(prose) == prose
    assert LogRedactor().text(prose) == prose


def test_labelled_credentials_in_prose_are_redacted():
    r = Redactor()
    assert r.text("<p>API key: d4eda803a8</p>") == f"<p>API key: {REDACTED}</p>"
    assert r.text("session id: 9f8e, access token: x1") == (
        f"session id: {REDACTED}, access token: {REDACTED}"
    )
    assert r.text("{'pin': 4821}") == f"{{'pin': {REDACTED}}}"  # a key, not a word


def test_credentials_after_a_scheme_are_redacted_but_words_are_not():
    r = Redactor()
    assert r.text("sent Negotiate YIIGhgYJKoZIhvcSAQ== to x") == f"sent Negotiate {REDACTED} to x"
    assert r.text("sent Basic dXNlcjpwYXNz to x") == f"sent Basic {REDACTED} to x"
    assert r.text(f"token in path /verify/{JWT}") == f"token in path /verify/{REDACTED}"


def test_generalize_path_hides_jwts_session_ids_and_path_parameters():
    assert generalize_path(f"/api/verify/{JWT}") == "/api/verify/{id}"
    assert (
        generalize_path("/api/x;jsessionid=JSESSSECRET0123/verify")
        == "/api/x;jsessionid={value}/verify"
    )
    assert generalize_path("/cart;jsessionid=A1;lang=en") == "/cart;jsessionid={value};lang={value}"
    assert generalize_path("/s/Ab3dE5fGh7Jk9LmN/file") == "/s/{id}/file"  # mixed-case session id
    assert generalize_path("/dl/dGhpcyBpcyBhIHRva2VuLg==.v2") == "/dl/{id}"
    for plain in (
        "/api/v2/items",
        "/docs/getting-started",
        "/static/app-1.2.3.min.js",
        "/api/ProductCategories",
        "/api/products/x",
    ):
        assert generalize_path(plain) == plain


def test_difference_paths_and_fields_are_redacted():
    r = Redactor()
    d = Difference(
        '$.sessions[session_id="SID0123"].active', "$.sessions[*].active", "value", True, False
    )
    stored = r.difference(d)
    assert "SID0123" not in stored.path and stored.field == "$.sessions[*].active"
    keyed = r.difference(Difference('$.items[sku="A-1"].n', "$.items[*].n", "value", 1, 2))
    assert keyed.path == '$.items[sku="A-1"].n' and (keyed.primary, keyed.candidate) == (1, 2)
    by_token = r.difference(
        Difference(f'$.grants["{JWT}"]', f'$.grants["{JWT}"]', "missing", 1, None)
    )
    assert JWT not in by_token.path and JWT not in by_token.field


class ListStore:
    def __init__(self) -> None:
        self.records: list = []

    def add(self, record) -> None:
        self.records.append(record)

    def stats(self) -> dict:
        return {}

    def flush(self) -> None: ...

    def close(self) -> None: ...


@pytest.mark.parametrize("filler", [0, 2_000], ids=["small", "redacted-in-a-thread"])
async def test_everything_the_mirror_stores_is_redacted(filler):
    """Endpoint, differences and example bodies of one shadowed request, through the mirror's
    own path from comparison to record (sends are fakes; `filler` lines make the bodies big
    enough to be redacted off the event loop)."""
    nonces = iter(range(100))

    async def send(upstream: str, req: ShadowRequest) -> CapturedResponse:
        body = echoed_head(upstream, f"n{next(nonces)}") + "filler line\n" * filler
        headers = (("content-type", "text/plain"),)
        return CapturedResponse(200, headers, body.encode(), 0.001)

    store = ListStore()
    mirror = ShadowMirror(store, send=send, redact=("X-Partner-Ref",))  # type: ignore[arg-type]
    route = Route(
        name="products",
        match=Match(prefix="/api/products"),
        mode="shadow",
        target="svc",
        shadow=ShadowPolicy(noise="primary-twice"),
    )
    path = f"/api/products/x;jsessionid=JSESSSECRET0123/verify/{JWT}"
    req = ShadowRequest("GET", path)
    primary = await send("legacy", req)
    assert mirror.submit(route, endpoint_template(route, path), req, primary, "r1")
    await mirror.close()
    (rec,) = store.records
    assert rec.endpoint == "/api/products/x;jsessionid={value}/verify/{id}"
    assert rec.differences and rec.primary_body and rec.candidate_body
    stored = rec.dumps()
    leaked = [s for s in SECRETS + ("JSESSSECRET0123", JWT[:20]) if s in stored]
    assert not leaked, stored
