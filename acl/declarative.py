"""YAML translators at run time: compiled field plans and the Translator they back.

`acl.loader` checks a YAML file and builds these objects once; on the request path they run
as plain Python closures (JMESPath only for `compute:` and error rules), which is what keeps
a 50-record page well under a millisecond.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import jmespath

from acl.functions import ConversionError
from acl.paths import MISSING, format_path, get_path, put_path
from acl.translator import (
    REQUEST_TO_NEW,
    RESPONSE_TO_LEGACY,
    TO_LEGACY,
    TO_NEW,
    NoEndpoint,
    RequestMessage,
    RequestRejected,
    ResponseMessage,
    TranslationError,
)

TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: type(v) is bool,
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "any": lambda v: True,
}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})

_ALREADY_NEW = "\0already-new"
# The largest offset a page cursor carries: past every table, within SQL's 64-bit integers.
MAX_CURSOR_OFFSET = 2**63 - 1


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
    strip: bool = False  # legacy->new: trim strings first, as the monolith does on write


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
        if step.strip and type(value) is str:
            value = value.strip()
        if value is None:
            if step.nullable:
                put_path(out, step.dst, None)
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
    repeated: str = "last"  # a mapped parameter given twice: last | first | all


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
    int_params: frozenset[str] = frozenset()  # `{id:int}`: read as a number, "007" is 7


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
    malformed_body: Any = None  # compiled JMESPath over {error, request}: a body not JSON


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
        legacy_json: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.legacy_json = legacy_json  # json.dumps options for legacy bodies (acl.wire)
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
                return ep, _canonical(m.groupdict(), ep.int_params)
        for ep in self.endpoints:  # the route's `rewrite` may have run first
            m = ep.new_pattern.fullmatch(path) if ep.new_pattern else None
            if m and (ep.methods is None or method in ep.methods):
                return ep, {**_canonical(m.groupdict(), ep.int_params), _ALREADY_NEW: "1"}
        raise NoEndpoint(
            self.name,
            direction,
            "path",
            # the file's name only: this message reaches clients, the server's layout must not
            f"no endpoint in {PurePath(self.source).name} matches {method} {path}; "
            "add one under `endpoints:`",
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
        if wants_record and req.unparsed is not None and self.record is not None:
            self._raise_malformed(req)
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

    def _raise_malformed(self, req: RequestMessage) -> None:
        """A body the endpoint needs as a record but that is not JSON: the monolith's own
        answer (`invalid_request.malformed_body`, else its not-an-object answer), so the
        service never receives bytes that skipped the translator's checks."""
        rejection = self.invalid_request
        if rejection is None or rejection.malformed_body is None:
            message = f"expected a JSON object ({req.unparsed})"
            if rejection is not None:
                message = rejection.not_object_message
            self._raise_invalid([_Fail((), message)], req)
            return
        doc = {"error": req.unparsed, "request": _request_doc(req, {})}
        body = self._search(
            rejection.malformed_body, doc, REQUEST_TO_NEW, "invalid_request.malformed_body"
        )
        raise RequestRejected(
            self.name,
            REQUEST_TO_NEW,
            "$",
            f"the body is not JSON ({req.unparsed})",
            status=rejection.status,
            body=body,
        )

    def _raise_invalid(self, invalid: list[_Fail], req: RequestMessage) -> None:
        if self.record is not None and len(invalid) > 1:
            # A body's problems in the order a monolith's validation visits them: keys it
            # does not know first (in the body's order), then its fields as `record.fields`
            # declares them, a missing required one in its place. Query problems stay first.
            rank = {s.src[0]: i for i, s in enumerate(self.record.forward) if s.src}
            invalid = sorted(
                invalid,
                key=lambda f: (
                    (-2,) if f.root != "$" else (rank.get(f.keys[0], -1),) if f.keys else (-1,)
                ),
            )
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
        if qmap is not None and qmap.repeated != "all":
            query = _one_of_each(query, qmap.params, qmap.repeated == "last")
        # Problems are listed as the monolith lists them, whatever the client's order: the
        # page arguments first, then the parameters in the order `query.params` declares.
        page_invalid: list[_Fail] = []
        param_invalid: list[_Fail] = []
        for key, value in query:
            if pag is not None and key in (pag.page, pag.page_size):
                if key not in page_args or qmap is None or qmap.repeated != "first":
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
                    param_invalid.append(_Fail((key,), "unknown query parameter", root="query"))
                continue
            if param.values is not None:
                mapped = param.values.get(value)
                if mapped is None:
                    message = param.invalid_message or (
                        f"unknown value {value!r}; expected one of {', '.join(param.values)}"
                    )
                    param_invalid.append(_Fail((key,), fill(message, value), root="query"))
                    continue
                value = mapped
            out.append((param.new, value))
        if pag is not None:
            page = self._int_param(page_args, pag.page, 1, 1, None, pag, page_invalid)
            size = self._int_param(
                page_args,
                pag.page_size,
                pag.default_page_size,
                1,
                pag.max_page_size,
                pag,
                page_invalid,
            )
            if page is not None and size is not None:
                # A page past any table is an empty page there (`page=10**4299` is still a
                # number the monolith reads); its offset, past what JSON writes (4300
                # digits), is capped to one as far past the end.
                offset = min((page - 1) * size, MAX_CURSOR_OFFSET)
                if offset:
                    out.append((pag.cursor, encode_cursor(offset, pag.cursor_key)))
                out.append((pag.limit, str(size)))
        if param_invalid and qmap is not None:
            rank = {name: i for i, name in enumerate(qmap.params)}
            param_invalid.sort(key=lambda f: rank.get(f.keys[0], len(rank)))
        invalid.extend(page_invalid)
        invalid.extend(param_invalid)
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
        params.pop(_ALREADY_NEW, None)
        if resp.status >= 400:
            return self._error_to_legacy(resp, req, params)
        kind = ep.response if ep is not None else ("record" if self.record else "pass")
        body = resp.body
        if kind == "pass":
            return resp
        if body is None:
            if resp.unparsed is not None and resp.status < 300:  # never relay it untranslated
                raise TranslationError(
                    self.name,
                    RESPONSE_TO_LEGACY,
                    "$",
                    f"the service answered a {kind} endpoint with a body the ACL cannot read "
                    f"({resp.unparsed}); it must answer JSON",
                )
            if 200 <= resp.status < 300 and resp.status not in (204, 205):
                # An empty 200 or 201 where the monolith sends the record or the page.
                raise TranslationError(
                    self.name,
                    RESPONSE_TO_LEGACY,
                    "$",
                    f"the service answered a {kind} endpoint {resp.status} with no body; "
                    f"it must answer the {kind} as JSON",
                )
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
        first = self.query is not None and self.query.repeated == "first"
        args = dict(reversed(req.query)) if first else dict(req.query)
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


def _canonical(params: dict[str, str], int_params: frozenset[str]) -> dict[str, str]:
    """`{id:int}` values as the number they are (`007` -> `7`), as a legacy framework's int
    path converter reads them: in the new path and in error messages alike."""
    for name in int_params:
        if name in params:  # ASCII digits (`[0-9]+`): no int(), which refuses 4300+ digits
            params[name] = params[name].lstrip("0") or "0"
    return params


def _one_of_each(
    query: tuple[tuple[str, str], ...], mapped: Mapping[str, _Param], last: bool
) -> tuple[tuple[str, str], ...]:
    """Only one occurrence (the last, or the first) of each mapped parameter. A legacy
    framework reads one value of `status=A&status=I` (Django, Rails and PHP the last), and
    the service may read another (aiohttp the first): forwarding both would answer a filter
    the client did not get from the monolith, silently."""
    seen: dict[str, int] = {}
    for i, (key, _) in enumerate(query):
        if key in mapped and (last or key not in seen):
            seen[key] = i
    if len(seen) == sum(1 for key, _ in query if key in mapped):
        return query  # nothing repeated
    return tuple(
        pair for i, pair in enumerate(query) if pair[0] not in mapped or seen[pair[0]] == i
    )


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
