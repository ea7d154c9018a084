"""One canonical path, used both to route and to forward. Pure.

A proxy that routes by one reading of a path while the upstream resolves another is an
access-control bypass (`/public/..%2fadmin`). Strangler normalizes what is unambiguous and
rejects what is not, then routes *and* forwards the normalized path:

* percent-encoded unreserved characters are decoded (`%7E` → `~`, `%61` → `a`, RFC 3986
  §6.2.2.2) and other escapes upper-cased, so `/api/%63ustomers` routes as `/api/customers`;
* runs of slashes are merged (`//a///b` → `/a/b`), as Envoy's `merge_slashes`;
* dot segments are resolved (`/a/./b/../c` → `/a/c`, RFC 3986 §5.2.4);
* rejected with 400: an encoded dot (`%2e`), slash (`%2f`) or backslash (`%5c`), a raw
  backslash, a fragment (`#`), NUL or other control characters, and paths that do not
  start with `/`
  (upstreams disagree on what these mean, so no reading of them is safe).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_FORBIDDEN_ESCAPES = frozenset({0x2E, 0x2F, 0x5C, 0x00})


class UnsafePath(ValueError):
    """The path cannot be given one unambiguous meaning; answer 400."""


def _decode_unreserved(match: re.Match[str]) -> str:
    code = int(match.group(1), 16)
    if code in _FORBIDDEN_ESCAPES:
        raise UnsafePath(f"encoded {chr(code)!r} (%{match.group(1)}) in path")
    if code in _UNRESERVED:
        return chr(code)
    return "%" + match.group(1).upper()


_DOT_PARAMS = re.compile(r"/\.{1,2};")


def without_params(path: str) -> str:
    """`path` as servers that drop `;` path parameters (Tomcat, Jetty, Spring) read it:
    `/admin;jsessionid=1/x` is `/admin/x` to them."""
    return "/".join(seg.split(";", 1)[0] for seg in path.split("/"))


def normalize_path(raw: str) -> str:
    """The canonical form of a request path (no query string), or raise `UnsafePath`."""
    if not raw.startswith("/"):
        raise UnsafePath("path must start with '/'")
    if "\\" in raw:
        raise UnsafePath("backslash in path")
    if "#" in raw:
        raise UnsafePath("fragment ('#') in request target: clients must not send it")
    for ch in raw:
        if ord(ch) < 0x21 or ord(ch) == 0x7F:
            raise UnsafePath("control character or space in path")
    if "%" in raw:
        if _BAD_ESCAPE.search(raw):
            raise UnsafePath("malformed percent-escape in path")
        raw = _ESCAPE.sub(_decode_unreserved, raw)
    if ";" in raw and _DOT_PARAMS.search(raw):
        # Tomcat, Jetty and Spring read `..;x` as `..`: the upstream would climb where the
        # router did not (a `/public/..;/admin` reaching /admin on the legacy route).
        raise UnsafePath("a dot segment with ';' parameters ('..;', '.;') in path")
    if "//" not in raw and "/." not in raw:
        return raw  # the common case: already canonical
    segments = raw.split("/")
    out: list[str] = []
    for seg in segments[1:]:
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    trailing = segments[-1] in ("", ".", "..") and len(out) > 0
    path = "/" + "/".join(out)
    if trailing:
        path += "/"
    return path


# -- request-target forms (RFC 9112 §3.2) ----------------------------------------------------------

_ABSOLUTE = re.compile(r"(?i:https?)://([^/?#]*)([^?#]*)(?:\?([^#]*))?")


@dataclass(frozen=True, slots=True)
class RequestTarget:
    """A request-target split into what routing and forwarding need.

    `form` is "origin" (`/a?b`), "absolute" (`http://host/a?b`) or "asterisk" (`*`, only
    with OPTIONS). `authority` is set for the absolute form only: RFC 9112 §3.2.2 says it
    replaces the Host header, so the proxy routes by it *and* forwards it as Host, and the
    two can never disagree.
    """

    form: str
    path: str
    query: str | None  # None: no '?' at all; "" for a bare '?' (forwarded as sent)
    authority: str | None = None


def parse_target(method: str, raw: str) -> RequestTarget:
    """Classify and split a raw request-target; raise `UnsafePath` for forms not served.

    CONNECT (authority-form) is refused: this is a reverse proxy, not a tunnel. `*` is
    only meaningful with OPTIONS (RFC 9112 §3.2.4). An absolute-form target must be http
    or https with a non-empty authority and no userinfo. The path is not normalized here
    (see `normalize_path`).
    """
    if method == "CONNECT":
        raise UnsafePath("CONNECT is not supported: this proxy does not open tunnels")
    if "#" in raw:
        raise UnsafePath("fragment ('#') in request target: clients must not send it")
    if raw == "*":
        if method != "OPTIONS":
            raise UnsafePath(f"asterisk-form target '*' is only valid with OPTIONS, not {method}")
        return RequestTarget("asterisk", "*", None)
    if raw.startswith("/"):
        path, mark, query = raw.partition("?")
        return RequestTarget("origin", path, query if mark else None)
    m = _ABSOLUTE.fullmatch(raw)
    if m is None:
        raise UnsafePath("request target must be a path ('/...') or an absolute http(s) URL")
    authority, path, query = m.group(1), m.group(2) or "/", m.group(3)
    if not authority or "@" in authority:
        raise UnsafePath("absolute-form target needs a host and must not carry userinfo")
    return RequestTarget("absolute", path, query, authority)
