"""Named conversions for YAML translators, and extra JMESPath functions for `compute:`.

Converters are pairs (to_new, to_legacy) so one declaration serves both directions and the
round-trip property can be checked. Each converter factory validates its arguments when the
translator is loaded, so a typo fails `strangler acl check`, not a live request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import jmespath
from jmespath import functions as jp_functions


class ConversionError(ValueError):
    """A value a converter cannot handle; the caller adds translator, direction and path."""


class ArgumentError(ValueError):
    """Bad converter arguments in a translator file; `fix` says what to write instead."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


@dataclass(frozen=True, slots=True)
class Codec:
    """One field's conversion in both directions. Both callables raise ConversionError."""

    to_new: Callable[[Any], Any]
    to_legacy: Callable[[Any], Any]


ConverterFactory = Callable[[Any], Codec]
CONVERTERS: dict[str, ConverterFactory] = {}


def converter(name: str) -> Callable[[ConverterFactory], ConverterFactory]:
    """Register `factory(args) -> Codec` as `convert: {name: args}` (Python translators and
    `acl/translators/*.py` may add their own)."""

    def deco(factory: ConverterFactory) -> ConverterFactory:
        CONVERTERS[name] = factory
        return factory

    return deco


def _type_name(value: Any) -> str:
    return {
        type(None): "null",
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        dict: "object",
        list: "array",
    }.get(type(value), type(value).__name__)


def _need_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ConversionError(f"expected {what} (a string), got {_type_name(value)} {value!r}")
    return value


# --- enum -----------------------------------------------------------------------------------


@converter("enum")
def enum(args: Any) -> Codec:
    """`{A: true, I: false}`: legacy code -> new value; reversed for to_legacy."""
    if isinstance(args, Mapping) and set(args) == {"values"}:
        args = args["values"]
    if not isinstance(args, Mapping) or not args:
        raise ArgumentError(
            "enum needs a mapping of legacy value -> new value",
            "write `convert: {enum: {A: true, I: false}}`",
        )
    forward: dict[Any, Any] = {}
    backward: dict[Any, Any] = {}
    for key, value in args.items():
        if isinstance(key, bool):
            raise ArgumentError(
                f"enum key {key!r} was read by YAML as a boolean",
                f"quote it: '{str(key).lower()}': ... (or 'Y'/'N' style codes in quotes)",
            )
        if isinstance(value, list | dict):
            raise ArgumentError(f"enum value for {key!r} must be a scalar, got {value!r}")
        # True == 1 in Python; key the reverse map by (type, value) so they stay distinct.
        rkey = (type(value), value)
        if rkey in backward:
            raise ArgumentError(
                f"enum maps both {backward[rkey][1]!r} and {key!r} to {value!r}, so it cannot "
                "be reversed",
                "give every legacy value its own new value",
            )
        forward[(type(key), key)] = value
        backward[rkey] = (type(key), key)
    legacy_values = ", ".join(repr(k) for _, k in forward)
    new_values = ", ".join(repr(v) for v in forward.values())

    def to_new(value: Any) -> Any:
        try:
            return forward[(type(value), value)]
        except (KeyError, TypeError):
            raise ConversionError(
                f"unknown enum value {value!r}; expected one of {legacy_values}"
            ) from None

    def to_legacy(value: Any) -> Any:
        try:
            return backward[(type(value), value)][1]
        except (KeyError, TypeError):
            raise ConversionError(
                f"unknown enum value {value!r}; expected one of {new_values}"
            ) from None

    return Codec(to_new, to_legacy)


# --- split / join ---------------------------------------------------------------------------

CASES: dict[str, Callable[[str], str]] = {
    "keep": lambda s: s,
    "upper": str.upper,
    "lower": str.lower,
    "title": str.title,
}


def _is_cased(c: str) -> bool:
    return c.isupper() or c.islower() or c.istitle()


def _per_char(func: Callable[[str], str], text: str, back: Callable[[str], str]) -> str:
    """`func(text)` one character at a time (str.title's word rule for `title`), keeping
    each character whose re-cased form does not come back to it under `back`."""
    out: list[str] = []
    after_cased = False
    for c in text:
        if func is str.title:
            t = c.lower() if after_cased else c.title()
            after_cased = _is_cased(c)
        else:
            t = func(c)
        out.append(t if back(t) == c else c)
    return "".join(out)


