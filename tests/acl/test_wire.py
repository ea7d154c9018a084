"""Raw HTTP pieces through the ACL: JSON is rewritten, anything else travels byte for byte."""

from __future__ import annotations

import json

import pytest

from acl import TranslationError, load_translators
from acl.translator import RequestRejected
from acl.wire import (
    encode_body,
    error_response,
    request_message,
    translate_request,
    translate_response,
)

CUSTOMERS = load_translators()["customers"]
JSON = (("Content-Type", "application/json; charset=utf-8"), ("Content-Length", "99"))


def test_json_request_body_is_translated_and_reframed():
    raw = json.dumps({"cust_nm": "DOE, Jane", "email_addr": "j@x.io"}).encode()
    out = translate_request(CUSTOMERS, "post", "/api/customers", "", JSON, raw)
    assert (out.method, out.path, out.query) == ("POST", "/v1/customers", "")
    assert json.loads(out.body) == {"name": {"family": "Doe", "given": "Jane"}, "email": "j@x.io"}
    headers = dict(out.headers)
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == str(len(out.body))


def test_body_an_endpoint_does_not_translate_and_unchanged_query_pass_byte_for_byte():
    raw = b"\x00\xffnot json"
    headers = (("Content-Type", "application/octet-stream"),)
    out = translate_request(CUSTOMERS, "DELETE", "/api/customers/5", "x=%20y", headers, raw)
    assert out.body is raw and out.headers == headers
    assert out.path == "/v1/customers/5" and out.query is None  # unknown params dropped, no "?"


@pytest.mark.parametrize(
    ("method", "path", "ctype", "raw"),
    [
        ("POST", "/api/customers", "application/json", b"{nope"),
        ("POST", "/api/customers", "application/json", b'{"cust_nm": "DOE, J"} trailing'),
        ("PATCH", "/api/customers/5", "application/octet-stream", b"\x00\xffnot json"),
        ("PUT", "/api/customers/5", "text/plain", b'{"cust_nm": "DOE, J"'),
    ],
)
def test_record_body_that_is_not_json_gets_the_monoliths_answer(method, path, ctype, raw):
    """A body the translator cannot read never reaches the service untranslated (it would
    skip read_only, require and unknown-field checks); the monolith's 400 is answered, in
    its words: `Malformed JSON body: <json's error>.`, whatever the Content-Type."""
    with pytest.raises(RequestRejected) as caught:
        translate_request(CUSTOMERS, method, path, None, (("Content-Type", ctype),), raw)
    try:
        json.loads(raw)
    except ValueError as exc:
        expected = f"Malformed JSON body: {exc}."
    assert caught.value.status == 400
    assert caught.value.body == {"error": {"code": "VALIDATION", "message": expected}}


def test_json_sent_without_a_json_content_type_is_translated_as_the_monolith_reads_it():
    raw = json.dumps({"cust_nm": "DOE, Jane", "email_addr": "j@x.io"}).encode()
    form = (("Content-Type", "application/x-www-form-urlencoded"),)  # what `curl -d` sends
    out = translate_request(CUSTOMERS, "POST", "/api/customers", None, form, raw)
    assert json.loads(out.body)["name"] == {"family": "Doe", "given": "Jane"}
    assert dict(out.headers)["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("ctype", "raw"),
    [
        ("text/plain", b'{"id": 8, "name": {"given": "A", "family": "B"}, "ssn": "078-05-1120"}'),
        ("application/json", b'{"id": 1, "name": '),
        ("application/json", b'{"id": 1} trailing'),
    ],
)
def test_service_answer_that_is_not_json_is_a_502_never_relayed(ctype, raw):
    legacy_req = request_message("GET", "/api/customers/5", None, (), b"")
    with pytest.raises(TranslationError) as caught:
        translate_response(CUSTOMERS, 200, (("Content-Type", ctype),), raw, legacy_req)
    assert caught.value.status == 502 and "must answer JSON" in str(caught.value)


def test_query_is_re_encoded_only_when_translated():
    out = translate_request(CUSTOMERS, "GET", "/api/customers", "city=New%20York&status=I", (), b"")
    assert out.query == "city=New+York&active=false&limit=50"


def test_response_translation_and_passthrough():
    legacy_req = request_message("GET", "/api/customers/5", "", (), b"")
    service = {
        "id": 5, "name": {"given": "Al", "family": "Roe"}, "email": "a@b.co", "phone": "",
        "address": {"line1": "", "city": "", "postal_code": ""}, "active": False,
        "created_at": "2024-01-02T03:04:05Z", "tenant": "acme",
    }  # fmt: skip
    raw = json.dumps(service).encode()
    out = translate_response(CUSTOMERS, 200, JSON, raw, legacy_req)
    body = json.loads(out.body)
    assert body["cust_nm"] == "ROE, Al" and body["status_cd"] == "I"
    assert dict(out.headers)["Content-Length"] == str(len(out.body))
    empty = translate_response(
        CUSTOMERS, 204, (), b"", request_message("DELETE", "/api/customers/5", "", (), b"")
    )
    assert (empty.status, empty.body) == (204, b"")


