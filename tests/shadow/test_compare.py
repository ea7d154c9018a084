"""The diff engine: every rule, every kind, whole responses, and properties over random JSON."""

from __future__ import annotations

import gzip
import json
import zlib
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config.model import ShadowPolicy
from proxy.shadow.compare import Differ, Rules, compare, diff_json
from proxy.shadow.model import CapturedResponse
from proxy.shadow.paths import Keyed, PathSyntaxError, format_path, matches, parse_pattern


def kinds(diffs):
    return {(d.path, d.kind) for d in diffs}


def test_identical_documents_have_no_differences():
    doc = {"a": 1, "b": [1, 2, {"c": None}], "d": "x", "e": True, "f": 1.5}
    assert diff_json(doc, json.loads(json.dumps(doc))) == []


def test_value_type_missing_extra():
    a = {"total": 10, "name": "x", "gone": 1, "flag": True, "n": None}
    b = {"total": 11, "name": 5, "new": 2, "flag": 1, "n": None}
    got = kinds(diff_json(a, b))
    assert got == {
        ("$.total", "value"),
        ("$.name", "type"),
        ("$.gone", "missing"),
        ("$.new", "extra"),
        ("$.flag", "type"),
    }


def test_nested_paths_name_the_list_position():
    a = {"items": [{"total": 1}, {"total": 2}, {"total": 3}, {"total": 4}]}
    b = {"items": [{"total": 1}, {"total": 2}, {"total": 3}, {"total": 5}]}
    (d,) = diff_json(a, b)
    assert (d.path, d.field, d.kind, d.primary, d.candidate) == (
        "$.items[3].total",
        "$.items[*].total",
        "value",
        4,
        5,
    )


def test_int_and_float_are_one_json_number():
    assert diff_json({"a": 1}, {"a": 1.0}) == []
    assert kinds(diff_json({"a": 1}, {"a": 1.5})) == {("$.a", "value")}


def test_length_and_order():
    assert kinds(diff_json({"l": [1, 2]}, {"l": [1, 2, 3]})) == {("$.l", "length")}
    (d,) = diff_json({"l": [1, 2, 3]}, {"l": [3, 1, 2]})
    assert (d.path, d.kind) == ("$.l", "order")
    assert diff_json({"l": [1, 2, 3]}, {"l": [3, 1, 2]}, Rules(ignore_list_order=True)) == []


def test_ignore_list_order_still_reports_changed_elements():
    a = {"l": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]}
    b = {"l": [{"id": 2, "v": "b"}, {"id": 1, "v": "CHANGED"}]}
    got = diff_json(a, b, Rules(ignore_list_order=True))
    assert [(d.path, d.kind, d.primary, d.candidate) for d in got] == [
        ("$.l[0].v", "value", "a", "CHANGED")
    ]


def test_list_order_is_judged_by_the_rules_of_its_elements():
    """Items that differ only where a rule says not to look (an ignored `etag`, a
    case-insensitive name, 1.0 for 1, a number within tolerance) are the same items: in
    another order they are one `order` difference, not value differences in every field,
    and `ignore_list_order` absorbs them."""
    a = {"items": [{"id": 1, "name": "Ann", "etag": "a1"}, {"id": 2, "name": "bob", "etag": "a2"}]}
    b = {"items": [{"id": 2, "name": "BOB", "etag": "b2"}, {"id": 1, "name": "ann", "etag": "b1"}]}
    rules = Rules(ignore=("$.items[*].etag",), case_insensitive=("$.items[*].name",))
    (d,) = diff_json(a, b, rules)
    assert (d.path, d.field, d.kind) == ("$.items", "$.items", "order")
    (d,) = diff_json(b, a, rules)
    assert (d.path, d.kind) == ("$.items", "order")
    ordered = Rules(
        ignore=("$.items[*].etag",), case_insensitive=("$.items[*].name",), ignore_list_order=True
    )
    assert diff_json(a, b, ordered) == []
    # a real change among reordered items is still reported, at the element that changed
    b["items"][1]["name"] = "Anne"
    assert [(d.path, d.kind) for d in diff_json(a, b, ordered)] == [("$.items[0].name", "value")]

    (d,) = diff_json({"l": [1.0, 2]}, {"l": [2.0, 1]})
    assert (d.path, d.kind) == ("$.l", "order")
    (d,) = diff_json({"l": [1.0, 2.5]}, {"l": [2.501, 1.001]}, Rules(tolerance=0.01))
    assert (d.path, d.kind) == ("$.l", "order")
    nested = Rules(unordered=MappingProxyType({"$.l[*].tags": "k"}))
    x = {"l": [{"n": 1, "tags": [{"k": "a"}, {"k": "b"}]}, {"n": 2, "tags": []}]}
    y = {"l": [{"n": 2, "tags": []}, {"n": 1, "tags": [{"k": "b"}, {"k": "a"}]}]}
    (d,) = diff_json(x, y, nested)
    assert (d.path, d.kind) == ("$.l", "order")


