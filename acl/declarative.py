"""YAML translators: a declaration is checked and compiled once, then run as plain Python.

Paths and expressions are JMESPath (see docs/acl.md for why); everything else is a small,
closed vocabulary of keys, each checked at load time with the file and line of any mistake.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jmespath
import yaml
from jmespath.exceptions import JMESPathError

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
from acl.paths import MISSING, PathError, format_path, get_path, parse_path, put_path
from acl.translator import (
    REQUEST_TO_NEW,
    RESPONSE_TO_LEGACY,
    TO_LEGACY,
    TO_NEW,
    LoadProblem,
    RequestMessage,
    RequestRejected,
    ResponseMessage,
    TranslationError,
    TranslatorLoadError,
)
from acl.yamlsource import LineDict, line_of, load_yaml

TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: type(v) is bool,
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "any": lambda v: True,
}
UNMAPPED = ("drop", "error", "keep")
BODY_KINDS_REQUEST = ("pass", "record")
BODY_KINDS_RESPONSE = ("pass", "record", "page")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})

TOP_KEYS = {
    "name", "description", "bidirectional", "record", "endpoints", "query", "pagination",
    "errors", "legacy_extras", "messages", "invalid_request", "field_names",
}  # fmt: skip
RECORD_KEYS = {"fields", "unmapped", "drop", "request_unmapped", "unknown_message"}
FIELD_KEYS = {
    "legacy", "new", "type", "nullable", "optional", "default", "convert", "each", "compute",
    "read_only", "invalid_message",
}  # fmt: skip
ENDPOINT_KEYS = {"legacy", "new", "methods", "request", "response", "query", "require"}
QUERY_KEYS = {"params", "unmapped"}
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
}  # fmt: skip


_ALREADY_NEW = "\0already-new"


class _Fail(Exception):
    """Internal: a field-level failure; the translator adds its name and the direction."""

    def __init__(self, keys: tuple, message: str, root: str = "$") -> None:
        self.keys = keys
        self.message = message
        self.root = root

    @property
    def path(self) -> str:
        return format_path(self.keys, self.root)


def _type_name(value: Any) -> str:
    for name in ("boolean", "integer", "number", "string", "object", "array"):
        if TYPES[name](value):
            return name
    return "null" if value is None else type(value).__name__


def fill(template: str, value: Any, **extra: Any) -> str:
    """Message templates: `{value}`, `{value!r}` and any `extra` name."""
    return template.format_map({"value": value, **extra})


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------------------------
# Compiled pieces


@dataclass(slots=True)
class _Step:
    """One field rule, oriented for one direction."""

    src: tuple[str, ...] | None
    dst: tuple[str, ...]
    convert: Callable[[Any], Any] | None
    check: Callable[[Any], bool] | None
    type_name: str
    nullable: bool
    optional: bool
    default: Any
    read_only: bool
    each: RecordMap | None
    expr: Any  # compiled JMESPath for computed fields
    type_message: str | None  # request mode: the monolith's words for a wrong type
    value_message: str | None  # request mode: ... for a value the converter refuses
    check_after: bool = False  # new->legacy: check the legacy type on the converted value


class RecordMap:
    """Field rules for one record shape, pre-split into a legacy->new and a new->legacy plan."""

    def __init__(
        self,
        forward: list[_Step],
        backward: list[_Step],
        unmapped: dict[str, str],
        drop: dict[str, frozenset[str]],
        options: jmespath.Options | None,
    ) -> None:
        self.forward = forward
        self.backward = backward
        self.unmapped = unmapped
        self.drop = drop
        self.options = options
        self.request_unmapped = "drop"
        self.unknown_message = "unknown field"
        # Computed fields are derived, so meeting one on the way back is expected, not unmapped.
        derived = {
            "legacy": frozenset(s.dst[0] for s in backward if s.expr is not None),
            "new": frozenset(s.dst[0] for s in forward if s.expr is not None),
        }
        self._consumed = {
            side: {s.src[0] for s in steps if s.src} | drop[side] | derived[side]
            for side, steps in (("legacy", forward), ("new", backward))
        }
        self._trees = {
            side: _tree(steps, drop[side] | derived[side])
            for side, steps in (("legacy", forward), ("new", backward))
        }

    def writable(self) -> tuple[str, ...]:
        """Top-level legacy fields a client may write (mapped, not read-only, not computed)."""
        return tuple(s.src[0] for s in self.forward if s.src and not s.read_only)

    def convert(
        self,
        src: Any,
        to_new: bool,
        prefix: tuple = (),
        request: bool = False,
        errors: list[_Fail] | None = None,
    ) -> dict:
        """Translate one record. In `request` mode (a client's body on its way to the new
        service) missing fields and read-only fields are skipped, defaults are not applied,
        and failures are collected in `errors` when given."""
        if type(src) is not dict:
            raise _Fail(prefix, f"expected an object, got {_type_name(src)} {_short(src)}")
        out: dict = {}
        for step in self.forward if to_new else self.backward:
            if request and step.read_only:
                continue
            try:
                self._apply(step, src, out, to_new, prefix, request, errors)
            except _Fail as fail:
                if errors is None:
                    raise
                errors.append(fail)
        side = "legacy" if to_new else "new"
        policy = self.unmapped[side]
        if request and self.request_unmapped == "reject":
            consumed = self._consumed[side]
            for key in src:
                if key not in consumed:
                    fail = _Fail(prefix + (key,), self.unknown_message)
                    if errors is None:
                        raise fail
                    errors.append(fail)
        elif policy != "drop" and not request:
            consumed = self._consumed[side]
            extra = [k for k in src if k not in consumed]
            if policy == "keep":
                for key in extra:
                    out.setdefault(key, src[key])
            else:
                unmapped = _unmapped_paths(src, self._trees[side], ())
                if unmapped:
                    keys = unmapped[0]
                    raise _Fail(
                        prefix + keys,
                        f"unmapped {side} field; the translator does not know it "
                        f"(map it, list it under record.drop.{side}, or set unmapped: drop)",
                    )
        return out

    def _apply(
        self,
        step: _Step,
        src: dict,
        out: dict,
        to_new: bool,
        prefix: tuple,
        request: bool,
        errors: list[_Fail] | None,
    ) -> None:
        if step.expr is not None:
            if request:
                return
            try:
                value = step.expr.search(src, options=self.options)
            except Exception as exc:  # noqa: BLE001 - custom functions may raise anything
                detail = " ".join(str(exc).split())
                raise _Fail(prefix + step.dst, f"compute failed: {detail}") from None
            put_path(out, step.dst, value)
            return
        keys = step.src
        value = src.get(keys[0], MISSING) if len(keys) == 1 else get_path(src, keys)
        if value is MISSING:
            if request:
                return
            if step.default is not MISSING:
                value = step.default
            elif step.optional:
                return
            else:
                raise _Fail(prefix + keys, "missing required field")
        if value is None:
            if step.nullable:
                put_path(out, step.dst, None) if len(step.dst) > 1 else out.__setitem__(
                    step.dst[0], None
                )
                return
            message = "null is not allowed here (mark the field nullable: true)"
            if request and step.type_message:
                message = fill(step.type_message, None)
            raise _Fail(prefix + keys, message)
        if step.each is not None:
            if type(value) is not list:
                raise _Fail(prefix + keys, f"expected an array, got {_type_name(value)}")
            sub = step.each
            value = [
                sub.convert(item, to_new, prefix + keys + (i,), request, errors)
                for i, item in enumerate(value)
            ]
        else:
            if step.check is not None and not step.check_after and not step.check(value):
                message = f"expected {step.type_name}, got {_type_name(value)} {_short(value)}"
                if request and step.type_message:
                    message = fill(step.type_message, value)
                raise _Fail(prefix + keys, message)
            if step.convert is not None:
                try:
                    converted = step.convert(value)
                except ConversionError as exc:
                    message = str(exc)
                    if request and step.value_message:
                        message = fill(step.value_message, value)
                    raise _Fail(prefix + keys, message) from None
                if step.check_after and not step.check(converted):
                    raise _Fail(
                        prefix + keys,
                        f"converts to {_type_name(converted)} {_short(converted)}, "
                        f"not the declared {step.type_name}",
                    )
                value = converted
        if len(step.dst) == 1:
            out[step.dst[0]] = value
        else:
            put_path(out, step.dst, value)


def _tree(steps: list[_Step], drop: frozenset[str]) -> dict:
    tree: dict = {key: True for key in drop}
    for step in steps:
        if not step.src:
            continue
        node = tree
        for key in step.src[:-1]:
            nxt = node.get(key)
            if nxt is True:
                break
            node = node.setdefault(key, {})
        else:
            node[step.src[-1]] = True
    return tree


def _unmapped_paths(obj: Any, tree: dict, prefix: tuple) -> list[tuple]:
    found = []
    if type(obj) is not dict:
        return found
    for key, value in obj.items():
        sub = tree.get(key)
        if sub is None:
            found.append(prefix + (key,))
        elif sub is not True:
            found.extend(_unmapped_paths(value, sub, prefix + (key,)))
    return found


@dataclass(frozen=True, slots=True)
class _Param:
    legacy: str
    new: str
    values: Mapping[str, str] | None
    invalid_message: str | None


@dataclass(frozen=True, slots=True)
class _QueryMap:
    params: Mapping[str, _Param]
    unmapped: str  # pass | drop | reject


@dataclass(frozen=True, slots=True)
class _Pagination:
    page: str
    page_size: str
    default_page_size: int
    max_page_size: int
    legacy_envelope: Mapping[str, str]
    cursor: str
    limit: str
    cursor_key: str
    new_envelope: Mapping[str, str]
    not_integer_message: str
    out_of_range_message: str


@dataclass(frozen=True, slots=True)
class _Endpoint:
    legacy: str
    pattern: re.Pattern[str]
    new: str
    methods: frozenset[str] | None
    request: str
    response: str
    query: bool
    require: tuple[str, ...] = ()  # legacy fields a request body must carry
    new_pattern: re.Pattern[str] | None = None  # to accept a path the route already rewrote


@dataclass(frozen=True, slots=True)
class _ErrorRule:
    statuses: frozenset[int] | None
    condition: Any
    legacy_status: int | None
    legacy_body: Any


@dataclass(frozen=True, slots=True)
class _InvalidRequest:
    """How the monolith answers a request it refuses, for input the translator can check."""

    status: int
    body: Any  # compiled JMESPath over {fields, request}
    non_field_key: str
    not_object_message: str
    required_message: str


def encode_cursor(offset: int, key: str = "offset") -> str:
    """The customers service's cursor: base64url (no padding) of JSON `{"offset": N}`."""
    raw = json.dumps({key: offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, key: str = "offset") -> int:
    """Inverse of encode_cursor; ValueError on anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)[key]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValueError(f"not a cursor: {cursor!r}") from None
    if type(value) is not int or value < 0:
        raise ValueError(f"not a cursor offset: {value!r}")
    return value


# ----------------------------------------------------------------------------------------------
# The translator


class DeclarativeTranslator:
    """A translator compiled from one YAML file; implements acl.translator.Translator."""

    def __init__(
        self,
        name: str,
        *,
        source: str,
        description: str,
        bidirectional: bool,
        record: RecordMap | None,
        endpoints: tuple[_Endpoint, ...],
        query: _QueryMap | None,
        pagination: _Pagination | None,
        errors: tuple[_ErrorRule, ...],
        legacy_extras: tuple[tuple[str, Any], ...],
        messages: Mapping[str, str],
        invalid_request: _InvalidRequest | None,
        options: jmespath.Options,
    ) -> None:
        self.name = name
        self.source = source
        self.description = description
        self.bidirectional = bidirectional
        self.record = record
        self.endpoints = endpoints
        self.query = query
        self.pagination = pagination
        self.errors = errors
        self.legacy_extras = legacy_extras
        self.messages = dict(messages)
        self.invalid_request = invalid_request
        self.options = options

    def __repr__(self) -> str:
        return f"<DeclarativeTranslator {self.name} from {self.source}>"

    # -- record level ------------------------------------------------------------------------

    def to_new(self, legacy: Any) -> Any:
        return self._record(legacy, True, TO_NEW)

    def to_legacy(self, new: Any) -> Any:
        return self._record(new, False, TO_LEGACY)

    def _record(self, value: Any, to_new: bool, direction: str, prefix: tuple = ()) -> Any:
        if self.record is None:
            return value
        try:
            return self.record.convert(value, to_new, prefix)
        except _Fail as fail:
            raise TranslationError(self.name, direction, fail.path, fail.message) from None

    # -- request -----------------------------------------------------------------------------

    def _endpoint(
        self, method: str, path: str, direction: str = REQUEST_TO_NEW
    ) -> tuple[_Endpoint | None, dict[str, str]]:
        if not self.endpoints:
            return None, {}
        method = "GET" if method == "HEAD" else method
        for ep in self.endpoints:
            m = ep.pattern.fullmatch(path)
            if m and (ep.methods is None or method in ep.methods):
                return ep, m.groupdict()
        if direction == REQUEST_TO_NEW:  # the route's `rewrite` may have run first
            for ep in self.endpoints:
                m = ep.new_pattern.fullmatch(path) if ep.new_pattern else None
                if m and (ep.methods is None or method in ep.methods):
                    return ep, {**m.groupdict(), _ALREADY_NEW: "1"}
        raise TranslationError(
            self.name,
            direction,
            "path",
            f"no endpoint in {self.source} matches {method} {path}; add one under `endpoints:`",
        )

    def request_to_new(self, req: RequestMessage, params: Mapping[str, str]) -> RequestMessage:
        ep, own = self._endpoint(req.method, req.path)
        path = req.path
        if ep is not None and _ALREADY_NEW not in own:
            values = {**params, **own}
            path = ep.new.format_map(values) if ep.new != ep.legacy else req.path
        invalid: list[_Fail] = []
        query = req.query
        if ep is None or ep.query:
            query = self._query_to_new(req.query, ep, invalid)
        body = req.body
        wants_record = ep.request == "record" if ep else req.method in WRITE_METHODS
        if wants_record and body is not None and self.record is not None:
            if type(body) is dict:
                for key in ep.require if ep is not None else ():
                    if key not in body:
                        message = (
                            self.invalid_request.required_message
                            if self.invalid_request
                            else "missing required field"
                        )
                        invalid.append(_Fail((key,), message))
                body = self.record.convert(body, True, (), request=True, errors=invalid)
            else:
                message = f"expected an object, got {_type_name(body)}"
                if self.invalid_request is not None:
                    message = self.invalid_request.not_object_message
                invalid.append(_Fail((), message))
        if invalid:
            self._raise_invalid(invalid, req)
        headers = req.headers if body is req.body else _without_length(req.headers)
        return RequestMessage(req.method, path, query, headers, body)

    def _raise_invalid(self, invalid: list[_Fail], req: RequestMessage) -> None:
        first = invalid[0]
        if self.invalid_request is None:
            raise TranslationError(self.name, REQUEST_TO_NEW, first.path, first.message)
        fields: dict[str, list[str]] = {}
        rejection = self.invalid_request
        for fail in invalid:
            name = format_path(fail.keys, "")[1:] if fail.keys else rejection.non_field_key
            fields.setdefault(name, []).append(fail.message)
        doc = {"fields": fields, "request": _request_doc(req, {})}
        body = self._search(rejection.body, doc, REQUEST_TO_NEW, "invalid_request.body")
        raise RequestRejected(
            self.name,
            REQUEST_TO_NEW,
            first.path,
            first.message,
            status=rejection.status,
            body=body,
        )

    def _query_to_new(
        self, query: tuple[tuple[str, str], ...], ep: _Endpoint | None, invalid: list[_Fail]
    ) -> tuple[tuple[str, str], ...]:
        out: list[tuple[str, str]] = []
        pag = self.pagination if ep is not None and ep.response == "page" else None
        page_args: dict[str, str] = {}
        qmap = self.query
        for key, value in query:
            if pag is not None and key in (pag.page, pag.page_size):
                page_args[key] = value
                continue
            if qmap is None:
                out.append((key, value))
                continue
            param = qmap.params.get(key)
            if param is None:
                if qmap.unmapped == "pass":
                    out.append((key, value))
                elif qmap.unmapped == "reject":
                    invalid.append(_Fail((key,), "unknown query parameter", root="query"))
                continue
            if param.values is not None:
                mapped = param.values.get(value)
                if mapped is None:
                    message = param.invalid_message or (
                        f"unknown value {value!r}; expected one of {', '.join(param.values)}"
                    )
                    invalid.append(_Fail((key,), fill(message, value), root="query"))
                    continue
                value = mapped
            out.append((param.new, value))
        if pag is not None:
            page = self._int_param(page_args, pag.page, 1, 1, None, pag, invalid)
            size = self._int_param(
                page_args, pag.page_size, pag.default_page_size, 1, pag.max_page_size, pag, invalid
            )
            if page is not None and size is not None:
                offset = (page - 1) * size
                if offset:
                    out.append((pag.cursor, encode_cursor(offset, pag.cursor_key)))
                out.append((pag.limit, str(size)))
        return tuple(out)

    @staticmethod
    def _int_param(
        args: Mapping[str, str],
        key: str,
        default: int,
        low: int,
        high: int | None,
        pag: _Pagination,
        invalid: list[_Fail],
    ) -> int | None:
        text = args.get(key)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            invalid.append(_Fail((key,), fill(pag.not_integer_message, text), root="query"))
            return None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            message = fill(pag.out_of_range_message, value, low=low, high=high, bound=bound)
            invalid.append(_Fail((key,), message, root="query"))
            return None
        return value

    # -- response ----------------------------------------------------------------------------

    def response_to_legacy(self, resp: ResponseMessage, req: RequestMessage) -> ResponseMessage:
        ep, params = self._endpoint(req.method, req.path, RESPONSE_TO_LEGACY)
        if resp.status >= 400:
            return self._error_to_legacy(resp, req, params)
        kind = ep.response if ep is not None else ("record" if self.record else "pass")
        body = resp.body
        if kind == "pass" or body is None:
            return resp
        try:
            if kind == "page":
                body = self._page_to_legacy(body, req)
            elif type(body) is list:
                body = [self.record.convert(item, False, (i,)) for i, item in enumerate(body)]
            else:
                body = self.record.convert(body, False, ()) if self.record else body
        except _Fail as fail:
            raise TranslationError(self.name, RESPONSE_TO_LEGACY, fail.path, fail.message) from None
        if self.legacy_extras and type(body) is dict:
            doc = None
            for key, expr in self.legacy_extras:
                if doc is None:
                    doc = {"request": _request_doc(req, params), "status": resp.status}
                body[key] = self._search(expr, doc, RESPONSE_TO_LEGACY, f"legacy_extras.{key}")
        return ResponseMessage(resp.status, _without_length(resp.headers), body)

    def _page_to_legacy(self, body: Any, req: RequestMessage) -> dict:
        pag = self.pagination
        if pag is None:
            raise _Fail((), "endpoint declares response: page but the translator has no pagination")
        if type(body) is not dict:
            raise _Fail((), f"expected a page object, got {_type_name(body)}")
        env_new, env_legacy = pag.new_envelope, pag.legacy_envelope
        items = body.get(env_new["items"], MISSING)
        if type(items) is not list:
            what = "missing" if items is MISSING else f"expected an array, got {_type_name(items)}"
            raise _Fail((env_new["items"],), what)
        total = body.get(env_new["total"], MISSING)
        if type(total) is not int:
            what = "missing" if total is MISSING else f"expected integer, got {_type_name(total)}"
            raise _Fail((env_new["total"],), what)
        args = dict(req.query)
        try:
            page = int(args.get(pag.page, 1))
            size = int(args.get(pag.page_size, pag.default_page_size))
        except ValueError:
            raise _Fail((), "the legacy request's page arguments are not integers") from None
        record = self.record
        if record is not None:
            key = env_new["items"]
            items = [record.convert(item, False, (key, i)) for i, item in enumerate(items)]
        return {
            env_legacy["page"]: page,
            env_legacy["page_size"]: size,
            env_legacy["total"]: total,
            env_legacy["items"]: items,
        }

    def _search(self, expr: Any, doc: Any, direction: str, where: str) -> Any:
        """Evaluate a compiled expression; a type error at run time is a translation error."""
        try:
            return expr.search(doc, options=self.options)
        except Exception as exc:  # noqa: BLE001 - custom functions may raise anything
            detail = " ".join(str(exc).split())
            raise TranslationError(self.name, direction, "$", f"{where} failed: {detail}") from None

    def _error_to_legacy(
        self, resp: ResponseMessage, req: RequestMessage, params: Mapping[str, str]
    ) -> ResponseMessage:
        doc: dict | None = None
        for i, rule in enumerate(self.errors):
            if rule.statuses is not None and resp.status not in rule.statuses:
                continue
            if doc is None:
                doc = {
                    "status": resp.status,
                    "body": resp.body,
                    "headers": {k.lower(): v for k, v in resp.headers},
                    "request": _request_doc(req, params),
                    "params": params,
                    "messages": self.messages,
                }
            if rule.condition is not None and not self._search(
                rule.condition, doc, RESPONSE_TO_LEGACY, f"errors[{i}].if"
            ):
                continue
            status = rule.legacy_status or resp.status
            body = resp.body
            if rule.legacy_body is not None:
                body = self._search(
                    rule.legacy_body, doc, RESPONSE_TO_LEGACY, f"errors[{i}].legacy_body"
                )
            return ResponseMessage(status, _without_length(resp.headers), body)
        return resp


def _without_length(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in headers if k.lower() != "content-length")


def _request_doc(req: RequestMessage, params: Mapping[str, str]) -> dict:
    return {
        "method": req.method,
        "path": req.path,
        "query": dict(req.query),
        "headers": {k.lower(): v for k, v in req.headers},
        "params": dict(params),
    }


# ----------------------------------------------------------------------------------------------
# Loading and checking


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
        for flag in ("nullable", "optional", "read_only"):
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
        lpath, npath = paths["legacy"], paths["new"]
        names.setdefault(".".join(npath), lpath[-1])
        common = dict(
            check=None if type_name == "any" else TYPES[type_name], type_name=type_name,
            nullable=flags["nullable"], optional=flags["optional"], read_only=flags["read_only"],
            each=each, expr=None, type_message=type_message, value_message=value_message,
        )  # fmt: skip
        forward.append(
            _Step(
                lpath, npath, codec.to_new if codec else None, default=defaults["legacy"], **common
            )
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
    return _QueryMap(params, unmapped if unmapped in ("pass", "drop", "reject") else "pass")


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
            if body is not None:
                invalid_request = _InvalidRequest(
                    status,
                    body,
                    str(node.get("non_field_key", "non_field_errors")),
                    str(node.get("not_object_message", "expected a JSON object")),
                    str(node.get("required_message", "missing required field")),
                )
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
    )
