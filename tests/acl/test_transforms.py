"""One test per kind of transformation a YAML translator can declare."""

from __future__ import annotations

import base64
import json
import re

import pytest

from acl import RequestMessage, RequestRejected, ResponseMessage, TranslationError


def test_rename_both_ways(make_translator):
    t = make_translator("""
        record:
          fields:
            - {legacy: email_addr, new: email, type: string}
            - {legacy: cust_id, new: id, type: integer}
    """)
    assert t.to_new({"email_addr": "a@b.co", "cust_id": 3}) == {"email": "a@b.co", "id": 3}
    assert t.to_legacy({"email": "a@b.co", "id": 3}) == {"email_addr": "a@b.co", "cust_id": 3}


def test_nesting_and_flattening(make_translator):
    t = make_translator("""
        record:
          fields:
            - {legacy: addr_line1, new: address.line1}
            - {legacy: addr_city, new: address.city}
            - {legacy: meta.zip, new: address."postal-code"}
    """)
    legacy = {"addr_line1": "1 Main", "addr_city": "Springfield", "meta": {"zip": "12345"}}
    new = t.to_new(legacy)
    assert new == {"address": {"line1": "1 Main", "city": "Springfield", "postal-code": "12345"}}
    assert t.to_legacy(new) == legacy


def test_split_and_join_with_case(make_translator):
    t = make_translator("""
        record:
          fields:
            - legacy: cust_nm
              new: name
              convert:
                split:
                  separator: ", "
                  parts: [family, given]
                  case: {family: {legacy: upper, new: title}}
    """)
    assert t.to_new({"cust_nm": "DOE, Jane"}) == {"name": {"family": "Doe", "given": "Jane"}}
    assert t.to_new({"cust_nm": "SMITH-JONES, Mary Ann"})["name"] == {
        "family": "Smith-Jones",
        "given": "Mary Ann",
    }
    assert t.to_legacy({"name": {"given": "Jane", "family": "McDoe"}}) == {"cust_nm": "MCDOE, Jane"}


def test_case_conversions_never_change_what_the_legacy_side_reads_back(make_translator):
    """`title` then `upper` is not the identity for every upper-case text ("ÇİFTÇİ" would
    come back with a dotless I and a combining dot): such characters keep their spelling."""
    t = make_translator("""
        record:
          fields:
            - {legacy: city, new: city, convert: {case: {legacy: upper, new: title}}}
            - legacy: nm
              new: name
              convert: {split: {separator: ", ", parts: [family, given],
                                case: {family: {legacy: upper, new: title}}}}
    """)
    new = t.to_new({"city": "İZMİR", "nm": "ÇİFTÇİ, Ali"})
    assert new == {"city": "İzmİr", "name": {"family": "Çİftçİ", "given": "Ali"}}
    assert t.to_legacy(new) == {"city": "İZMİR", "nm": "ÇİFTÇİ, Ali"}
    assert t.to_new({"city": "PARIS", "nm": "DOE, Jane"})["city"] == "Paris"
    assert t.to_new({"city": "paris", "nm": "doe, Jane"}) == {  # not legacy form: as before
        "city": "Paris",
        "name": {"family": "Doe", "given": "Jane"},
    }


def test_cents_as_a_json_number_is_exact_or_refused(make_translator):
    """A double holds about 15 digits: 123456789012345678 cents as a number would be
    1234567890123456.8, silently. `as: string` carries any amount."""
    t = make_translator("""
        record:
          fields:
            - {legacy: n, new: n, convert: {cents: {as: number}}}
            - {legacy: s, new: s, convert: {cents: {as: string}}}
    """)
    big = "123456789012345678"
    with pytest.raises(TranslationError) as info:
        t.to_new({"n": big, "s": big})
    assert info.value.path == "$.n" and "not exact as a JSON number" in info.value.message
    assert t.to_new({"n": "99999999999999", "s": big}) == {
        "n": 999999999999.99,
        "s": "1234567890123456.78",
    }
    assert t.to_legacy(t.to_new({"n": "5", "s": big})) == {"n": "5", "s": big}


def test_cents_string_to_decimal(make_translator):
    t = make_translator("""
        record:
          fields:
            - {legacy: total_cents, new: total, convert: cents}
            - {legacy: unit_cents, new: unit, convert: {cents: {as: number}}}
    """)
    assert t.to_new({"total_cents": "1999", "unit_cents": "5"}) == {"total": "19.99", "unit": 0.05}
    assert t.to_legacy({"total": "19.99", "unit": 0.05}) == {
        "total_cents": "1999",
        "unit_cents": "5",
    }
    assert t.to_legacy({"total": "-0.10", "unit": 12})["total_cents"] == "-10"


