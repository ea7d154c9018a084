"""Checking and compiling YAML translators: every mistake found at load time, each with the
file, the line and a fix, so a broken translator never reaches a live request."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import jmespath
import yaml
from jmespath.exceptions import JMESPathError

from acl.declarative import (
    MISSING,
    TYPES,
    WRITE_METHODS,
    DeclarativeTranslator,
    RecordMap,
    _Endpoint,
    _ErrorRule,
    _InvalidRequest,
    _Pagination,
    _Param,
    _QueryMap,
    _Step,
    _type_name,
)
from acl.functions import (
    CONVERTERS,
    ArgumentError,
    Codec,
    ConversionError,
    ExprContext,
    known_function_names,
    make_options,
)
from acl.functions import function_names_in as _function_names_in
from acl.paths import PathError, parse_path
from acl.translator import LoadProblem, TranslatorLoadError
from acl.yamlsource import LineDict, line_of, load_yaml

UNMAPPED = ("drop", "error", "keep")
BODY_KINDS_REQUEST = ("pass", "record")
BODY_KINDS_RESPONSE = ("pass", "record", "page")

TOP_KEYS = {
    "name", "description", "bidirectional", "record", "endpoints", "query", "pagination",
    "errors", "legacy_extras", "messages", "invalid_request", "field_names", "legacy_json",
}  # fmt: skip
RECORD_KEYS = {"fields", "unmapped", "drop", "request_unmapped", "unknown_message"}
FIELD_KEYS = {
    "legacy", "new", "type", "nullable", "optional", "default", "convert", "each", "compute",
    "read_only", "invalid_message", "strip",
}  # fmt: skip
ENDPOINT_KEYS = {"legacy", "new", "methods", "request", "response", "query", "require"}
QUERY_KEYS = {"params", "unmapped", "repeated"}
PARAM_KEYS = {"legacy", "new", "values", "invalid_message"}
PAGINATION_KEYS = {"legacy", "new"}
PAGE_LEGACY_KEYS = {"page", "page_size", "default_page_size", "max_page_size", "envelope",
                    "not_integer_message", "out_of_range_message"}  # fmt: skip
PAGE_NEW_KEYS = {"cursor", "limit", "cursor_key", "envelope"}
LEGACY_ENVELOPE_KEYS = {"items", "total", "page", "page_size"}
NEW_ENVELOPE_KEYS = {"items", "total", "next_cursor"}
ERROR_KEYS = {"status", "if", "legacy_status", "legacy_body"}
INVALID_REQUEST_KEYS = {
    "status", "body", "non_field_key", "not_object_message", "required_message",
    "malformed_body",
}  # fmt: skip


class _Checker:
    """Collects problems for one file instead of stopping at the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[LoadProblem] = []

    def add(self, container: Any, key: Any, message: str, fix: str = "") -> None:
        self.problems.append(LoadProblem(self.file, line_of(container, key), message, fix))

    def keys(self, node: Any, allowed: set[str], where: str) -> bool:
        if not isinstance(node, dict):
            self.add(node, None, f"{where} must be a mapping, got {_type_name(node)}")
            return False
        for key in node:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                fix = (
                    f"did you mean `{close[0]}`?"
                    if close
                    else f"allowed: {', '.join(sorted(allowed))}"
                )
                self.add(node, key, f"unknown key `{key}` in {where}", fix)
        return True

    def expression(self, node: Any, key: Any, where: str) -> Any:
        text = node.get(key) if isinstance(node, dict) else None
        if not isinstance(text, str) or not text.strip():
            self.add(node, key, f"{where} must be a JMESPath expression string, got {text!r}")
            return None
        try:
            compiled = jmespath.compile(text)
        except JMESPathError as exc:
            detail = " ".join(str(exc).split())
            self.add(
                node, key, f"bad JMESPath expression in {where}: {detail}",
                "see https://jmespath.org/specification.html; quote literals with backticks",
            )  # fmt: skip
            return None
        known = known_function_names()
        for fname in _function_names_in(compiled.parsed):
            if fname not in known:
                close = difflib.get_close_matches(fname, sorted(known), n=1)
                self.add(
                    node, key, f"unknown function `{fname}()` in {where}",
                    f"did you mean `{close[0]}`?" if close else "register it with "
                    "acl.functions.expression_function in a translators/*.py file",
                )  # fmt: skip
                return None
        return compiled

    def path(self, node: Any, key: str, where: str) -> tuple[str, ...] | None:
        try:
            return parse_path(node[key])
        except PathError as exc:
            self.add(node, key, f"{where}: {' '.join(str(exc).split())}")
            return None