def lossless_case(func: Callable[[str], str], back: Callable[[str], str]) -> Callable[[str], str]:
    """`func` for a value in the other side's form (`back(text) == text`, `back` a casing,
    not `keep`), such that `back(result) == text` always holds. `str.title` then `str.upper` loses characters whose
    case pair is not one character: the Turkish `İ` (`"ÇİFTÇİ".title()` is `"Çi̇ftçi̇"`, which
    upper-cases to `I` + a combining dot), the capital `ẞ`, the Kelvin and Ohm signs. Those
    keep their legacy spelling (`"Çİftçİ"`) rather than coming back as other characters."""

    def apply(text: str) -> str:
        out = func(text)
        if back(out) == text or back(text) != text:
            return out
        out = _per_char(func, text, back)
        return out if back(out) == text else text

    return apply


@converter("split")
def split(args: Any) -> Codec:
    """`"DOE, Jane"` <-> `{family: "Doe", given: "Jane"}`: legacy joins parts with a separator,
    new keeps them as an object; `case` re-cases parts per side."""
    if not isinstance(args, Mapping):
        raise ArgumentError(
            "split needs `separator` and `parts`",
            "write `convert: {split: {separator: ', ', parts: [family, given]}}`",
        )
    unknown = set(args) - {"separator", "parts", "case", "strict"}
    if unknown:
        raise ArgumentError(
            f"split has no argument {sorted(unknown)[0]!r}",
            "allowed: separator, parts, case, strict",
        )
    strict = args.get("strict", False)
    if not isinstance(strict, bool):
        raise ArgumentError("split.strict must be true or false")
    sep = args.get("separator")
    parts = args.get("parts")
    if not isinstance(sep, str) or not sep:
        raise ArgumentError("split.separator must be a non-empty string", "e.g. separator: ', '")
    if not isinstance(parts, list) or len(parts) < 2 or not all(isinstance(p, str) for p in parts):
        raise ArgumentError(
            "split.parts must list at least two part names in legacy order",
            "e.g. parts: [family, given]",
        )
    cases = args.get("case") or {}
    legacy_case: dict[str, Callable[[str], str]] = {}
    new_case: dict[str, Callable[[str], str]] = {}
    if not isinstance(cases, Mapping):
        raise ArgumentError("split.case must map a part to {legacy: CASE, new: CASE}")
    for part, spec in cases.items():
        if part not in parts:
            raise ArgumentError(f"split.case names {part!r}, which is not in parts {parts}")
        if not isinstance(spec, Mapping) or not set(spec) <= {"legacy", "new"}:
            raise ArgumentError(
                f"split.case.{part} must be {{legacy: CASE, new: CASE}}",
                f"cases: {', '.join(CASES)}",
            )
        for side, table in (("legacy", legacy_case), ("new", new_case)):
            name = spec.get(side, "keep")
            if name not in CASES:
                raise ArgumentError(
                    f"split.case.{part}.{side}: unknown case {name!r}", f"one of {', '.join(CASES)}"
                )
            table[part] = CASES[name]
        # Legacy -> new must come back: re-case to new only as far as legacy re-cases back
        # (a legacy side that keeps any case promises no way back to check against).
        if spec.get("legacy", "keep") != "keep":
            new_case[part] = lossless_case(new_case[part], legacy_case[part])
    example = sep.join(f"<{p}>" for p in parts)
    n = len(parts) - 1

    def to_new(value: Any) -> Any:
        text = _need_str(value, f"'{example}'")
        pieces = text.split(sep, n)
        if len(pieces) != len(parts) or not all(pieces):
            raise ConversionError(f"expected '{example}', got {text!r}")
        if strict:
            for p, v in zip(parts, pieces, strict=True):
                if v != v.strip() or (p in legacy_case and legacy_case[p](v) != v):
                    raise ConversionError(f"{p} {v!r} in {text!r} is not in the legacy form")
        return {
            p: (new_case[p](v) if p in new_case else v) for p, v in zip(parts, pieces, strict=True)
        }

    def to_legacy(value: Any) -> Any:
        if not isinstance(value, dict):
            raise ConversionError(
                f"expected an object with {', '.join(parts)}, got {_type_name(value)} {value!r}"
            )
        pieces = []
        for i, p in enumerate(parts):
            piece = value.get(p)
            if not isinstance(piece, str) or not piece:
                raise ConversionError(f"{p}: expected a non-empty string, got {piece!r}")
            if i < n and sep in piece:
                raise ConversionError(f"{p}: {piece!r} contains the separator {sep!r}")
            pieces.append(legacy_case[p](piece) if p in legacy_case else piece)
        return sep.join(pieces)

    return Codec(to_new, to_legacy)