def test_compact_timestamp_to_iso(make_translator):
    t = make_translator("""
        record:
          fields:
            - {legacy: created_ts, new: created_at, convert: {timestamp: {legacy: compact, new: iso8601}}}
            - {legacy: day, new: day, convert: {timestamp: {legacy: "%d/%m/%Y", new: iso8601}}}
    """)
    new = t.to_new({"created_ts": "20240102030405", "day": "31/12/1999"})
    assert new == {"created_at": "2024-01-02T03:04:05Z", "day": "1999-12-31T00:00:00Z"}
    # Any UTC offset is accepted on the way back and normalized to UTC.
    back = t.to_legacy({"created_at": "2024-01-02T05:04:05+02:00", "day": "1999-12-31T00:00:00Z"})
    assert back == {"created_ts": "20240102030405", "day": "31/12/1999"}


def test_single_letter_codes_to_booleans_and_enums(make_translator):
    t = make_translator("""
        record:
          fields:
            - {legacy: status_cd, new: active, convert: {enum: {A: true, I: false}}}
            - {legacy: ord_cd, new: state, convert: {enum: {N: new, P: paid, S: shipped, C: cancelled}}}
    """)
    assert t.to_new({"status_cd": "I", "ord_cd": "S"}) == {"active": False, "state": "shipped"}
    assert t.to_legacy({"active": True, "state": "cancelled"}) == {"status_cd": "A", "ord_cd": "C"}


def test_defaults_fill_missing_fields(make_translator):
    t = make_translator("""
        record:
          fields:
            - {legacy: phone_no, new: phone, default: ""}
            - {legacy: status_cd, new: active, convert: {enum: {A: true, I: false}}, default: {legacy: A, new: false}}
    """)
    assert t.to_new({}) == {"phone": "", "active": True}
    assert t.to_legacy({}) == {"phone_no": "", "status_cd": "I"}


def test_dropped_and_computed_fields(make_translator):
    t = make_translator("""
        record:
          unmapped: error
          drop: {legacy: [generated_at], new: [etag]}
          fields:
            - {legacy: given_nm, new: given}
            - {legacy: family_nm, new: family}
            - {new: display_name, compute: "join(' ', [given_nm, family_nm])"}
            - {legacy: initials, compute: "concat(upper(given), '.')"}
    """)
    new = t.to_new({"given_nm": "Jane", "family_nm": "Doe", "generated_at": "x"})
    assert new == {"given": "Jane", "family": "Doe", "display_name": "Jane Doe"}
    legacy = t.to_legacy({"given": "Jo", "family": "Doe", "etag": "1", "display_name": "Jo Doe"})
    assert legacy == {"given_nm": "Jo", "family_nm": "Doe", "initials": "JO."}


def test_lists_of_objects(make_translator):
    t = make_translator("""
        record:
          fields:
            - {legacy: order_no, new: id, type: integer}
            - legacy: lines
              new: items
              each:
                - {legacy: sku, new: sku, type: string}
                - {legacy: qty, new: quantity, type: integer}
                - {legacy: unit_price_cents, new: unit_price, convert: cents}
    """)
    legacy = {
        "order_no": 7,
        "lines": [
            {"sku": "A-1", "qty": 2, "unit_price_cents": "150"},
            {"sku": "B-2", "qty": 1, "unit_price_cents": "99"},
        ],
    }
    new = t.to_new(legacy)
    assert new["items"][1] == {"sku": "B-2", "quantity": 1, "unit_price": "0.99"}
    assert t.to_legacy(new) == legacy


PAGED = """
    record:
      fields:
        - {legacy: cust_id, new: id, type: integer}
    endpoints:
      - {legacy: /api/things, new: /v2/things, methods: [GET], response: page}
      - {legacy: "/api/things/{id:int}", new: "/v2/things/{id}", methods: [GET], response: record}
    query:
      unmapped: drop
      params:
        - {legacy: status, new: active, values: {A: "true", I: "false"}}
        - {legacy: ordering, new: order_by, values: {name: family, -name: -family}}
        - {legacy: city, new: city}
    pagination:
      legacy:
        default_page_size: 50
        max_page_size: 100
        envelope: {page: page, page_size: page_size, total: total, items: results}
      new:
        envelope: {items: items, total: total_count, next_cursor: next_cursor}
"""


def _cursor_offset(cursor: str) -> int:
    assert "=" not in cursor
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["offset"]


