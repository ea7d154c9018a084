"""Typed reads from PyYAML's composed node tree, collecting problems instead of raising.

The loader reads `yaml.compose` nodes rather than `yaml.safe_load` data because nodes keep
their line numbers, which every message needs. Reading is schema-driven by the caller:
each accessor checks one value's type and range, records a `Problem` when it is wrong and
returns a usable default, so validation continues and reports everything in one pass.

String fields take the scalar's source text, not PyYAML's YAML 1.1 reading of it: `noise:
off` means the word "off", not `False`, and a tenant called `no` stays "no".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from proxy.config.problems import Problem, did_you_mean

_TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_SCALAR_TAGS = {STR, INT, FLOAT, BOOL, NULL, _TAG + "timestamp", _TAG + "binary"}
_STANDARD_TAGS = _SCALAR_TAGS | {_TAG + "map", _TAG + "seq"}
_ROUTE_INDEX = re.compile(r"^routes\[(\d+)\]")

Fields = dict[str, Node]  # key -> value node of one YAML mapping

# What to write for a required key that is missing, by key; others get a generic line.
_REQUIRED_FIX = {
    "version": "add `version: 1` as the first line",
    "upstreams": 'add `upstreams:` with the monolith, e.g. `legacy: {url: "http://127.0.0.1:8000"}`',
    "name": "add `name: ...`, unique in the file (letters, digits, '.', '_', '-')",
    "match": "add `match:` with one of path, prefix or regex, e.g. `match: {prefix: /api/orders}`",
    "url": 'add `url: "http://host:port"`',
    "upstream": "add `upstream: NAME`, the upstream that answers the check (the monolith)",
    "path": "add `path: /...`, the path the check is asked with GET",
    "requests": "add `requests: N`, how many requests per `per` seconds",
    "regex": "add `regex: '...'`, or give the header's value as a plain string",
}


def line_of(node: Node) -> int:
    """1-based line where `node` starts."""
    return node.start_mark.line + 1


def describe(node: Node) -> str:
    """How a wrong value reads in a message: its text, or what kind of thing it is."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == NULL:
        return "nothing (null)"
    text = node.value if len(node.value) <= 60 else node.value[:57] + "..."
    if node.tag == STR and node.style in ("'", '"'):
        return f"the quoted string {text!r}"
    return repr(text)


