"""Bad payloads fail loudly with translator, direction and field path; bad translator files
fail at load time with file, line and a fix."""

from __future__ import annotations

import pathlib

import pytest

from acl import (
    RequestMessage,
    RequestRejected,
    ResponseMessage,
    TranslationError,
    TranslatorLoadError,
    load_translators,
)

RECORD = """
    record:
      unmapped: {legacy: error, new: drop}
      fields:
        - {legacy: cust_id, new: id, type: integer}
        - {legacy: status_cd, new: active, convert: {enum: {A: true, I: false}}}
        - {legacy: created_ts, new: created_at, convert: {timestamp: {legacy: compact, new: iso8601}}}
        - legacy: lines
          new: items
          each:
            - {legacy: qty, new: quantity, type: integer}
"""
GOOD = {"cust_id": 1, "status_cd": "A", "created_ts": "20240102030405", "lines": [{"qty": 1}]}


def _error(call) -> TranslationError:
    with pytest.raises(TranslationError) as info:
        call()
    return info.value


def test_missing_field(make_translator):
    t = make_translator(RECORD, name="cust")
    err = _error(lambda: t.to_new({k: v for k, v in GOOD.items() if k != "created_ts"}))
    assert (err.translator, err.direction, err.path) == ("cust", "to_new", "$.created_ts")
    assert err.message == "missing required field"
    assert err.status == 502
    assert err.to_json() == {
        "error": {
            "code": "TRANSLATION_FAILED",
            "message": "missing required field",
            "translator": "cust",
            "direction": "to_new",
            "path": "$.created_ts",
        }
    }


def test_wrong_type_in_a_nested_list(make_translator):
    t = make_translator(RECORD, name="cust")
    err = _error(lambda: t.to_new({**GOOD, "lines": [{"qty": 1}, {"qty": "2"}]}))
    assert err.path == "$.lines[1].qty"
    assert err.message == "expected integer, got string '2'"
    err = _error(lambda: t.to_new({**GOOD, "cust_id": True}))
    assert (err.path, err.message) == ("$.cust_id", "expected integer, got boolean True")


def test_unknown_enum_value(make_translator):
    t = make_translator(RECORD, name="cust")
    err = _error(lambda: t.to_new({**GOOD, "status_cd": "X"}))
    assert err.path == "$.status_cd"
    assert err.message == "unknown enum value 'X'; expected one of 'A', 'I'"
    back = _error(lambda: t.to_legacy({"id": 1, "active": "yes", "created_at": "x", "items": []}))
    assert back.direction == "to_legacy" and back.path == "$.active"


def test_bad_timestamp_and_null(make_translator):
    t = make_translator(RECORD, name="cust")
    err = _error(lambda: t.to_new({**GOOD, "created_ts": "2024-01-02"}))
    assert (err.path, err.message) == ("$.created_ts", "expected YYYYMMDDHHMMSS, got '2024-01-02'")
    err = _error(lambda: t.to_new({**GOOD, "created_ts": "20241302030405"}))
    assert "20241302030405" in err.message  # month 13
    err = _error(lambda: t.to_new({**GOOD, "cust_id": None}))
    assert err.message.startswith("null is not allowed")


def test_unmapped_legacy_field_is_an_error_when_strict(make_translator):
    t = make_translator(RECORD, name="cust")
    err = _error(lambda: t.to_new({**GOOD, "surprise": 1}))
    assert err.path == "$.surprise" and "unmapped legacy field" in err.message
    # The new side is declared tolerant: extra fields are dropped.
    new = t.to_new(GOOD)
    assert t.to_legacy({**new, "etag": "x"}) == GOOD


def test_response_errors_name_the_response_direction(make_translator):
    t = make_translator(
        RECORD
        + """
    endpoints:
      - {legacy: /c, methods: [GET], response: record}
    """,
        name="cust",
    )
    resp = ResponseMessage(200, (), {"id": "7", "active": True, "created_at": "x", "items": []})
    err = _error(lambda: t.response_to_legacy(resp, RequestMessage("GET", "/c")))
    assert (err.direction, err.path) == ("response_to_legacy", "$.id")
    err = _error(lambda: t.request_to_new(RequestMessage("GET", "/elsewhere"), {}))
    assert err.path == "path" and "no endpoint" in err.message and "GET /elsewhere" in err.message
    # The message reaches clients: it names the translator's file, not where the server keeps it.
    assert t.source.startswith("/") and t.source not in err.message
    assert pathlib.PurePath(t.source).name in err.message


def test_invalid_client_input_without_legacy_shape_is_502(make_translator):
    t = make_translator(
        RECORD
        + """
    endpoints:
      - {legacy: /c, methods: [POST], request: record}
    """,
        name="cust",
    )
    err = _error(
        lambda: t.request_to_new(RequestMessage("POST", "/c", body={"status_cd": "Q"}), {})
    )
    assert type(err) is TranslationError and err.status == 502
    assert (err.direction, err.path) == ("request_to_new", "$.status_cd")