def test_nan_equals_nan():
    """Python's json reads NaN: a document holding one diffed with itself is still empty."""
    doc = json.loads('{"x": NaN, "l": [NaN, 1], "o": {"y": NaN}}')
    assert diff_json(doc, doc) == []
    assert kinds(diff_json({"x": float("nan")}, {"x": 1.0})) == {("$.x", "value")}


def test_ignore_paths_with_wildcards_and_deep():
    a = {"generated_at": 1, "items": [{"etag": "a", "v": 1}, {"etag": "b", "v": 2}]}
    b = {"generated_at": 2, "items": [{"etag": "x", "v": 1}, {"etag": "y", "v": 3}]}
    rules = Rules(ignore=("$.generated_at", "$.items[*].etag"))
    assert kinds(diff_json(a, b, rules)) == {("$.items[1].v", "value")}
    deep = Rules(ignore=("$..etag", "$..generated_at"))
    assert kinds(diff_json(a, b, deep)) == {("$.items[1].v", "value")}
    # ignored keys are ignored when missing or extra too
    assert diff_json({"trace_id": "a"}, {}, Rules(ignore=("$.trace_id",))) == []
    assert diff_json({}, {"trace_id": "a"}, Rules(ignore=("$.trace_id",))) == []


def test_numeric_tolerance():
    rules = Rules(tolerance=0.01)
    assert diff_json({"p": 21.64}, {"p": 21.645}, rules) == []
    assert kinds(diff_json({"p": 21.64}, {"p": 21.66}, rules)) == {("$.p", "value")}
    assert kinds(diff_json({"p": 21.64}, {"p": 21.645})) == {("$.p", "value")}


def test_case_insensitive_paths():
    rules = Rules(case_insensitive=("$.name.family", "$.tags"))
    a = {"name": {"family": "DOE", "given": "Jane"}, "tags": ["VIP"]}
    b = {"name": {"family": "Doe", "given": "JANE"}, "tags": ["vip"]}
    assert kinds(diff_json(a, b, rules)) == {("$.name.given", "value")}


def test_unordered_arrays_keyed_by_a_field():
    rules = Rules(unordered=MappingProxyType({"$.items": "id"}))
    a = {"items": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}]}
    b = {"items": [{"id": 3, "v": "c"}, {"id": 1, "v": "A"}, {"id": 4, "v": "d"}]}
    got = kinds(diff_json(a, b, rules))
    assert got == {
        ("$.items[id=1].v", "value"),
        ("$.items[id=2]", "missing"),
        ("$.items[id=4]", "extra"),
    }
    fields = {d.field for d in diff_json(a, b, rules)}
    assert fields == {"$.items[*].v", "$.items[*]"}
    # ignore patterns with [*] also reach keyed elements
    both = Rules(unordered=MappingProxyType({"$.items": "id"}), ignore=("$.items[*].v",))
    assert kinds(diff_json(a, b, both)) == {
        ("$.items[id=2]", "missing"),
        ("$.items[id=4]", "extra"),
    }


def test_unordered_falls_back_to_positions_without_unique_keys():
    rules = Rules(unordered=MappingProxyType({"$.items": "id"}))
    a = {"items": [{"id": 1}, {"id": 1}]}
    b = {"items": [{"id": 1}, {"id": 2}]}
    assert kinds(diff_json(a, b, rules)) == {("$.items[1].id", "value")}


def test_rules_from_policy():
    policy = ShadowPolicy(
        ignore=("$.trace_id",),
        tolerance=0.5,
        unordered=MappingProxyType({"$.results": "cust_id"}),
        case_insensitive=("$.status",),
        ignore_list_order=True,
        headers=("Content-Type", "ETag"),
    )
    rules = Rules.from_policy(policy)
    assert rules.headers == ("content-type", "etag")
    a = {"trace_id": 1, "status": "A", "x": 1.0, "results": [{"cust_id": 1}, {"cust_id": 2}]}
    b = {"trace_id": 2, "status": "a", "x": 1.4, "results": [{"cust_id": 2}, {"cust_id": 1}]}
    assert diff_json(a, b, rules) == []