class Reader:
    """Reads one document's nodes; `problems` collects what is wrong, in reading order."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self.route_names: dict[int, str] = {}  # routes[i] -> name, for problem context
        self._constructor = SafeConstructor()
        # A block mapping or list starts on the line after its key; problems about the
        # whole value point at the key, where the reader looks for it.
        self._key_lines: dict[int, int] = {}

    # -- reporting -------------------------------------------------------------------

    def report(
        self, where: Node | int | None, field: str, message: str, fix: str | None = None
    ) -> None:
        line = self._key_lines.get(id(where), line_of(where)) if isinstance(where, Node) else where
        route = None
        m = _ROUTE_INDEX.match(field)
        if m:
            route = self.route_names.get(int(m.group(1)))
        self.problems.append(Problem(self.source, line, route, field, message, fix))

    def wrong(self, node: Node, field: str, expected: str, fix: str | None) -> None:
        tag = getattr(node, "tag", "")
        if tag and tag not in _STANDARD_TAGS:  # `!!python/object/apply:os.system [...]`
            self.report(node, field, f"unsupported YAML tag {tag!r}", "remove the tag")
            return
        self.report(node, field, f"expected {expected}, got {describe(node)}", fix)

    # -- containers ------------------------------------------------------------------

    def mapping(
        self,
        node: Node,
        field: str,
        allowed: Collection[str],
        *,
        required: Collection[str] = (),
        what: str = "",
        elsewhere: Mapping[str, str] | None = None,
        hints: Mapping[str, str] | None = None,
        extensions: bool = False,
    ) -> Fields | None:
        """The key -> value nodes of a mapping with a fixed set of keys.

        Unknown keys (with a did-you-mean, where they belong per `elsewhere`, or the fix
        `hints` gives for them), duplicate keys and missing required keys are reported;
        merge keys (`<<: *x`) are honoured.
        With `extensions`, keys starting with `x-` are ignored: a place for YAML anchors
        shared by several routes (docker-compose's extension fields).
        """
        if not isinstance(node, MappingNode):
            hint = f"write {what or field} as `key: value` lines indented under it"
            self.wrong(node, field, "a mapping", hint)
            return None
        if not self._standard_tag(node, field, _TAG + "map"):
            return None
        fields = self.keyed(node, field)
        if fields is None:
            return None
        prefix = f"{field}." if field else ""
        for key, (key_node, _) in fields.items():
            if extensions and key.startswith("x-"):
                continue
            if key not in allowed:
                if elsewhere and key in elsewhere:
                    fix = f"it belongs under {elsewhere[key]}: write `{elsewhere[key]}: {{{key}: ...}}`"
                elif hints and key in hints:
                    fix = hints[key]
                else:
                    fix = did_you_mean(key, allowed) or "allowed keys here: " + ", ".join(allowed)
                self.report(key_node, prefix + key, f"unknown key {key!r}", fix)
        for key in required:
            if key not in fields:
                fix = _REQUIRED_FIX.get(key, f"add `{key}: ...` to {what or field}")
                self.report(node, prefix + key, f"missing required key {key!r}", fix)
        return {k: v for k, (_, v) in fields.items() if k in allowed}

    def keyed(self, node: MappingNode, field: str) -> dict[str, tuple[Node, Node]] | None:
        """key -> (key node, value node) of any mapping; reports duplicate and non-string keys."""
        prefix = f"{field}." if field else ""
        seen: dict[str, Node] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _TAG + "merge":
                key = key_node.value
                if key in seen:
                    self.report(
                        key_node,
                        prefix + key,
                        f"duplicate key {key!r} (first at line {line_of(seen[key])})",
                        "remove one of them: YAML would silently keep only the last",
                    )
                seen[key] = key_node
        try:
            self._constructor.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            self.report(
                exc.problem_mark.line + 1 if exc.problem_mark else node,
                field,
                f"bad merge key: {exc.problem}",
                "merge (<<) only mappings",
            )
            return None
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == NULL:
                self.report(key_node, field, "keys must be plain names", "write `name: value`")
                continue
            out[key_node.value] = (key_node, value_node)
            if not isinstance(value_node, ScalarNode):
                self._key_lines[id(value_node)] = line_of(key_node)
        return out

    def _standard_tag(self, node: Node, field: str, tag: str) -> bool:
        """Explicit tags (`!!python/object`, `!env`) are not part of the format."""
        if node.tag == tag:
            return True
        self.report(node, field, f"unsupported YAML tag {node.tag!r}", "remove the tag")
        return False

    def sequence(
        self, node: Node, field: str, *, scalar_ok: bool = False, fix: str | None = None
    ) -> list[Node]:
        """The items of a list; `scalar_ok` lets a single value stand for a list of one."""
        if isinstance(node, SequenceNode):
            return list(node.value) if self._standard_tag(node, field, _TAG + "seq") else []
        if scalar_ok and isinstance(node, ScalarNode) and node.tag != NULL:
            return [node]
        if isinstance(node, ScalarNode) and node.tag == NULL:
            return []
        self.wrong(node, field, "a list", fix or f"write {field.rsplit('.', 1)[-1]}: [a, b]")
        return []

    # -- scalars ---------------------------------------------------------------------

    def _scalar_ok(self, node: Node, field: str, expected: str, fix: str | None) -> bool:
        if not isinstance(node, ScalarNode):
            self.wrong(node, field, expected, fix)
            return False
        if node.tag not in _SCALAR_TAGS:
            self.report(node, field, f"unsupported YAML tag {node.tag!r}", "remove the tag")
            return False
        return True

    def text(
        self,
        node: Node | None,
        field: str,
        default: str | None = None,
        *,
        choices: Sequence[str] | None = None,
        check: Callable[[str], str | None] | None = None,
        fix: str | None = None,
        required: bool = False,
    ) -> str | None:
        """A string; `check` returns an error message for a bad value, or None.

        `null` means "not set" for an optional field; a `required` field reports it.
        """
        if node is None:
            return default
        if isinstance(node, ScalarNode) and node.tag == NULL:
            if required:
                self.report(node, field, "expected a value, got nothing (null)", fix)
                return None
            if default is None:
                return None
            self.report(
                node,
                field,
                "expected a value, got nothing (null)",
                fix or f"remove the key to use the default ({default!r})",
            )
            return default
        if not self._scalar_ok(node, field, "a string", fix):
            return default
        value = node.value
        if choices is not None and value not in choices:
            alt = did_you_mean(value, choices) or "use one of: " + ", ".join(choices)
            self.report(node, field, f"unknown value {value!r}", alt)
            return default
        if check is not None:
            error = check(value)
            if error is not None:
                self.report(node, field, error, fix)
                return default
        return value

    def integer(
        self,
        node: Node | None,
        field: str,
        default: int,
        *,
        lo: int | None = None,
        hi: int | None = None,
    ) -> int:
        """A whole number within [lo, hi]."""
        rng = _range_text(lo, hi)
        fix = f"use a whole number{rng}"
        if node is None:
            return default
        if not self._scalar_ok(node, field, "a whole number", fix):
            return default
        if node.tag != INT:
            self.wrong(node, field, "a whole number", _unquote_fix(node, fix))
            return default
        value = self._constructor.construct_yaml_int(node)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.report(node, field, f"{value} is out of range", fix)
            return default
        return value

    def number(
        self,
        node: Node | None,
        field: str,
        default: float | None,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        nullable: bool = False,
        unit: str = "",
    ) -> float | None:
        """A finite number within the range; `nullable` lets `null` mean "no limit"."""
        rng = _range_text(lo, hi, lo_open)
        fix = f"use a number{rng}{unit}" + (" or null for no limit" if nullable else "")
        if node is None:
            return default
        if isinstance(node, ScalarNode) and node.tag == NULL:
            if nullable:
                return None
            self.report(node, field, "expected a number, got nothing (null)", fix)
            return default
        if not self._scalar_ok(node, field, "a number", fix):
            return default
        if node.tag == INT:
            value = float(self._constructor.construct_yaml_int(node))
        elif node.tag == FLOAT:
            value = self._constructor.construct_yaml_float(node)
        else:
            self.wrong(node, field, "a number", _unquote_fix(node, fix))
            return default
        if not math.isfinite(value):
            self.report(node, field, f"{node.value} is not a finite number", fix)
            return default
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        if too_low or (hi is not None and value > hi):
            self.report(node, field, f"{node.value} is out of range", fix)
            return default
        return value

    def boolean(self, node: Node | None, field: str, default: bool) -> bool:
        if node is None:
            return default
        fix = "use true or false"
        if not self._scalar_ok(node, field, "true or false", fix):
            return default
        if node.tag != BOOL:
            self.wrong(node, field, "true or false", fix)
            return default
        return bool(self._constructor.construct_yaml_bool(node))

    def texts(
        self,
        node: Node | None,
        field: str,
        *,
        check: Callable[[str], str | None] | None = None,
        fix: str | None = None,
    ) -> list[tuple[str, Node]]:
        """A list of strings (a single string counts as a list of one), with their nodes."""
        if node is None:
            return []
        out: list[tuple[str, Node]] = []
        for i, item in enumerate(self.sequence(node, field, scalar_ok=True)):
            item_field = f"{field}[{i}]" if isinstance(node, SequenceNode) else field
            if isinstance(item, ScalarNode) and item.tag == NULL:
                self.report(item, item_field, "empty list item", "remove it or give a value")
                continue
            value = self.text(item, item_field, fix=fix, check=check)
            if value is not None:
                out.append((value, item))
        return out


def _range_text(lo: float | None, hi: float | None, lo_open: bool = False) -> str:
    def fmt(v: float) -> str:
        return str(int(v)) if float(v).is_integer() else str(v)

    if lo is not None and hi is not None:
        return (
            f" from {fmt(lo)} to {fmt(hi)}" if not lo_open else f" above {fmt(lo)} up to {fmt(hi)}"
        )
    if lo is not None:
        return f" above {fmt(lo)}" if lo_open else f" of at least {fmt(lo)}"
    if hi is not None:
        return f" of at most {fmt(hi)}"
    return ""


# What YAML 1.1 (PyYAML) reads as text although it looks like a number: exponent notation
# without a dot or without the exponent's sign (`1e3`, `1.5e3`); `1.0e+3` is a number.
_EXPONENT_AS_TEXT = re.compile(r"[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+")


def _unquote_fix(node: ScalarNode, fix: str) -> str:
    if node.tag == STR and node.style in ("'", '"'):
        return fix + " (without quotes)"
    if node.tag == STR and _EXPONENT_AS_TEXT.fullmatch(node.value):
        mantissa, exponent = re.split("[eE]", node.value)
        mantissa = mantissa if "." in mantissa else mantissa + ".0"
        exponent = exponent if exponent[0] in "+-" else "+" + exponent
        return fix + (
            f"; YAML 1.1 reads {node.value} as text: write {mantissa}e{exponent} "
            "or the number in full"
        )
    return fix