def _parse_codec(chk: _Checker, rule: dict, where: str) -> Codec | None:
    spec = rule["convert"]
    if isinstance(spec, str):
        name, args = spec, None
    elif isinstance(spec, dict) and len(spec) == 1:
        name, args = next(iter(spec.items()))
    else:
        chk.add(rule, "convert", f"{where}.convert must be NAME or {{NAME: ARGS}}, got {spec!r}")
        return None
    factory = CONVERTERS.get(name)
    if factory is None:
        close = difflib.get_close_matches(str(name), sorted(CONVERTERS), n=1)
        chk.add(
            rule, "convert", f"unknown function `{name}` in {where}.convert",
            f"did you mean `{close[0]}`?" if close else
            f"known: {', '.join(sorted(CONVERTERS))}; or register one with @acl.functions.converter",
        )  # fmt: skip
        return None
    try:
        return factory(args)
    except ArgumentError as exc:
        chk.add(rule, "convert", f"{where}.convert.{name}: {exc}", exc.fix)
        return None


def _parse_record(
    chk: _Checker, node: Any, where: str, options: jmespath.Options, names: dict[str, str]
) -> RecordMap | None:
    if isinstance(node, list):  # `each: [rules]` shorthand
        fields_node, node = node, LineDict(fields=node)
        node.line = getattr(fields_node, "line", 0)
        node.key_lines = {}
    if not chk.keys(node, RECORD_KEYS, where):
        return None
    unmapped = {"legacy": "drop", "new": "drop"}
    raw = node.get("unmapped", "drop")
    if isinstance(raw, str):
        raw = {"legacy": raw, "new": raw}
    if not isinstance(raw, dict) or not set(raw) <= {"legacy", "new"}:
        chk.add(node, "unmapped", f"{where}.unmapped must be drop|error|keep or {{legacy:, new:}}")
    else:
        for side, policy in raw.items():
            if policy not in UNMAPPED:
                chk.add(node, "unmapped", f"{where}.unmapped: unknown policy {policy!r}",
                        f"one of {', '.join(UNMAPPED)}")  # fmt: skip
            else:
                unmapped[side] = policy
    drop = {"legacy": frozenset(), "new": frozenset()}
    raw_drop = node.get("drop", {})
    if not isinstance(raw_drop, dict) or not set(raw_drop) <= {"legacy", "new"}:
        chk.add(node, "drop", f"{where}.drop must be {{legacy: [names], new: [names]}}")
    else:
        for side, names_list in raw_drop.items():
            if not isinstance(names_list, list) or not all(isinstance(n, str) for n in names_list):
                chk.add(raw_drop, side, f"{where}.drop.{side} must be a list of field names")
            else:
                drop[side] = frozenset(names_list)
    rules = node.get("fields")
    if not isinstance(rules, list) or not rules:
        chk.add(
            node, "fields" if "fields" in node else None, f"{where}.fields must be a non-empty list"
        )
        return None
    forward: list[_Step] = []
    backward: list[_Step] = []
    seen = {"legacy": {}, "new": {}}
    for i, rule in enumerate(rules):
        rwhere = f"{where}.fields[{i}]"
        if not chk.keys(rule, FIELD_KEYS, rwhere):
            continue
        paths: dict[str, tuple[str, ...] | None] = {}
        for side in ("legacy", "new"):
            if side in rule:
                paths[side] = chk.path(rule, side, f"{rwhere}.{side}")
                if paths[side] is not None:
                    other = seen[side].get(paths[side])
                    if other is not None:
                        chk.add(rule, side, f"{rwhere}.{side}: `{rule[side]}` is already mapped by "
                                f"fields[{other}]", "map each field once")  # fmt: skip
                    seen[side][paths[side]] = i
        if "compute" in rule:
            if len(paths) != 1:
                chk.add(rule, "compute", f"{rwhere}: a computed field names exactly one target, "
                        "`legacy:` or `new:`", "e.g. {new: display_name, compute: \"...\"}")  # fmt: skip
                continue
            expr = chk.expression(rule, "compute", f"{rwhere}.compute")
            side, dst = next(iter(paths.items()))
            if expr is None or dst is None:
                continue
            step = _Step(None, dst, None, None, "any", True, True, MISSING, False, None, expr,
                         None, None)  # fmt: skip
            (forward if side == "new" else backward).append(step)
            continue
        if set(paths) != {"legacy", "new"}:
            chk.add(rule, None, f"{rwhere} needs both `legacy:` and `new:` paths (or `compute:`)")
            continue
        if None in paths.values():
            continue
        codec = None
        if "convert" in rule:
            codec = _parse_codec(chk, rule, rwhere)
            if codec is None:
                continue
        type_name = rule.get("type", "any")
        if type_name not in TYPES:
            chk.add(
                rule,
                "type",
                f"{rwhere}.type: unknown type {type_name!r}",
                f"one of {', '.join(TYPES)}",
            )
            continue
        each = None
        if "each" in rule:
            if codec is not None:
                chk.add(rule, "each", f"{rwhere}: `each` and `convert` together")
                continue
            each = _parse_record(chk, rule["each"], f"{rwhere}.each", options, names)
            if each is None:
                continue
        flags = {}
        for flag in ("nullable", "optional", "read_only", "strip"):
            flags[flag] = rule.get(flag, False)
            if not isinstance(flags[flag], bool):
                chk.add(rule, flag, f"{rwhere}.{flag} must be true or false")
        default = rule.get("default", MISSING)
        defaults = {"legacy": default, "new": default}
        if isinstance(default, dict) and set(default) <= {"legacy", "new"} and default:
            defaults = {
                "legacy": default.get("legacy", MISSING),
                "new": default.get("new", MISSING),
            }
        invalid = rule.get("invalid_message")
        type_message = value_message = invalid if isinstance(invalid, str) else None
        if isinstance(invalid, dict) and set(invalid) <= {"type", "value"}:
            type_message, value_message = invalid.get("type"), invalid.get("value")
        elif invalid is not None and not isinstance(invalid, str):
            chk.add(rule, "invalid_message", f"{rwhere}.invalid_message must be a string or "
                    "{type: MESSAGE, value: MESSAGE}")  # fmt: skip
        _check_defaults(chk, rule, rwhere, defaults, codec, type_name, flags["nullable"], each)
        lpath, npath = paths["legacy"], paths["new"]
        names.setdefault(".".join(npath), lpath[-1])
        common = dict(
            check=None if type_name == "any" else TYPES[type_name], type_name=type_name,
            nullable=flags["nullable"], optional=flags["optional"], read_only=flags["read_only"],
            each=each, expr=None, type_message=type_message, value_message=value_message,
        )  # fmt: skip
        forward.append(
            _Step(
                lpath,
                npath,
                codec.to_new if codec else None,
                default=defaults["legacy"],
                strip=flags["strip"],
                **common,
            )  # fmt: skip
        )
        backward.append(
            _Step(
                npath,
                lpath,
                codec.to_legacy if codec else None,
                default=defaults["new"],
                check_after=codec is not None and type_name != "any",
                **common,
            )  # fmt: skip
        )
    record = RecordMap(forward, backward, unmapped, drop, options)
    request_unmapped = node.get("request_unmapped", "drop")
    if request_unmapped not in ("drop", "reject"):
        chk.add(node, "request_unmapped", f"{where}.request_unmapped must be drop or reject")
    record.request_unmapped = request_unmapped
    record.unknown_message = str(node.get("unknown_message", "unknown field"))
    return record