def test_pagination_page_to_cursor_and_envelope_back(make_translator):
    t = make_translator(PAGED)
    req = RequestMessage("GET", "/api/things", (("page", "3"), ("page_size", "20")))
    out = t.request_to_new(req, {})
    query = dict(out.query)
    assert out.path == "/v2/things"
    assert _cursor_offset(query["cursor"]) == 40 and query["limit"] == "20"
    assert "page" not in query and "page_size" not in query
    # First page: no cursor at all (a missing cursor means offset 0); default size.
    first = dict(t.request_to_new(RequestMessage("GET", "/api/things"), {}).query)
    assert first == {"limit": "50"}
    resp = ResponseMessage(200, (), {"items": [{"id": 5}], "next_cursor": "abc", "total_count": 41})
    body = t.response_to_legacy(resp, req).body
    assert body == {"page": 3, "page_size": 20, "total": 41, "results": [{"cust_id": 5}]}


def test_query_and_path_translation(make_translator):
    t = make_translator(PAGED)
    req = RequestMessage(
        "GET",
        "/api/things",
        (("status", "A"), ("ordering", "-name"), ("city", "Springfield"), ("junk", "1")),
    )
    query = t.request_to_new(req, {}).query
    assert ("active", "true") in query and ("order_by", "-family") in query
    assert ("city", "Springfield") in query and all(k != "junk" for k, _ in query)
    detail = t.request_to_new(RequestMessage("GET", "/api/things/42"), {})
    assert detail.path == "/v2/things/42"
    padded = t.request_to_new(RequestMessage("GET", "/api/things/0042"), {"id": "0042"})
    assert padded.path == "/v2/things/42"  # `{id:int}` is a number, as Django's <int:id>


def test_a_repeated_query_parameter_is_read_once_as_the_monolith_reads_it(make_translator):
    """Django reads the last `status` of `status=A&status=I`; the service (aiohttp) would
    read the first of two `active` values, a different filter. Only the last is sent (or the
    first, with `repeated: first`); `repeated: all` forwards every one."""
    t = make_translator(PAGED)
    query = (
        ("status", "A"), ("ordering", "name"), ("city", "X"), ("status", "I"),
        ("ordering", "-name"), ("page", "9"), ("page", "2"), ("page_size", "5"),
    )  # fmt: skip
    req = RequestMessage("GET", "/api/things", query)
    out = t.request_to_new(req, {}).query
    assert [v for k, v in out if k == "active"] == ["false"]
    assert [v for k, v in out if k == "order_by"] == ["-family"]
    assert _cursor_offset(dict(out)["cursor"]) == 5
    resp = ResponseMessage(200, (), {"items": [], "next_cursor": None, "total_count": 0})
    assert t.response_to_legacy(resp, req).body["page"] == 2
    # An invalid value the monolith would not read does not fail the request either.
    both = RequestMessage("GET", "/api/things", (("status", "bogus"), ("status", "A")))
    assert dict(t.request_to_new(both, {}).query)["active"] == "true"

    first = make_translator(
        PAGED.replace("unmapped: drop", "unmapped: drop\n      repeated: first")
    )
    out = first.request_to_new(req, {}).query
    assert [v for k, v in out if k == "active"] == ["true"]
    assert _cursor_offset(dict(out)["cursor"]) == 40
    assert first.response_to_legacy(resp, req).body["page"] == 9
    every = make_translator(PAGED.replace("unmapped: drop", "unmapped: drop\n      repeated: all"))
    out = every.request_to_new(req, {}).query
    assert [v for k, v in out if k == "active"] == ["true", "false"]


def test_problems_are_listed_in_the_order_the_monolith_lists_them(make_translator):
    """Query: page arguments, then parameters as `query.params` declares them. Body: unknown
    keys, then fields as `record.fields` declares them. Not the client's order."""
    t = make_translator(
        PAGED.replace("unmapped: drop", "unmapped: reject")
        + """
    invalid_request:
      body: "fields"
    """
    )
    req = RequestMessage("GET", "/api/things", (("zz", "1"), ("ordering", "x"), ("status", "Q"),
                                                ("page_size", "0"), ("page", "a")))  # fmt: skip
    with pytest.raises(RequestRejected) as info:
        t.request_to_new(req, {})
    assert list(info.value.body) == ["page", "page_size", "status", "ordering", "zz"]
    body = make_translator("""
        record:
          request_unmapped: reject
          fields:
            - {legacy: a, new: a, type: string}
            - {legacy: b, new: b, type: string}
            - {legacy: c, new: c, type: string}
        endpoints:
          - {legacy: /x, new: /x, methods: [POST], request: record, require: [a, b, c]}
        invalid_request:
          body: "fields"
    """)
    with pytest.raises(RequestRejected) as info:
        body.request_to_new(RequestMessage("POST", "/x", body={"c": 1, "zz": 1, "a": 2}), {})
    assert list(info.value.body) == ["zz", "a", "b", "c"]


