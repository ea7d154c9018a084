"""Checks for the small string values of a route table: names, tokens, hosts, URLs, CIDRs.

Each `check_*` takes the text and returns an error message, or None when it is fine, so
the loader can attach the message to a line; `parse_*` also return the normalized form.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from proxy.config.problems import Invalid, did_you_mean
from proxy.config.templates import TemplateError, check_path

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # RFC 9110 token
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


def check_name(text: str) -> str | None:
    """Route and upstream names appear in metrics labels, logs and admin URLs."""
    if _NAME.match(text):
        return None
    return (
        f"invalid name {text!r}: use letters, digits, '.', '_' and '-', starting with a "
        "letter or digit, at most 64 characters"
    )


_FIELD_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?")


def check_token(text: str) -> str | None:
    """HTTP header names and methods are RFC 9110 tokens."""
    if _TOKEN.match(text):
        return None
    return f"{text!r} is not a valid HTTP token (letters, digits and !#$%&'*+.^_`|~- only)"


def check_header_value(text: str) -> str | None:
    """A field value the proxy may send: visible ASCII, spaces and tabs inside (no CR, LF,
    NUL or other controls, which would split or corrupt the answer's head)."""
    if text == "" or _FIELD_VALUE.fullmatch(text):
        return None
    return f"{text!r} is not a valid header value (printable ASCII, no line breaks)"


def check_hostname(text: str) -> str | None:
    """An IP literal or a DNS name (lower-case, without port)."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ipaddress.ip_address(text)
        return None
    except ValueError:
        pass
    labels = text.lower().rstrip(".").split(".")
    if text and all(_LABEL.match(label) for label in labels):
        return None
    return f"{text!r} is not a valid host name or IP address"


def normalize_host(text: str) -> str:
    """Lower-case and drop a port: `Shop.Example:8080` -> `shop.example`, `[::1]:80` -> `[::1]`."""
    text = text.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        return text[: end + 1] if end != -1 else text
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    return text


def check_field_path(text: str) -> str | None:
    """Shadow rules use the comparator's own path grammar, so what loads is what it runs."""
    from proxy.shadow.paths import PathSyntaxError, parse_pattern

    try:
        parse_pattern(normalize_field_path(text))
    except PathSyntaxError as exc:
        return str(exc)
    return None


def normalize_field_path(text: str) -> str:
    """`generated_at` -> `$.generated_at`; `[0].id` -> `$[0].id`; `..id` -> `$..id`."""
    if text.startswith("$"):
        return text
    if text.startswith(("[", ".")):
        return "$" + text
    return "$." + text


# Query parameters that carry a secret in the URLs routes.yaml may hold (Redis, stores).
_SECRET_PARAM = re.compile(r"(?i)pass|secret|token|key|auth|credential")


def redact_url(text: str) -> str:
    """The URL as it may appear in a message or at `/-/config`: the userinfo's password
    (`redis://user:pw@host`, a password holding a raw `@` included) and secret-looking query
    parameters (`?password=...`) masked."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        # The scheme forgotten (`:pw@cache:6379/0`, `cache:6379/0?password=pw`), the
        # password is one all the same.
        return redact_url("_://" + text)[4:] if "@" in text or "?" in text else text
    # The last '@' ends the userinfo, even past a '/', '?' or '#' a password holds raw
    # (`redis://:ab/cd@host/0` is not a valid URL, but its password must not show either).
    userinfo, at_sign, after = rest.rpartition("@")
    if at_sign:
        user, colon, _ = userinfo.partition(":")
        if "/" in user or "?" in user or "#" in user:
            user, colon = "", ":"
        rest = (f"{user}:***@" if colon or not user else "***@") + after
        head = len(rest) - len(after)
    else:
        head = 0
    end = len(rest)
    for ch in "/?#":
        at = rest.find(ch, head, end)
        if at >= 0:
            end = at
    authority, tail = rest[:end], rest[end:]
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        pairs = [pair.partition("=") for pair in query.split("&")]
        query = "&".join(
            f"{k}{eq}***" if eq and _SECRET_PARAM.search(k) else f"{k}{eq}{v}" for k, eq, v in pairs
        )
        tail = f"{path}?{query}{hash_}{fragment}"
    return f"{scheme}://{authority}{tail}"


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    scheme: str
    host: str  # without IPv6 brackets
    port: int
    base_path: str  # "" or "/base", no trailing slash
    url: str  # normalized: scheme://host[:port][/base]


def parse_http_url(text: str, schemes: tuple[str, ...] = ("http", "https")) -> ParsedUrl:
    """Split an upstream URL; raise `Invalid` saying what is wrong and how to write it."""
    example = f"write it like {schemes[0]}://127.0.0.1:8000"
    shown = redact_url(text)
    if "://" not in text:
        bare = shown.strip()
        if bare and not bare.startswith("/") and not any(c in bare for c in " @\t"):
            example = f"write it with its scheme: {schemes[0]}://{bare}"  # `localhost:8101`
        raise Invalid(f"{shown!r} is not an absolute URL", example)
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise Invalid(f"{shown!r} is not a valid URL: {exc}", example) from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise Invalid(f"scheme must be {' or '.join(schemes)}, not {parts.scheme!r}", example)
    if "@" in parts.netloc:
        raise Invalid(
            "the URL must not contain credentials (user:password@)",
            "remove them; secrets do not belong in routes.yaml",
        )
    if "?" in text or "#" in text:
        raise Invalid("the URL must not have a query string or fragment", "remove it")
    host = parts.hostname
    if not host:
        raise Invalid(f"{shown!r} has no host", example)
    error = check_hostname(host)
    if error:
        raise Invalid(error, example)
    if parts.netloc.endswith(":"):
        raise Invalid(f"{shown!r} has a ':' but no port after it", "add the port or drop the ':'")
    try:
        explicit = parts.port
    except ValueError:
        raise Invalid(f"invalid port in {shown!r}", "use a port from 1 to 65535") from None
    if explicit == 0:
        raise Invalid(f"invalid port in {shown!r}", "use a port from 1 to 65535")
    default_port = 443 if scheme in ("https", "rediss") else 80
    port = explicit if explicit is not None else default_port
    base_path = parts.path.rstrip("/")
    if base_path:
        try:
            check_path(base_path, "the URL's path")
        except TemplateError as exc:
            raise Invalid(exc.message, exc.fix or "fix the path") from None
        if "{" in base_path or "}" in base_path:
            raise Invalid("the URL's path must not contain '{' or '}'", "remove them")
    bracketed = f"[{host}]" if ":" in host else host
    netloc = f"{bracketed}:{explicit}" if explicit is not None else bracketed
    return ParsedUrl(scheme, host, port, base_path, f"{scheme}://{netloc}{base_path}")


@functools.cache
def _redis_url_parsers() -> dict[str, Any]:
    """redis-py's parsers of URL options, imported on first use: a tenth of a second of
    every start, for the tables (most) that name no Redis URL."""
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS

    return dict(URL_QUERY_ARGUMENT_PARSERS)


def redis_url_options() -> tuple[str, ...]:
    """Query options a Redis URL may carry: the proxy's key prefix and what redis-py reads."""
    return ("prefix", *_redis_url_parsers(), "ssl_cert_reqs", "ssl_ca_certs",
            "ssl_certfile", "ssl_keyfile", "client_name", "username", "password")  # fmt: skip


_CERT_REQS = ("none", "optional", "required")
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_TIMEOUTS = ("socket_timeout", "socket_connect_timeout")


def check_redis_url(text: str) -> str | None:
    """`redis://host[:port][/db][?options]` or `rediss://...`: everything redis-py would
    only refuse when it first connects (an unknown option, a bad value) is refused here."""
    shown = redact_url(text)
    if not text.startswith(("redis://", "rediss://")):
        return f"{shown!r} is not a redis:// or rediss:// URL"
    userinfo, at_sign, _ = text.partition("://")[2].rpartition("@")
    if at_sign and any(ch in userinfo for ch in "/?#"):
        return (
            f"the password in {shown!r} holds a '/', '?' or '#' (or an option holds '@'): "
            "percent-encode them (%2F, %3F, %23, %40)"
        )
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f"{shown!r} is not a valid URL (host, then an optional :port from 1 to 65535)"
    if not parts.hostname:
        return f"{shown!r} has no host"
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        return f"the database in {shown!r} must be a number, e.g. redis://127.0.0.1:6379/0"
    options, parsers = redis_url_options(), _redis_url_parsers()
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in options:
            hint = did_you_mean(key, options) or "known: " + ", ".join(options)
            return f"unknown option {key!r} in {shown!r} ({hint})"
        # redis-py hands ssl_* to a plain connection too, which fails with a TypeError at
        # the first connect (a proxy that does not start, a reload that stops sharing).
        if key.startswith("ssl_") and parts.scheme != "rediss":
            return f"option {key} in {shown!r} is for TLS: write rediss:// (or remove {key})"
        if key == "ssl_cert_reqs" and value not in _CERT_REQS:
            return (
                f"option ssl_cert_reqs={value!r} in {shown!r} is not one of {', '.join(_CERT_REQS)}"
            )
        if key in _TLS_FILES and not Path(value).is_file():
            return f"option {key} in {shown!r} names {value!r}, which is not a file"
        if key in parsers:
            try:
                parsed = parsers[key](value)
            except (TypeError, ValueError):
                return f"option {key}={value!r} in {shown!r} is not a valid value"
            if key in _TIMEOUTS and not (isinstance(parsed, float) and 0 < parsed <= 30):
                return (
                    f"option {key}={value!r} in {shown!r} is out of range: use seconds "
                    "above 0 and at most 30 (e.g. 0.25)"
                )
    return None


def resolve_store(text: str | None, base_dir: Path) -> str:
    """The shadow store URL with a relative sqlite path anchored at routes.yaml's directory.

    The result is `sqlite:///` followed by an absolute path (so `sqlite:////abs/x.db`),
    or the redis URL unchanged.
    """
    if text is None:
        return "sqlite:///" + str(base_dir / "strangler-shadow.db")
    if text.startswith("sqlite:///"):
        raw = text[len("sqlite:///") :]
        if raw.startswith("/"):
            return text
        return "sqlite:///" + str(base_dir / raw)
    return text


def check_store(text: str) -> str | None:
    shown = redact_url(text)
    if text.startswith("sqlite:///"):
        raw = text[len("sqlite:///") :]
        if not raw or raw.endswith("/"):
            return f"{shown!r} names no file; write sqlite:///strangler-shadow.db"
        if raw == ":memory:":
            return "an in-memory store would lose every diff and share none; name a file"
        return None
    if text.startswith(("redis://", "rediss://")):
        return check_redis_url(text)
    return f"{shown!r} is neither sqlite:///<path> nor redis://<host>"


def parse_cidr(text: str) -> str:
    """The normalized network (`10.0.0.0/8`); a bare address is a /32 or /128."""
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise Invalid(
                f"{text!r} is not a CIDR or IP address ({exc})", "write e.g. 10.0.0.0/8"
            ) from None
        raise Invalid(f"{text!r} has host bits set", f"did you mean {str(loose)!r}?") from None