def _check_defaults(
    chk: _Checker,
    rule: dict,
    where: str,
    defaults: dict[str, Any],
    codec: Codec | None,
    type_name: str,
    nullable: bool,
    each: RecordMap | None,
) -> None:
    """A default must translate as a value of its side would, or every record missing the
    field fails at run time: found here instead, by `strangler check`."""
    check = TYPES.get(type_name)
    seen: set[str] = set()  # one plain `default:` serves both sides: say it once
    for side, value in defaults.items():
        if value is MISSING or each is not None or (codec is None and repr(value) in seen):
            continue
        seen.add(repr(value))
        if value is None:
            if not nullable:
                chk.add(rule, "default", f"{where}.default ({side}) is null but the field is "
                        "not nullable", "mark it nullable: true, or give a value")  # fmt: skip
            continue
        legacy_value = value
        if codec is not None:
            try:
                converted = (codec.to_new if side == "legacy" else codec.to_legacy)(value)
            except ConversionError as exc:
                chk.add(rule, "default", f"{where}.default ({side}) {value!r} does not convert: "
                        f"{exc}", f"give a {side}-side value the converter accepts")  # fmt: skip
                continue
            legacy_value = value if side == "legacy" else converted
        if check is not None and not check(legacy_value):
            chk.add(rule, "default", f"{where}.default {value!r} is {_type_name(legacy_value)} on "
                    f"the legacy side, not the declared {type_name}",
                    f"give a {type_name} (quote numbers meant as text)")  # fmt: skip