def test_error_mapping_to_legacy_shape(make_translator):
    t = make_translator("""
        record:
          fields:
            - {legacy: email_addr, new: email}
            - {legacy: cust_nm, new: name, convert: {split: {separator: ", ", parts: [family, given]}}}
        endpoints:
          - {legacy: "/api/c/{id}", new: "/v1/c/{id}", methods: [PUT], request: record, response: record}
        messages:
          "must be an email": Enter a valid email address.
        errors:
          - status: 404
            legacy_body: "{error: {code: 'NOT_FOUND', message: concat('No customer ', params.id)}}"
          - status: [422]
            legacy_status: 400
            legacy_body: "{error: {code: 'VALIDATION', fields: legacy_fields(body.fields, messages)}}"
    """)
    req = RequestMessage("PUT", "/api/c/9", body={"email_addr": "x"})
    not_found = t.response_to_legacy(ResponseMessage(404, (), {"error": "not_found"}), req)
    assert (not_found.status, not_found.body) == (
        404,
        {"error": {"code": "NOT_FOUND", "message": "No customer 9"}},
    )
    fields = [
        {"field": "email", "message": "must be an email"},
        {"field": "name.given", "message": "m"},
    ]
    invalid = t.response_to_legacy(ResponseMessage(422, (), {"fields": fields}), req)
    assert invalid.status == 400
    assert invalid.body["error"]["fields"] == {
        "email_addr": ["Enter a valid email address."],
        "cust_nm": ["m"],
    }
    # No rule for 500: passed through as is (the proxy's resilience layer owns 5xx).
    boom = ResponseMessage(500, (("content-type", "text/plain"),), None)
    assert t.response_to_legacy(boom, req) is boom


def test_non_json_bodies_pass_through_untouched(make_translator):
    t = make_translator("""
        record:
          fields: [{legacy: a, new: b}]
        endpoints:
          - {legacy: /x, new: /y, methods: [POST], request: record, response: record}
    """)
    req = RequestMessage("POST", "/x", (), (("content-length", "3"),), None)
    out = t.request_to_new(req, {})
    assert out.body is None and out.headers == req.headers and out.path == "/y"
    resp = ResponseMessage(204, (("content-length", "0"),), None)
    assert t.response_to_legacy(resp, req) is resp
    # A JSON body that changes loses its stale Content-Length.
    changed = t.request_to_new(
        RequestMessage("POST", "/x", (), (("Content-Length", "8"),), {"a": 1}), {}
    )
    assert changed.body == {"b": 1} and changed.headers == ()


def test_legacy_extras_stamp_successes(make_translator):
    t = make_translator("""
        record:
          fields: [{legacy: a, new: b}]
        endpoints:
          - {legacy: /x, methods: [GET], response: record}
        legacy_extras:
          generated_at: now_iso()
          trace_id: trace_id(request.headers.traceparent)
    """)
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    req = RequestMessage("GET", "/x", (), (("Traceparent", tp),))
    body = t.response_to_legacy(ResponseMessage(200, (), {"b": 1}), req).body
    assert body["a"] == 1 and body["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["generated_at"])
    other = t.response_to_legacy(ResponseMessage(200, (), {"b": 1}), RequestMessage("GET", "/x"))
    assert re.fullmatch(r"[0-9a-f]{32}", other.body["trace_id"])
    assert other.body["trace_id"] != body["trace_id"]


def test_unmapped_keep_copies_unknown_top_level_fields(make_translator):
    t = make_translator("""
        record:
          unmapped: keep
          fields: [{legacy: a, new: b}]
    """)
    assert t.to_new({"a": 1, "extra": [1]}) == {"b": 1, "extra": [1]}


def test_a_path_the_route_already_rewrote_is_accepted(make_translator):
    """The shadow mirror applies the route's `rewrite` before the ACL; both orders work."""
    t = make_translator(PAGED)
    out = t.request_to_new(RequestMessage("GET", "/v2/things", (("status", "I"),)), {})
    assert out.path == "/v2/things" and ("active", "false") in out.query
    assert t.request_to_new(RequestMessage("GET", "/v2/things/8"), {}).path == "/v2/things/8"
    # The response side always gets the client's original (legacy) request.
    resp = ResponseMessage(200, (), {"items": [], "next_cursor": None, "total_count": 0})
    legacy = t.response_to_legacy(resp, RequestMessage("GET", "/api/things")).body
    assert legacy == {"page": 1, "page_size": 50, "total": 0, "results": []}