def test_invalid_client_input_gets_the_monoliths_answer(make_translator):
    t = make_translator(
        RECORD
        + """
    endpoints:
      - {legacy: /c, methods: [POST], request: record}
    invalid_request:
      status: 400
      body: "{error: {code: 'VALIDATION', fields: fields}}"
    """,
        name="cust",
    )
    err = _error(
        lambda: t.request_to_new(
            RequestMessage("POST", "/c", body={"status_cd": "Q", "lines": [{"qty": "x"}]}), {}
        )
    )
    assert isinstance(err, RequestRejected) and err.status == 400
    fields = err.to_json()["error"]["fields"]
    assert fields["status_cd"] == ["unknown enum value 'Q'; expected one of 'A', 'I'"]
    assert fields["lines[0].qty"] == ["expected integer, got string 'x'"]


# --- invalid translator files ---------------------------------------------------------------


def _load_problems(tmp_path, text: str) -> list:
    (tmp_path / "bad.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(TranslatorLoadError) as info:
        load_translators(tmp_path)
    return info.value.problems


def test_unknown_converter_function(tmp_path):
    problems = _load_problems(
        tmp_path,
        "record:\n  fields:\n    - {legacy: a, new: b}\n    - {legacy: c, new: d, convert: enumm}\n",
    )
    assert len(problems) == 1
    p = problems[0]
    assert p.file.endswith("bad.yaml") and p.line == 4
    assert p.message == "unknown function `enumm` in record.fields[1].convert"
    assert p.fix == "did you mean `enum`?"


def test_unknown_expression_function(tmp_path):
    problems = _load_problems(
        tmp_path, 'record:\n  fields:\n    - {new: x, compute: "no_such_fn(a)"}\n'
    )
    assert [(p.line, p.message) for p in problems] == [
        (3, "unknown function `no_such_fn()` in record.fields[0].compute")
    ]


def test_bad_jmespath_expression(tmp_path):
    problems = _load_problems(
        tmp_path,
        'record:\n  fields: [{legacy: a, new: b}]\nerrors:\n  - status: 404\n    legacy_body: "{error: "\n',
    )
    assert len(problems) == 1
    assert problems[0].line == 5
    assert problems[0].message.startswith("bad JMESPath expression in errors[0].legacy_body:")
    assert "jmespath.org" in problems[0].fix


def test_bad_field_path(tmp_path):
    problems = _load_problems(tmp_path, "record:\n  fields:\n    - {legacy: 'a[0]', new: b}\n")
    assert problems[0].line == 3
    assert "record.fields[0].legacy" in problems[0].message
    assert "not a field path" in problems[0].message


def test_unknown_key_with_suggestion(tmp_path):
    problems = _load_problems(
        tmp_path,
        "record:\n  fields:\n    - {legacy: a, new: b, nulable: true}\npagination: {}\nendpoint: []\n",
    )
    by_line = {p.line: p for p in problems}
    assert by_line[3].message == "unknown key `nulable` in record.fields[0]"
    assert by_line[3].fix == "did you mean `nullable`?"
    assert by_line[5].message == "unknown key `endpoint` in the translator"
    assert by_line[5].fix == "did you mean `endpoints`?"


def test_every_problem_in_every_file_is_reported(tmp_path):
    (tmp_path / "one.yaml").write_text("record:\n  fields: [{legacy: a, new: b, convert: nope}]\n")
    (tmp_path / "two.yaml").write_text("recrod: {}\n")
    (tmp_path / "three.yaml").write_text("record: [unclosed\n")
    with pytest.raises(TranslatorLoadError) as info:
        load_translators(tmp_path)
    files = sorted(p.file.rsplit("/", 1)[1] for p in info.value.problems)
    assert files == ["one.yaml", "three.yaml", "two.yaml"]
    text = str(info.value)
    assert text.startswith("3 problems in ACL translators:")
    assert "three.yaml:2: invalid YAML" in text


def test_enum_that_cannot_be_reversed_or_yaml_booleans(tmp_path):
    problems = _load_problems(
        tmp_path,
        "record:\n  fields:\n"
        "    - {legacy: a, new: b, convert: {enum: {A: x, B: x}}}\n"
        "    - {legacy: c, new: d, convert: {enum: {yes: 1, no: 0}}}\n",
    )
    assert "cannot be reversed" in problems[0].message and problems[0].line == 3
    assert "read by YAML as a boolean" in problems[1].message and "quote it" in problems[1].fix


def test_converter_argument_errors(tmp_path):
    problems = _load_problems(
        tmp_path,
        "record:\n  fields:\n"
        "    - {legacy: a, new: b, convert: {timestamp: {legacy: compact, new: rfc2822}}}\n"
        "    - {legacy: c, new: d, convert: {split: {separator: ',', parts: [x]}}}\n",
    )
    assert problems[0].message.startswith("record.fields[0].convert.timestamp: timestamp.new")
    assert "iso8601" in problems[0].fix
    assert "split.parts" in problems[1].message


def test_endpoint_template_and_name_checks(tmp_path):
    problems = _load_problems(
        tmp_path,
        "name: other\nrecord:\n  fields: [{legacy: a, new: b}]\nendpoints:\n"
        "  - {legacy: /a, new: '/b/{id}', methods: [GET]}\n"
        "  - {legacy: /c, methods: [GET], response: page}\n",
    )
    messages = [p.message for p in problems]
    assert "name `other` differs from the file name `bad`" in messages
    assert "endpoints[0].new uses {id}, which /a lacks" in messages
    assert "an endpoint has `response: page` but there is no `pagination:`" in messages


def test_an_error_rule_that_cannot_evaluate_is_a_translation_error():
    customers = load_translators()["customers"]
    odd = ResponseMessage(422, (), {"error": "validation_failed", "fields": "not a list"})
    err = _error(
        lambda: customers.response_to_legacy(odd, RequestMessage("POST", "/api/customers"))
    )
    assert (err.direction, err.path) == ("response_to_legacy", "$")
    assert err.message.startswith("errors[1].legacy_body failed:")


def test_legacy_json_and_query_repeated_are_checked(tmp_path):
    problems = _load_problems(
        tmp_path,
        "record:\n  fields: [{legacy: a, new: b}]\n"
        "legacy_json: {separators: [';', '='], ensure_ascii: yes please, indent: 2}\n"
        "query:\n  repeated: newest\n",
    )
    by_message = {p.message: p for p in problems}
    assert by_message["unknown key `indent` in legacy_json"].line == 3
    problems = _load_problems(
        tmp_path,
        "record:\n  fields: [{legacy: a, new: b}]\n"
        "legacy_json: {separators: [';', '='], ensure_ascii: 1}\n"
        "query:\n  repeated: newest\n",
    )
    found = {p.message: p for p in problems}
    seps = found["legacy_json.separators must be [ITEM, KEY] like [', ', ': '] or [',', ':']"]
    assert seps.line == 3 and "json.dumps" in seps.fix
    assert found["legacy_json.ensure_ascii must be true or false"].line == 3
    repeated = found["query.repeated: unknown policy 'newest'"]
    assert repeated.line == 5 and repeated.fix.startswith("last")


def test_defaults_and_strftime_patterns_that_fail_at_run_time_fail_at_load(tmp_path):
    """Each of these loaded before and failed every record missing the field (a 502), or
    every timestamp (a pattern with a bad directive writes it as is and cannot read it)."""
    problems = _load_problems(
        tmp_path,
        "record:\n  fields:\n"
        "    - {legacy: a, new: b, type: string, default: 5}\n"
        "    - {legacy: c, new: d, default: null}\n"
        "    - {legacy: e, new: f, convert: {enum: {A: true}}, default: {new: maybe}}\n"
        "    - {legacy: g, new: h, convert: {timestamp: {legacy: '%Y%m%d%Q', new: iso8601}}}\n"
        "    - {legacy: i, new: j, type: string, default: ''}\n"
        "    - {legacy: k, new: l, convert: {cents: {as: string}}, default: {legacy: '0', new: '0.00'}}\n",
    )
    got = [(p.line, p.message) for p in problems]
    assert got == [
        (3, "record.fields[0].default 5 is integer on the legacy side, not the declared string"),
        (4, "record.fields[1].default (legacy) is null but the field is not nullable"),
        (5, "record.fields[2].default (new) 'maybe' does not convert: unknown enum value "
            "'maybe'; expected one of True"),
        (6, "record.fields[3].convert.timestamp: timestamp.legacy: '%Y%m%d%Q' does not read "
            "back what it writes ('Q' is a bad directive in format '%Y%m%d%Q')"),
    ]  # fmt: skip
    assert "quote numbers" in problems[0].fix and "nullable: true" in problems[1].fix


def test_an_empty_success_where_the_monolith_sends_a_record_is_a_502(make_translator):
    """A 200 or 201 with no body on a record or page endpoint would reach the legacy client
    as an empty success: a wrong answer. A 204 (DELETE) stays what it is."""
    t = make_translator(
        RECORD
        + """
    endpoints:
      - {legacy: "/c/{id}", new: "/v1/c/{id}", methods: [GET], response: record}
      - {legacy: /c, new: /v1/c, methods: [POST], request: record, response: record}
      - {legacy: "/c/{id}", new: "/v1/c/{id}", methods: [DELETE]}
    """
    )
    for method, path, status in (("GET", "/c/1", 200), ("POST", "/c", 201)):
        err = _error(
            lambda m=method, p=path, s=status: t.response_to_legacy(
                ResponseMessage(s, (), None), RequestMessage(m, p)
            )
        )
        assert (err.status, err.direction, err.path) == (502, "response_to_legacy", "$")
        assert f"endpoint {status} with no body" in err.message
    gone = ResponseMessage(204, (), None)
    assert t.response_to_legacy(gone, RequestMessage("DELETE", "/c/1")) is gone