_TEMPLATE_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(int))?\}")


def _template_regex(template: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _TEMPLATE_PARAM.finditer(template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>{'[0-9]+' if m.group(2) else '[^/]+'})")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


def _parse_endpoints(
    chk: _Checker, node: Any, has_query: bool, writable: tuple[str, ...]
) -> tuple[_Endpoint, ...]:
    if not isinstance(node, list):
        chk.add(node, None, "endpoints must be a list")
        return ()
    out = []
    for i, ep in enumerate(node):
        where = f"endpoints[{i}]"
        if not chk.keys(ep, ENDPOINT_KEYS, where):
            continue
        legacy = ep.get("legacy")
        if not isinstance(legacy, str) or not legacy.startswith("/"):
            chk.add(ep, "legacy" if "legacy" in ep else None,
                    f"{where}.legacy must be a path template like /api/customers/{{id}}")  # fmt: skip
            continue
        new = ep.get("new", legacy)
        if not isinstance(new, str) or not new.startswith("/"):
            chk.add(ep, "new", f"{where}.new must be a path template like /v1/customers/{{id}}")
            continue
        new_params = {m.group(1) for m in _TEMPLATE_PARAM.finditer(new)}
        missing = new_params - {m.group(1) for m in _TEMPLATE_PARAM.finditer(legacy)}
        if missing:
            chk.add(ep, "new", f"{where}.new uses {{{sorted(missing)[0]}}}, which {legacy} lacks",
                    "use only parameters of the legacy template")  # fmt: skip
            continue
        methods = ep.get("methods")
        if methods is not None:
            if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
                chk.add(ep, "methods", f"{where}.methods must be a list like [GET, POST]")
                continue
            methods = frozenset(m.upper() for m in methods)
        default_req = "record" if methods and methods <= WRITE_METHODS else "pass"
        request = ep.get("request", default_req)
        response = ep.get("response", "pass")
        if request not in BODY_KINDS_REQUEST:
            chk.add(ep, "request", f"{where}.request: unknown body kind {request!r}",
                    f"one of {', '.join(BODY_KINDS_REQUEST)}")  # fmt: skip
            continue
        if response not in BODY_KINDS_RESPONSE:
            chk.add(ep, "response", f"{where}.response: unknown body kind {response!r}",
                    f"one of {', '.join(BODY_KINDS_RESPONSE)}")  # fmt: skip
            continue
        query = ep.get("query", has_query)
        if not isinstance(query, bool):
            chk.add(ep, "query", f"{where}.query must be true or false")
            continue
        require = ep.get("require", [])
        if require == "writable":
            require = list(writable)
        if not isinstance(require, list) or not all(isinstance(r, str) for r in require):
            chk.add(ep, "require", f"{where}.require must be a list of legacy field names "
                    "or `writable` (every mapped field not marked read_only)")  # fmt: skip
            continue
        out.append(
            _Endpoint(
                legacy,
                _template_regex(legacy),
                _TEMPLATE_PARAM.sub(lambda m: "{" + m.group(1) + "}", new),
                methods,
                request,
                response,
                query,
                tuple(require),
                _template_regex(new),
                frozenset(m.group(1) for m in _TEMPLATE_PARAM.finditer(legacy) if m.group(2)),
            )
        )
    return tuple(out)


def _parse_query(chk: _Checker, node: Any, names: dict[str, str]) -> _QueryMap | None:
    if not chk.keys(node, QUERY_KEYS, "query"):
        return None
    unmapped = node.get("unmapped", "pass")
    if unmapped not in ("pass", "drop", "reject"):
        chk.add(
            node, "unmapped", f"query.unmapped: unknown policy {unmapped!r}", "pass|drop|reject"
        )
    repeated = node.get("repeated", "last")
    if repeated not in ("last", "first", "all"):
        chk.add(
            node,
            "repeated",
            f"query.repeated: unknown policy {repeated!r}",
            "last (the value Django, Rails and PHP read), first, or all (forward every one)",
        )
        repeated = "last"
    params: dict[str, _Param] = {}
    raw = node.get("params", [])
    if not isinstance(raw, list):
        chk.add(node, "params", "query.params must be a list")
        return None
    for i, p in enumerate(raw):
        where = f"query.params[{i}]"
        if not chk.keys(p, PARAM_KEYS, where):
            continue
        legacy = p.get("legacy")
        new = p.get("new", legacy)
        if not isinstance(legacy, str) or not isinstance(new, str):
            chk.add(p, None, f"{where} needs `legacy:` (and optionally `new:`) parameter names")
            continue
        values = p.get("values")
        if values is not None and not (
            isinstance(values, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())
        ):
            chk.add(p, "values", f"{where}.values must map legacy strings to new strings",
                    "quote values YAML would read as booleans or numbers: 'true'")  # fmt: skip
            continue
        invalid = p.get("invalid_message")
        params[legacy] = _Param(legacy, new, values, invalid if isinstance(invalid, str) else None)
        names.setdefault(new, legacy)
    policy = unmapped if unmapped in ("pass", "drop", "reject") else "pass"
    return _QueryMap(params, policy, repeated)


def _parse_pagination(chk: _Checker, node: Any, names: dict[str, str]) -> _Pagination | None:
    if not chk.keys(node, PAGINATION_KEYS, "pagination"):
        return None
    legacy, new = node.get("legacy"), node.get("new")
    if not chk.keys(legacy, PAGE_LEGACY_KEYS, "pagination.legacy") or not chk.keys(
        new, PAGE_NEW_KEYS, "pagination.new"
    ):
        return None
    envs = {}
    for side, spec, allowed in (
        ("legacy", legacy, LEGACY_ENVELOPE_KEYS),
        ("new", new, NEW_ENVELOPE_KEYS),
    ):
        env = spec.get("envelope")
        if not chk.keys(env, allowed, f"pagination.{side}.envelope"):
            return None
        missing = allowed - set(env)
        if missing:
            chk.add(env, None, f"pagination.{side}.envelope lacks `{sorted(missing)[0]}`",
                    f"name the body key for each of {', '.join(sorted(allowed))}")  # fmt: skip
            return None
        envs[side] = dict(env)
    ints = {}
    for key, default in (("default_page_size", 50), ("max_page_size", 100)):
        ints[key] = legacy.get(key, default)
        if type(ints[key]) is not int or ints[key] < 1:
            chk.add(legacy, key, f"pagination.legacy.{key} must be a positive integer")
            return None
    pag = _Pagination(
        page=str(legacy.get("page", "page")),
        page_size=str(legacy.get("page_size", "page_size")),
        default_page_size=ints["default_page_size"],
        max_page_size=ints["max_page_size"],
        legacy_envelope=envs["legacy"],
        cursor=str(new.get("cursor", "cursor")),
        limit=str(new.get("limit", "limit")),
        cursor_key=str(new.get("cursor_key", "offset")),
        new_envelope=envs["new"],
        not_integer_message=str(
            legacy.get("not_integer_message", "expected an integer, got {value!r}")
        ),
        out_of_range_message=str(
            legacy.get("out_of_range_message", "must be {bound}, got {value}")
        ),
    )
    names.setdefault(pag.limit, pag.page_size)
    names.setdefault(pag.cursor, pag.page)
    return pag


def _parse_errors(chk: _Checker, node: Any) -> tuple[_ErrorRule, ...]:
    if not isinstance(node, list):
        chk.add(node, None, "errors must be a list of rules")
        return ()
    out = []
    for i, rule in enumerate(node):
        where = f"errors[{i}]"
        if not chk.keys(rule, ERROR_KEYS, where):
            continue
        statuses = rule.get("status")
        if statuses is not None:
            statuses = statuses if isinstance(statuses, list) else [statuses]
            if not all(type(s) is int and 400 <= s <= 599 for s in statuses):
                chk.add(rule, "status", f"{where}.status must be an HTTP error status or a list")
                continue
            statuses = frozenset(statuses)
        condition = chk.expression(rule, "if", f"{where}.if") if "if" in rule else None
        legacy_status = rule.get("legacy_status")
        if legacy_status is not None and not (
            type(legacy_status) is int and 100 <= legacy_status <= 599
        ):
            chk.add(rule, "legacy_status", f"{where}.legacy_status must be an HTTP status")
            continue
        body = (
            chk.expression(rule, "legacy_body", f"{where}.legacy_body")
            if "legacy_body" in rule
            else None
        )
        out.append(_ErrorRule(statuses, condition, legacy_status, body))
    return tuple(out)


LEGACY_JSON_KEYS = {"separators", "ensure_ascii"}


def _parse_legacy_json(chk: _Checker, doc: Any) -> dict[str, Any] | None:
    """`legacy_json: {separators: [", ", ": "], ensure_ascii: true}`: how the monolith writes
    JSON (that one is Django's JsonResponse), so translated answers match it byte for byte."""
    if "legacy_json" not in doc:
        return None
    node = doc["legacy_json"]
    fix = "e.g. legacy_json: {separators: [', ', ': '], ensure_ascii: true} (Python's json.dumps)"
    if not isinstance(node, dict):
        chk.add(doc, "legacy_json", "legacy_json must be a mapping", fix)
        return None
    if not chk.keys(node, LEGACY_JSON_KEYS, "legacy_json"):
        return None
    style: dict[str, Any] = {}
    if "separators" in node:
        seps = node["separators"]
        if not (
            isinstance(seps, list)
            and len(seps) == 2
            and all(isinstance(x, str) and x.strip() in (",", ":") for x in seps)
            and [x.strip() for x in seps] == [",", ":"]
        ):
            chk.add(node, "separators", "legacy_json.separators must be [ITEM, KEY] like "
                    "[', ', ': '] or [',', ':']", fix)  # fmt: skip
        else:
            style["separators"] = tuple(seps)
    if "ensure_ascii" in node:
        if not isinstance(node["ensure_ascii"], bool):
            chk.add(node, "ensure_ascii", "legacy_json.ensure_ascii must be true or false", fix)
        else:
            style["ensure_ascii"] = node["ensure_ascii"]
    return style


def load_declarative(path: Path) -> DeclarativeTranslator:
    """Load and check one YAML translator; TranslatorLoadError lists every problem in it."""
    chk = _Checker(str(path))
    try:
        doc = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise TranslatorLoadError(
            [LoadProblem(str(path), line, f"invalid YAML: {problem}", "fix the YAML syntax")]
        ) from None
    name = path.stem
    if not chk.keys(doc, TOP_KEYS, "the translator"):
        raise TranslatorLoadError(chk.problems)
    if "name" in doc and doc["name"] != name:
        chk.add(doc, "name", f"name `{doc['name']}` differs from the file name `{name}`",
                f"rename the file to {doc['name']}.yaml or drop `name:`")  # fmt: skip
    names: dict[str, str] = {}
    ctx = ExprContext(name, names)  # `names` is filled below; the context reads it lazily
    options = make_options(ctx)
    bidirectional = doc.get("bidirectional", True)
    if not isinstance(bidirectional, bool):
        chk.add(doc, "bidirectional", "bidirectional must be true or false")
    record = (
        _parse_record(chk, doc["record"], "record", options, names) if "record" in doc else None
    )
    query = _parse_query(chk, doc["query"], names) if "query" in doc else None
    pagination = _parse_pagination(chk, doc["pagination"], names) if "pagination" in doc else None
    writable = record.writable() if record is not None else ()
    endpoints = (
        _parse_endpoints(chk, doc["endpoints"], query is not None, writable)
        if "endpoints" in doc
        else ()
    )
    extra_names = doc.get("field_names", {})
    if not isinstance(extra_names, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in extra_names.items()
    ):
        chk.add(doc, "field_names", "field_names must map a service field name to a legacy one")
    else:
        names.update(extra_names)
    if any(ep.response == "page" for ep in endpoints) and "pagination" not in doc:
        chk.add(doc, "endpoints", "an endpoint has `response: page` but there is no `pagination:`")
    if any(ep.request == "record" or ep.response != "pass" for ep in endpoints) and record is None:
        chk.add(doc, "endpoints", "endpoints translate records but there is no `record:`")
    errors = _parse_errors(chk, doc["errors"]) if "errors" in doc else ()
    extras: list[tuple[str, Any]] = []
    raw_extras = doc.get("legacy_extras", {})
    if not isinstance(raw_extras, dict):
        chk.add(doc, "legacy_extras", "legacy_extras must map a legacy key to an expression")
    else:
        for key in raw_extras:
            expr = chk.expression(raw_extras, key, f"legacy_extras.{key}")
            if expr is not None:
                extras.append((str(key), expr))
    messages = doc.get("messages", {})
    if not isinstance(messages, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in messages.items()
    ):
        chk.add(doc, "messages", "messages must map the service's message to the monolith's")
        messages = {}
    invalid_request = None
    if "invalid_request" in doc:
        node = doc["invalid_request"]
        if chk.keys(node, INVALID_REQUEST_KEYS, "invalid_request"):
            status = node.get("status", 400)
            if type(status) is not int or not 400 <= status <= 499:
                chk.add(node, "status", "invalid_request.status must be a 4xx status")
            body = chk.expression(node, "body", "invalid_request.body")
            malformed = None
            if "malformed_body" in node:
                malformed = chk.expression(node, "malformed_body", "invalid_request.malformed_body")
            if body is not None:
                invalid_request = _InvalidRequest(
                    status,
                    body,
                    str(node.get("non_field_key", "non_field_errors")),
                    str(node.get("not_object_message", "expected a JSON object")),
                    str(node.get("required_message", "missing required field")),
                    malformed,
                )
    legacy_json = _parse_legacy_json(chk, doc)
    if chk.problems:
        raise TranslatorLoadError(chk.problems)
    return DeclarativeTranslator(
        name,
        source=str(path),
        description=str(doc.get("description", "")),
        bidirectional=bidirectional,
        record=record,
        endpoints=endpoints,
        query=query,
        pagination=pagination,
        errors=errors,
        legacy_extras=tuple(extras),
        messages=messages,
        invalid_request=invalid_request,
        options=options,
        legacy_json=legacy_json,
    )