# --- timestamps -----------------------------------------------------------------------------

_COMPACT = re.compile(r"\d{14}")


def _parse_compact(text: str) -> datetime:
    if not _COMPACT.fullmatch(text):
        raise ValueError
    return datetime(
        int(text[0:4]), int(text[4:6]), int(text[6:8]),
        int(text[8:10]), int(text[10:12]), int(text[12:14]),
    )  # fmt: skip


def _format_compact(d: datetime) -> str:
    return f"{d.year:04d}{d.month:02d}{d.day:02d}{d.hour:02d}{d.minute:02d}{d.second:02d}"


def _parse_iso(text: str) -> datetime:
    if len(text) < 19 or text[10] not in "Tt ":
        raise ValueError
    d = datetime.fromisoformat(text)
    if d.tzinfo is None:
        raise ValueError  # a bare local time is ambiguous
    return d.astimezone(UTC).replace(tzinfo=None)


def _format_iso(d: datetime) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}Z"


TIME_FORMATS: dict[str, tuple[Callable[[str], datetime], Callable[[datetime], str], str]] = {
    "compact": (_parse_compact, _format_compact, "YYYYMMDDHHMMSS"),
    "iso8601": (_parse_iso, _format_iso, "ISO-8601 with a UTC offset, e.g. 2024-01-02T03:04:05Z"),
}


def _time_format(spec: Any, side: str) -> tuple[Callable[[str], datetime], Callable, str]:
    if spec in TIME_FORMATS:
        return TIME_FORMATS[spec]
    if isinstance(spec, str) and "%" in spec:
        fmt = spec

        def parse(text: str) -> datetime:
            d = datetime.strptime(text, fmt)
            return d.astimezone(UTC).replace(tzinfo=None) if d.tzinfo else d

        try:  # a bad directive (`%Q`) is written as is, and only the first read fails
            parse(datetime(2001, 2, 3).strftime(fmt))
        except ValueError as exc:
            raise ArgumentError(
                f"timestamp.{side}: {fmt!r} does not read back what it writes ({exc})",
                "use strftime directives (%Y %m %d %H %M %S ...), or compact / iso8601",
            ) from None
        return parse, lambda d: d.strftime(fmt), f"strftime {fmt!r}"
    raise ArgumentError(
        f"timestamp.{side}: unknown format {spec!r}",
        f"use one of {', '.join(TIME_FORMATS)} or a strftime pattern like '%Y-%m-%d %H:%M:%S'",
    )


@converter("timestamp")
def timestamp(args: Any) -> Codec:
    """UTC instants between two textual formats, e.g. `{legacy: compact, new: iso8601}`."""
    if not isinstance(args, Mapping) or set(args) != {"legacy", "new"}:
        raise ArgumentError(
            "timestamp needs exactly `legacy` and `new` formats",
            "write `convert: {timestamp: {legacy: compact, new: iso8601}}`",
        )
    lparse, lformat, ldesc = _time_format(args["legacy"], "legacy")
    nparse, nformat, ndesc = _time_format(args["new"], "new")

    def to_new(value: Any) -> Any:
        text = _need_str(value, ldesc)
        try:
            return nformat(lparse(text))
        except ValueError:
            raise ConversionError(f"expected {ldesc}, got {text!r}") from None

    def to_legacy(value: Any) -> Any:
        text = _need_str(value, ndesc)
        try:
            return lformat(nparse(text))
        except ValueError:
            raise ConversionError(f"expected {ndesc}, got {text!r}") from None

    return Codec(to_new, to_legacy)


# --- numbers --------------------------------------------------------------------------------

_INT_TEXT = re.compile(r"-?(0|[1-9][0-9]*)")