def test_pattern_syntax_errors_name_the_column():
    with pytest.raises(PathSyntaxError, match="must start with"):
        parse_pattern("items[*]")
    with pytest.raises(PathSyntaxError, match="column 8"):
        parse_pattern("$.items!x")
    with pytest.raises(PathSyntaxError, match="never closed"):
        parse_pattern("$.items[3")
    with pytest.raises(PathSyntaxError):
        Differ(Rules(ignore=("$.a.",)))


def test_pattern_matching():
    assert matches("$.items[*].etag", ["items", 4, "etag"])
    assert matches("$.items[*].etag", ["items", Keyed("id", 3), "etag"])
    assert not matches("$.items[*].etag", ["items", "etag"])
    assert matches("$..etag", ["a", 1, "b", "etag"])
    assert matches("$..etag", ["etag"])
    assert matches('$["odd key"][0]', ["odd key", 0])
    assert matches("$.items[id=3]", ["items", Keyed("id", 3)])
    assert not matches("$.items[2]", ["items", 3])
    assert format_path(["a b", 2, Keyed("sku", "X")]) == '$["a b"][2][sku="X"]'


# ---- whole responses ----------------------------------------------------------------------

JSON_CT = (("content-type", "application/json"),)


def resp(status=200, body=b"", headers=JSON_CT, latency=0.01):
    return CapturedResponse(status, tuple(headers), body, latency)


def test_status_headers_and_ignored_headers():
    p = resp(200, b"", (("content-type", "text/plain"), ("date", "a"), ("etag", "1")))
    c = resp(201, b"", (("content-type", "text/html"), ("date", "b"), ("etag", "2")))
    got = kinds(compare(p, c).differences)
    assert got == {("status", "value"), ("header:content-type", "value")}
    got = kinds(compare(p, c, Rules(headers=("etag", "date", "server"))).differences)
    assert got == {("status", "value"), ("header:etag", "value")}
    got = kinds(compare(p, c, Rules(headers=())).differences)  # `headers: []`: none at all
    assert got == {("status", "value")}


def test_content_type_parameters_are_not_a_difference():
    p = resp(body=b"{}", headers=(("content-type", "application/json; charset=utf-8"),))
    c = resp(body=b"{}", headers=(("content-type", "application/json"),))
    assert compare(p, c).match


def test_empty_bodies_compare_by_status_and_headers():
    cmp = compare(resp(204, headers=()), resp(204, headers=()))
    assert cmp.match and cmp.body_kind == "empty"
    cmp = compare(resp(204, headers=()), resp(200, b'{"a":1}'))
    assert kinds(cmp.differences) >= {("status", "value"), ("body", "extra")}


def test_compressed_bodies_are_decompressed():
    doc = json.dumps({"a": [1, 2, 3], "b": "x" * 100}).encode()
    p = resp(body=gzip.compress(doc), headers=JSON_CT + (("content-encoding", "gzip"),))
    c = resp(body=zlib.compress(doc), headers=JSON_CT + (("content-encoding", "deflate"),))
    raw = resp(body=doc)
    assert compare(p, c).match
    assert compare(p, raw).match
    changed = resp(body=gzip.compress(doc.replace(b'"x', b'"y')), headers=p.headers)
    assert kinds(compare(p, changed).differences) == {("$.b", "value")}


def test_undecodable_or_mixed_bodies_are_incomparable():
    bad = resp(body=b"not gzip", headers=JSON_CT + (("content-encoding", "gzip"),))
    cmp = compare(bad, resp(body=b"{}"))
    assert cmp.body_kind == "incomparable" and kinds(cmp.differences) == {("body", "incomparable")}
    html = resp(body=b"<p>hi</p>", headers=(("content-type", "text/html"),))
    cmp = compare(resp(body=b"{}"), html)
    assert ("body", "incomparable") in kinds(cmp.differences)
    cmp = compare(resp(body=b"{}"), resp(body=b"{oops"))
    assert cmp.body_kind == "incomparable"
    assert "candidate" in cmp.differences[0].primary


def test_text_line_by_line_and_binary_by_hash():
    t = (("content-type", "text/plain"),)
    cmp = compare(resp(body=b"a\nb\nc\n", headers=t), resp(body=b"a\nB\nc\nd\n", headers=t))
    assert cmp.body_kind == "text"
    assert kinds(cmp.differences) == {("line:2", "value"), ("line:4", "extra")}
    o = (("content-type", "application/octet-stream"),)
    assert compare(resp(body=b"\x00\x01", headers=o), resp(body=b"\x00\x01", headers=o)).match
    cmp = compare(resp(body=b"\x00\x01", headers=o), resp(body=b"\x00\x02", headers=o))
    (d,) = cmp.differences
    assert d.path == "body" and d.primary.startswith("sha256:") and d.primary != d.candidate


