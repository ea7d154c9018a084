"""Syntax of the paths a route table contains: match paths, `{param}` templates, rewrites.

Request paths are normalized before routing (`proxy.pathsafety`), so a route path that is
not in normal form could never match; these checks catch that at load time instead of as
a mysterious 404-to-legacy in production.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from proxy.config.model import Route
from proxy.config.problems import Invalid

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PARAM_SEGMENT = re.compile(r"\{([^{}/]*)\}\Z")
_REWRITE_PARAM = re.compile(r"\{([^{}/]*)\}")
_ESCAPE = re.compile(r"%(.{0,2})")
_HEX2 = re.compile(r"[0-9A-F]{2}\Z")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class TemplateError(Invalid):
    """A malformed path or template."""


def check_path(path: str, what: str = "path") -> None:
    """Raise `TemplateError` unless `path` is an absolute path in normal form."""
    if not path.startswith("/"):
        raise TemplateError(f"{what} must start with '/'", f"write '/{path}'")
    for bad, name in (("?", "a query string"), ("#", "a fragment")):
        if bad in path:
            raise TemplateError(
                f"{what} must not contain {name} ({bad!r})", "match on the path only"
            )
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise TemplateError(
            f"{what} contains whitespace or a control character",
            "percent-encode it, e.g. %20 for a space",
        )
    if "\\" in path:
        raise TemplateError(f"{what} contains a backslash", "use '/' to separate segments")
    if "//" in path:
        raise TemplateError(
            f"{what} contains an empty segment ('//'); requests are normalized with "
            "slashes merged, so it could never match",
            f"write {re.sub('/+', '/', path)!r}",
        )
    segments = path.split("/")[1:]
    if any(seg in (".", "..") for seg in segments):
        raise TemplateError(
            f"{what} contains a '.' or '..' segment; requests are normalized with dot "
            "segments resolved, so it could never match",
            "write the resolved path",
        )
    for m in _ESCAPE.finditer(path):
        code = m.group(1) or ""
        if not _HEX2.match(code):
            hint = "upper-case hex" if _HEX2.match(code.upper()) else "two hex digits"
            raise TemplateError(f"{what} has a malformed escape '%{code}'", f"use %XX with {hint}")
        char = chr(int(code, 16))
        if char in _UNRESERVED:
            raise TemplateError(
                f"{what} escapes {char!r} as '%{code}'; requests are normalized with it "
                "decoded, so it could never match",
                f"write {char!r} instead",
            )
        if char in "/\\" or code == "00":
            raise TemplateError(
                f"{what} contains '%{code}', which requests may not carry", "remove it"
            )


def template_params(path: str) -> list[str]:
    """The `{param}` names of a match path template, in order; raise `TemplateError`.

    A parameter is a whole segment (`/customers/{id}`, not `/customers/id-{id}`) so a
    template matches exactly one segment per parameter, the same as the router's trie.
    """
    names: list[str] = []
    for seg in path.split("/")[1:]:
        if "{" not in seg and "}" not in seg:
            continue
        m = _PARAM_SEGMENT.match(seg)
        if m is None:
            if seg.count("{") != seg.count("}"):
                raise TemplateError(
                    f"unbalanced brace in segment {seg!r}", "write a parameter as {name}"
                )
            raise TemplateError(
                f"parameter in segment {seg!r} must be the whole segment",
                "write it as its own segment, e.g. /items/{id}, or use match.regex "
                "with a named group",
            )
        name = m.group(1)
        _check_name(name)
        if name in names:
            raise TemplateError(
                f"parameter {name!r} appears twice", "give each parameter its own name"
            )
        names.append(name)
    return names


def rewrite_params(template: str) -> list[str]:
    """The `{param}` names a rewrite template uses; raise `TemplateError` when malformed."""
    names: list[str] = []
    stripped = _REWRITE_PARAM.sub(lambda m: "", template)
    if "{" in stripped or "}" in stripped:
        raise TemplateError("unbalanced brace", "write a parameter as {name}")
    for m in _REWRITE_PARAM.finditer(template):
        _check_name(m.group(1))
        names.append(m.group(1))
    return names


def _check_name(name: str) -> None:
    if not _IDENT.match(name):
        raise TemplateError(
            f"{name!r} is not a valid parameter name" if name else "empty parameter name {}",
            "use letters, digits and '_', not starting with a digit, e.g. {customer_id}",
        )


def rewrite_path(route: Route, path: str, params: Mapping[str, str]) -> str:
    """The path sent to a route's target, as docs/routes.md defines `rewrite`.

    A prefix route's rewrite replaces the matched prefix and keeps the rest, so one route
    moves a whole subtree (`/api/products/7` -> `/v1/products/7`); a path or regex route's
    rewrite is the whole new path with its `{param}`s filled from the match.
    """
    template = route.rewrite
    if template is None:
        return path
    prefix = route.match.prefix
    if prefix is not None:
        rest = path if prefix == "/" else path[len(prefix) :]
        return (template.rstrip("/") + rest) or "/"
    return _REWRITE_PARAM.sub(lambda m: params[m.group(1)], template)