@converter("cents")
def cents(args: Any) -> Codec:
    """Legacy integer cents as a string (`"1999"`) <-> a decimal amount (`"19.99"`, or a JSON
    number with `{as: number}`). Amounts with fractions of a cent are refused, never rounded."""
    args = args or {}
    if (
        not isinstance(args, Mapping)
        or not set(args) <= {"as"}
        or args.get("as", "string")
        not in (
            "string",
            "number",
        )
    ):
        raise ArgumentError(
            "cents takes only `as: string|number`", "e.g. convert: {cents: {as: string}}"
        )
    as_number = args.get("as") == "number"

    def to_new(value: Any) -> Any:
        text = _need_str(value, "integer cents like '1999'")
        if not _INT_TEXT.fullmatch(text):
            raise ConversionError(f"expected integer cents like '1999', got {text!r}")
        amount = Decimal(int(text)).scaleb(-2)
        if not as_number:
            return f"{amount:.2f}"
        number = float(amount)
        if Decimal(repr(number)) != amount:  # a double holds ~15 digits: no silent rounding
            raise ConversionError(
                f"{text!r} cents is not exact as a JSON number ({number!r}); "
                "use cents: {as: string} for amounts this large"
            )
        return number

    def to_legacy(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConversionError(f"expected a decimal amount, got {_type_name(value)} {value!r}")
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise ConversionError(
                f"expected a decimal amount like '19.99', got {value!r}"
            ) from None
        if not amount.is_finite():
            raise ConversionError(f"expected a finite amount, got {value!r}")
        scaled = amount.scaleb(2)
        if scaled != scaled.to_integral_value():
            raise ConversionError(f"{value!r} has fractions of a cent")
        return str(int(scaled))

    return Codec(to_new, to_legacy)


@converter("int_string")
def int_string(args: Any) -> Codec:
    """Legacy integers kept as strings (`"17"`) <-> JSON integers."""
    if args not in (None, {}):
        raise ArgumentError("int_string takes no arguments", "write `convert: int_string`")

    def to_new(value: Any) -> Any:
        text = _need_str(value, "an integer string like '17'")
        if not _INT_TEXT.fullmatch(text):
            raise ConversionError(f"expected an integer string like '17', got {text!r}")
        return int(text)

    def to_legacy(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConversionError(f"expected an integer, got {_type_name(value)} {value!r}")
        return str(value)

    return Codec(to_new, to_legacy)


@converter("case")
def case(args: Any) -> Codec:
    """Re-case a string per side: `{legacy: upper, new: title}`."""
    if not isinstance(args, Mapping) or not set(args) <= {"legacy", "new"}:
        raise ArgumentError("case needs {legacy: CASE, new: CASE}", f"cases: {', '.join(CASES)}")
    funcs = {}
    for side in ("legacy", "new"):
        name = args.get(side, "keep")
        if name not in CASES:
            raise ArgumentError(f"case.{side}: unknown case {name!r}", f"one of {', '.join(CASES)}")
        funcs[side] = CASES[name]
    legacy_fn, new_fn = funcs["legacy"], funcs["new"]
    if args.get("legacy", "keep") != "keep":  # see split: only a casing legacy side comes back
        new_fn = lossless_case(new_fn, legacy_fn)
    return Codec(lambda v: new_fn(_need_str(v, "text")), lambda v: legacy_fn(_need_str(v, "text")))


# --- JMESPath functions for `compute:` expressions -----------------------------------------


@dataclass(frozen=True, slots=True)
class ExpressionFunction:
    func: Callable[..., Any]  # func(context, *args)
    signature: tuple[dict, ...]


EXPRESSION_FUNCTIONS: dict[str, ExpressionFunction] = {}


def expression_function(
    name: str, *types: list[str] | str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `func(context, *args)` as a JMESPath function usable in `compute:`.
    `types` per argument, JMESPath type names (`string`, `array`, `null`, ...); a trailing
    `"..."` makes the last argument variadic. `context` is the translator's `ExprContext`."""
    sig: list[dict] = []
    for spec in types:
        if spec == "...":
            sig[-1]["variadic"] = True
        else:
            sig.append({"types": [spec] if isinstance(spec, str) else list(spec)})

    def deco(func: Callable[..., Any]) -> Callable[..., Any]:
        EXPRESSION_FUNCTIONS[name] = ExpressionFunction(func, tuple(sig))
        return func

    return deco


@dataclass(frozen=True, slots=True)
class ExprContext:
    """What translator-aware functions may know: its name and new->legacy field names."""

    translator: str
    legacy_names: Mapping[str, str]


@expression_function("now_iso")
def _now_iso(ctx: ExprContext) -> str:
    """The current UTC time, ISO-8601 with microseconds (like Django's timezone.now())."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@expression_function("random_hex", "number")
def _random_hex(ctx: ExprContext, nbytes: float) -> str:
    return os.urandom(int(nbytes)).hex()


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


@expression_function("trace_id", ["string", "null"])
def _trace_id(ctx: ExprContext, traceparent: str | None) -> str:
    """The W3C trace id from a `traceparent` header (the proxy's own span), else random."""
    if traceparent:
        m = _TRACEPARENT.fullmatch(traceparent.strip())
        if m and m.group(1) != "0" * 32:
            return m.group(1)
    return os.urandom(16).hex()


@expression_function("upper", "string")
def _upper(ctx: ExprContext, text: str) -> str:
    return text.upper()


@expression_function("lower", "string")
def _lower(ctx: ExprContext, text: str) -> str:
    return text.lower()


@expression_function("title", "string")
def _title(ctx: ExprContext, text: str) -> str:
    return text.title()


@expression_function("concat", ["string", "number", "null"], "...")
def _concat(ctx: ExprContext, *parts: Any) -> str:
    return "".join("" if p is None else str(p) for p in parts)


@expression_function("regex_replace", ["string", "null"], "string", "string")
def _regex_replace(ctx: ExprContext, text: str | None, pattern: str, replacement: str) -> str:
    """`re.sub` for message rewording; null reads as the empty string."""
    return re.sub(pattern, replacement, text or "")


@expression_function("legacy_field", "string")
def _legacy_field(ctx: ExprContext, name: str) -> str:
    """A new-model field (or query parameter) name -> the legacy name clients know."""
    return _legacy_name(ctx, name)


@expression_function("legacy_fields", ["array", "null"], ["object", "null"])
def _legacy_fields(ctx: ExprContext, errors: list | None, messages: dict | None) -> dict:
    """`[{field: email, message: m}]` -> `{email_addr: [m]}`: the service's 422 details in the
    monolith's `fields` shape, with legacy names and (optionally) legacy message texts."""
    out: dict[str, list[str]] = {}
    for item in errors or []:
        if not isinstance(item, dict):
            continue
        name = str(item.get("field", "non_field_errors"))
        message = str(item.get("message", ""))
        if messages:
            message = messages.get(message, message)
        messages_for_field = out.setdefault(_legacy_name(ctx, name), [])
        if message not in messages_for_field:  # name.given + name.family -> one cust_nm entry
            messages_for_field.append(message)
    return out


def _legacy_name(ctx: ExprContext, name: str) -> str:
    """`name.given` -> the legacy field holding `name` when only the parent is mapped."""
    if name in ctx.legacy_names:
        return ctx.legacy_names[name]
    probe = name
    while probe:
        if probe in ctx.legacy_names:
            return ctx.legacy_names[probe]
        probe = probe.rpartition(".")[0]
    return name


def known_function_names() -> set[str]:
    """Built-in JMESPath functions plus everything registered above (for load-time checks)."""
    return set(jp_functions.Functions.FUNCTION_TABLE) | set(EXPRESSION_FUNCTIONS)


def make_options(ctx: ExprContext) -> jmespath.Options:
    """JMESPath options whose custom functions see `ctx`. Built when a translator loads."""
    namespace: dict[str, Any] = {}
    for name, spec in EXPRESSION_FUNCTIONS.items():

        def method(self: Any, *args: Any, _f: Callable = spec.func) -> Any:
            return _f(ctx, *args)

        namespace[f"_func_{name}"] = jp_functions.signature(*spec.signature)(method)
    cls = type("ACLFunctions", (jp_functions.Functions,), namespace)
    return jmespath.Options(custom_functions=cls())


def function_names_in(ast: dict) -> list[str]:
    """Every function a parsed JMESPath expression calls."""
    names = []
    stack = [ast]
    while stack:
        node = stack.pop()
        if node.get("type") == "function_expression":
            names.append(node["value"])
        stack.extend(c for c in node.get("children", ()) if isinstance(c, dict))
    return names