# ---- properties ---------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-3, 3, allow_nan=False)
scalars = scalars | st.sampled_from(["a", "b", "A", ""])
json_docs = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "id", "x y"]), children, max_size=4)
    ),
    max_leaves=20,
)
rule_sets = st.sampled_from(
    [
        Rules(),
        Rules(tolerance=0.5),
        Rules(ignore=("$..a", "$.b[*]")),
        Rules(case_insensitive=("$..*",)),
        Rules(unordered=MappingProxyType({"$..*": "id"})),
    ]
)


@settings(max_examples=300, deadline=None)
@given(json_docs, rule_sets)
def test_a_document_diffed_with_itself_is_empty(doc, rules):
    assert Differ(rules).diff_json(doc, doc) == []
    assert Differ(rules).diff_json(doc, json.loads(json.dumps(doc))) == []


@settings(max_examples=300, deadline=None)
@given(json_docs, json_docs, rule_sets)
def test_diff_is_symmetric_in_paths(a, b, rules):
    differ = Differ(rules)
    forward, backward = differ.diff_json(a, b), differ.diff_json(b, a)
    assert sorted(d.path for d in forward) == sorted(d.path for d in backward)
    swap = {"missing": "extra", "extra": "missing"}
    assert sorted((d.path, swap.get(d.kind, d.kind)) for d in forward) == sorted(
        (d.path, d.kind) for d in backward
    )


@settings(max_examples=200, deadline=None)
@given(json_docs, json_docs)
def test_ignore_list_order_is_symmetric_in_fields(a, b):
    differ = Differ(Rules(ignore_list_order=True))
    assert sorted(d.field for d in differ.diff_json(a, b)) == sorted(
        d.field for d in differ.diff_json(b, a)
    )


@settings(max_examples=200, deadline=None)
@given(json_docs, json_docs)
def test_differences_vanish_exactly_when_documents_are_equal(a, b):
    diffs = diff_json(a, b)
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    if same:
        assert diffs == []
    elif not _numbers_equal(a, b):
        assert diffs, (a, b)


def _numbers_equal(a, b):
    """int 1 and float 1.0 serialise differently but are the same JSON number."""

    def norm(v):
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return (type(v).__name__, v)
        if isinstance(v, int | float):
            return ("num", float(v))
        if isinstance(v, list):
            return ("list", tuple(norm(x) for x in v))
        return ("obj", tuple(sorted((k, norm(x)) for k, x in v.items())))

    return norm(a) == norm(b)


@settings(max_examples=200, deadline=None)
@given(json_docs)
def test_ignoring_the_root_hides_everything(doc):
    assert diff_json(doc, {"other": doc}, Rules(ignore=("$",))) == []


def _map_leaves(doc, fn):
    if isinstance(doc, dict):
        return {k: _map_leaves(v, fn) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_map_leaves(v, fn) for v in doc]
    return fn(doc)


@settings(max_examples=200, deadline=None)
@given(json_docs, st.floats(-0.4, 0.4))
def test_tolerance_absorbs_small_numeric_changes(doc, delta):
    def nudge(v):
        if isinstance(v, int | float) and not isinstance(v, bool):
            return v + delta
        return v

    moved = _map_leaves(doc, nudge)
    assert diff_json(doc, moved, Rules(tolerance=0.5)) == []
    if delta and moved != doc:
        assert diff_json(doc, moved)


@settings(max_examples=200, deadline=None)
@given(json_docs)
def test_case_insensitive_rule_absorbs_case_changes(doc):
    shouted = _map_leaves(doc, lambda v: v.swapcase() if isinstance(v, str) else v)
    assert diff_json({"r": doc}, {"r": shouted}, Rules(case_insensitive=("$..*",))) == []
    if json.dumps(shouted) != json.dumps(doc):
        assert diff_json({"r": doc}, {"r": shouted})


@settings(max_examples=200, deadline=None)
@given(st.lists(json_docs, max_size=6), st.randoms(use_true_random=False))
def test_unordered_rules_absorb_shuffles(items, rnd):
    keyed = [{"id": i, "v": v} for i, v in enumerate(items)]
    shuffled = list(keyed)
    rnd.shuffle(shuffled)
    rules = Rules(unordered=MappingProxyType({"$.items": "id"}))
    assert diff_json({"items": keyed}, {"items": shuffled}, rules) == []
    assert diff_json({"items": keyed}, {"items": shuffled}, Rules(ignore_list_order=True)) == []
    if shuffled != keyed:
        (d,) = diff_json({"items": keyed}, {"items": shuffled})
        assert (d.path, d.kind) == ("$.items", "order")