def test_error_response_is_a_502_with_the_field_path():
    legacy_req = request_message("GET", "/api/customers/5", "", (), b"")
    with pytest.raises(TranslationError) as info:
        translate_response(CUSTOMERS, 200, JSON, b'{"id": 5}', legacy_req)
    out = error_response(info.value)
    assert out.status == 502
    error = json.loads(out.body)["error"]
    assert error == {
        "code": "TRANSLATION_FAILED",
        "message": "missing required field",
        "translator": "customers",
        "direction": "response_to_legacy",
        "path": "$.name",
    }


SERVICE_RECORD = {
    "id": 5, "name": {"given": "Al", "family": "Roe"}, "email": "a@b.co", "phone": "",
    "address": {"line1": "", "city": "", "postal_code": ""}, "active": False,
    "created_at": "2024-01-02T03:04:05Z", "tenant": "acme",
}  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "encode"),
    [
        ((("Content-Type", "application/json"), ("Content-Encoding", "gzip")), "gzip"),
        ((("Content-Type", "application/json"), ("Content-Encoding", "deflate")), "deflate"),
        ((("Content-Type", "text/json"),), None),
        ((), None),  # no Content-Type: read as JSON all the same
    ],
)
def test_service_answers_a_translator_can_read_are_translated(headers, encode):
    import gzip
    import zlib

    raw = json.dumps(SERVICE_RECORD).encode()
    if encode == "gzip":
        raw = gzip.compress(raw)
    elif encode == "deflate":
        raw = zlib.compress(raw)
    legacy_req = request_message("GET", "/api/customers/5", None, (), b"")
    out = translate_response(CUSTOMERS, 200, headers, raw, legacy_req)
    assert json.loads(out.body)["cust_nm"] == "ROE, Al"
    names = [k.lower() for k, _ in out.headers]
    assert "content-encoding" not in names  # the ACL wrote plain JSON
    assert dict(out.headers)["Content-Length"] == str(len(out.body))


def test_a_compressed_answer_too_big_to_decode_is_a_502():
    import gzip

    from acl import wire

    bomb = gzip.compress(b" " * (wire.DECODED_LIMIT + 10))
    legacy_req = request_message("GET", "/api/customers/5", None, (), b"")
    headers = (("Content-Type", "application/json"), ("Content-Encoding", "gzip"))
    with pytest.raises(TranslationError, match="decodes to more than"):
        translate_response(CUSTOMERS, 200, headers, bomb, legacy_req)


def test_legacy_bodies_are_written_as_the_monolith_writes_json():
    """customers.yaml declares Django's JsonResponse style: `", "`, `": "`, ASCII escapes."""
    new = {"id": 3, "name": {"given": "Jürgen", "family": "Müller"}, "email": "j@x.io",
           "phone": "", "address": {"line1": "", "city": "", "postal_code": ""},
           "active": True, "created_at": "2024-01-02T03:04:05Z", "tenant": "acme"}  # fmt: skip
    req = request_message("GET", "/api/customers/3", None, (), b"")
    out = translate_response(CUSTOMERS, 200, JSON, json.dumps(new).encode(), req)
    assert out.body.startswith(b'{"cust_id": 3, "cust_nm": "M\\u00dcLLER, J\\u00fcrgen", ')
    assert dict(out.headers)["Content-Length"] == str(len(out.body))
    rejected = RequestRejected(
        "customers", "request_to_new", "$", "x", status=400, body={"a": [1, "é"]}
    )
    assert error_response(rejected, CUSTOMERS).body == b'{"a": [1, "\\u00e9"]}'
    assert error_response(rejected).body == '{"a":[1,"é"]}'.encode()  # no translator: compact


def test_a_lone_surrogate_stays_escaped_instead_of_failing_the_encoding():
    """`"\\ud800"` parses to a str with no UTF-8 form; written back, it stays escaped."""
    assert encode_body({"a": "\ud800é"}) == b'{"a":"\\ud800\\u00e9"}'
    raw = b'{"cust_nm": "DOE, Jane", "email_addr": "j@x.io", "addr_city": "\\ud800"}'
    out = translate_request(CUSTOMERS, "POST", "/api/customers", None, JSON, raw)
    assert json.loads(out.body)["address"] == {"city": "\ud800"}
