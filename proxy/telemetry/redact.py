"""Keep secrets out of logs, spans and stored diffs.

Everything that leaves the process for humans to read (log lines, span attributes, the shadow
diff store) passes through one `Redactor`, so what counts as a secret lives in one place:
`secret_name` (names that say credential: `X-Api-Key`, `jwt`, `csrfmiddlewaretoken`...), the
names looked for in free text (`DEFAULT_SECRETS`) plus `TelemetryConfig.redact`.
Pure functions over plain data; no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED]"

# Names looked for inside free text (`retrying: password: x`, `x_api_key : v`, `cookie=v`),
# case-insensitively and with "-" and "_" alike, so `X-Api-Key` and `X_API_KEY` are one name.
# (Whether a given name is secret is `secret_name`, which covers all of these.)
DEFAULT_SECRETS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-auth-token",
        "x-csrftoken",
        "x-csrf-token",
        "password",
        "passwd",
        "secret",
        "token",
        "access-token",
        "refresh-token",
        "client-secret",
        "sessionid",
        "csrftoken",
    }
)

# Whole-line credentials: everything after `Cookie:` up to the end of the line or quote.
_LINE_SECRET = re.compile(
    r"""(?=[aApPsScC])"""  # first letters, a fast path: most positions fail here
    r"""(?P<key>\b(?:proxy-authorization|authorization|set-cookie|cookie)["']?\s*[:=]\s*["']?)"""
    r"""[^\r\n"']+""",
    re.IGNORECASE,
)
# Credentials after an auth scheme. A plain word after it is prose ("Basic usage", "Token
# Ring"), not a credential: see `_scheme_token`.
_SCHEME_TOKEN = re.compile(
    r"(?=[bBtTdDnN])\b(bearer|token|basic|digest|negotiate|ntlm)([ \t]+)([A-Za-z0-9._~+/=\-]{6,})",
    re.IGNORECASE,
)
_WORD = re.compile(r"(?:[A-Z]?[a-z]+|[A-Z]+)(?:-(?:[A-Z]?[a-z]+|[A-Z]+))*")
# A JSON Web Token (JWS: three base64url parts, JWE: five); `eyJ` is base64 for `{"`.
# Not right after a `-` (nor inside a word): a run `eyJ-eyJ-...` would be scanned again from
# each `eyJ` (quadratic); after a `.` (`v1.eyJ...`) the scan stops at the next dot. Right
# after a percent-escape it is a token too: `Bearer%20eyJ...` in a query value, or a return
# URL's own path percent-encoded (`next=https%3A%2F%2Fa%2Fverify%2FeyJ...`), where the
# escape's hex digit is a word character (no scan overlaps another: `%` ends a scan).
JWT = re.compile(
    r"(?:(?<![\w\-])|(?<=%[0-9A-Fa-f]{2}))eyJ[A-Za-z0-9_\-]{4,}+(?:\.[A-Za-z0-9_\-]*+){2,4}+"
)
# Header-like lines (`X-Api-Key: v`, as an upstream's error page echoes the request head),
# JSON/JS-like pairs in text (`"jwt": "v"`, `session_id: 42`, `API key: v`) and HTML fields
# (`<input name="csrfmiddlewaretoken" value="v">`, `<meta name="csrf-token" content="v">`):
# redacted when `Redactor.is_secret` says the name is secret, so every rule for names applies.
_HEADER_LINE = re.compile(r"(?m)^(?P<key>[ \t]*(?P<name>[A-Za-z][\w.-]*)[ \t]*:[ \t]*)\S[^\r\n]*")
_NAMED_PAIR = re.compile(
    r"""(?P<key>(?P<q1>["']?)(?<![\w.-])(?P<name>(?:[A-Za-z][\w.-]*+ )?[A-Za-z_][\w.-]*+)(?P=q1)"""
    r"""[ \t]*:[ \t]*)"""
    r"""(?:(?P<q>["'])(?:\\.|(?!(?P=q))[^\r\n\\])*+(?P=q)|(?P<bare>[^\s,;'"<>{}\[\]]+))"""
)
_KEY_WORDS = frozenset({"key", "id"})  # `API key`, `access key`, `session id`
_TAG = re.compile(r"<[A-Za-z][^<>]*+>")  # an element; `_tag` looks for a secret name in it
_TAG_NAME = re.compile(r"""(?<![\w-])(?:name|id)[ \t]*=[ \t]*(["']?)([^"'\s<>]+)\1""", re.I)
_TAG_VALUE = re.compile(
    r"""(?P<key>(?<![\w-])(?:value|content)[ \t]*=[ \t]*)"""
    r"""(?:(?P<q>["'])[^"'<>\r\n]+(?P=q)|[^\s"'<>]+)""",
    re.IGNORECASE,  # legacy pages write `<INPUT NAME=... VALUE=...>`
)


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


# What names are secret, for every consumer (log lines, query strings, the shadow diff store):
# a name is compared lower-case without `-`/`_`. It is secret when it contains one of the
# parts, or is one of the whole names: short words that are also parts of harmless names
# (`keyboard`, `monkey`, `author`, `pin_hint`, `signing`). Over-redacting a harmless value is
# the safe failure.
_SECRET_PARTS = (
    "token",
    "secret",
    "passw",
    "passphrase",
    "passcode",
    "apikey",
    "accesskey",
    "signature",
    "credential",
    "authorization",
    "cookie",
    "session",
    "sessid",
    "privatekey",
    "csrf",
    "xsrf",
)
_SECRET_WHOLE = frozenset({"key", "sig", "auth", "jwt", "pin", "sid", "pwd", "otp"})
# `code` is a secret only as a query parameter (an OAuth authorization code in a redirect);
# in a body `code` is an error or product code a diff must show.
_PARAM_WHOLE = _SECRET_WHOLE | {"code"}


def _compact(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


@lru_cache(maxsize=4096)
def secret_name(name: str, *, whole_words: bool = True) -> bool:
    """Whether a header, field or parameter called `name` carries a credential (pure).

    `whole_words=False` checks the parts only, for `name=value` in prose, where `key=len`
    and `pin=2` are ordinary words."""
    norm = _compact(name)
    if norm.endswith(".sid") or (whole_words and norm in _SECRET_WHOLE):  # Express's connect.sid
        return True
    return any(part in norm for part in _SECRET_PARTS)


# A query parameter in free text (`...?key=V&sig=V`): only after '?' or '&', so prose and
# tracebacks (`exit code=137`, `sorted(x, key=len)`) keep their words.
_PAIR = re.compile(r"""(?P<key>(?<=[?&])(?P<name>[A-Za-z][\w.-]*)=)(?![\[])[^&;\s"'<>()]+""")


# `name=value` anywhere in free text (`db_password=x` in a message), for names secret even
# in prose; `{value}` is `generalize_path`'s placeholder (`;jsessionid={value}`).
_PROSE_PAIR = re.compile(
    r"""(?<![A-Za-z0-9_.\-])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*+)(?P<eq>[ \t]*+=[ \t]*+)"""
    r"""(?!\{value\})(?:(?P<q>["'])(?:\\.|(?!(?P=q))[^\r\n\\])*+(?P=q)|[^&;\s"'<>()]++)"""
)
_PATH_PARAM = re.compile(r"(?P<key>;(?P<name>[^=;/?#]+)=)[^;/?#]*")


# A parameter nested in a query value: a return URL's own query (`next=https://a/?token=v`,
# or encoded: `next=https%3A%2F%2Fa%2F%3Ftoken%3Dv`) or a `;`-separated list (`a=1;token=v`,
# which some frameworks split on). Its value runs to the next separator, raw or encoded.
_NESTED_PARAM = re.compile(
    r"(?P<key>(?:[?&;]|%3[Ff]|%26|%3[Bb])(?P<name>[A-Za-z][\w.\-]*)(?:=|%3[Dd]))"
    r"(?:[^&;?%#\s]|%(?!26|3[FfBbDd])[0-9A-Fa-f]{2}|%(?![0-9A-Fa-f]{2}))*+"
)


def needs_path_redaction(path: str) -> bool:
    """Whether `Redactor.path` could change `path`: a cheap test for the per-request paths
    (the access line, spans), most of which it would return unchanged."""
    return ";" in path or "eyJ" in path


def secret_param(name: str) -> bool:
    """Whether a query parameter's name marks its value as a secret (pure): a secret name
    (`secret_name`) or `code`."""
    return secret_name(name) or _compact(name) in _PARAM_WHOLE


def _named_value(m: re.Match[str]) -> str:
    q = m.group("q")
    if q:
        return f"{m.group('key')}{m.group('ws')}{q}{REDACTED}{q}"
    return f"{m.group('key')}{m.group('wc') or m.group('we') or ''}{REDACTED}"


def _tag_value(m: re.Match[str]) -> str:
    q = m.group("q") or ""
    return f"{m.group('key')}{q}{REDACTED}{q}"


def _scheme_token(m: re.Match[str]) -> str:
    cred = m.group(3)
    if len(cred) < 20 and _WORD.fullmatch(cred):  # "Basic usage", "Negotiate contracts"
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}{REDACTED}"


class Redactor:
    """Replaces the values of secret names; built once per config, then shared (only its
    cache of answers for names changes).

    Secret names are the built-in ones (`secret_name`), `extra` (`telemetry.redact`, whole
    names) and, for the shadow store, names containing one of `parts` (personal data)."""

    __slots__ = ("names", "_parts", "_needles", "_cache", "_named_in_text")

    def __init__(self, extra: Iterable[str] = (), *, parts: Iterable[str] = ()) -> None:
        self.names: frozenset[str] = DEFAULT_SECRETS | {_norm(n) for n in extra if n.strip()}
        self._parts = tuple(sorted({_compact(p) for p in parts if p.strip()}))
        self._cache: dict[tuple[str, bool], bool] = {}
        needles = set(_SECRET_PARTS) | _SECRET_WHOLE | set(self._parts)
        needles |= {_compact(n) for n in self.names}
        # a needle containing another adds nothing (`csrftoken` has `token`)
        self._needles = tuple(sorted(n for n in needles if not any(o in n for o in needles - {n})))
        # Secrets named in free text (messages, tracebacks, query strings); names match with
        # - or _ as separators. Three shapes, in one pass:
        #   "name": "value" / name='value'   -> the whole quoted value
        #   name: value                       -> to the end of the line (header-like; a
        #                                        value may have blanks: over-redacting is safe)
        #   name=value                        -> to the next & ; or space (query-string-like)
        # (Lines that start with a secret name are `_HEADER_LINE`'s: to the end of the line.)
        names = "|".join(
            sorted((re.escape(n).replace(r"\-", "[-_]") for n in self.names), key=len, reverse=True)
        )
        first = "".join(sorted({c for n in self.names for c in (n[0].lower(), n[0].upper())}))
        key = r"""(?=["'""" + re.escape(first) + r"""])["']?\b(?:""" + names + r""")\b["']?"""
        self._named_in_text = re.compile(
            r"(?P<key>" + key + r"""\s*(?:(?P<colon>:)|=))"""
            r"""(?:(?P<ws>\s*)(?P<q>["'])(?:\\.|(?!(?P=q))[^\n\\])*+(?P=q)"""
            r"""|(?(colon)(?P<wc>[ \t]*)(?!["'\s])[^\r\n]++"""
            r"""|(?P<we>\s*)(?!["'])[^&;\s"']*+))""",
            re.IGNORECASE,
        )

    def is_secret(self, name: str, *, prose: bool = False) -> bool:
        """Whether a header or field called `name` must never be shown. `prose`: the name was
        met in free text (`key=len`, `Pin: 4`), where the short whole names do not count."""
        hit = self._cache.get((name, prose))
        if hit is None:
            hit = (
                _norm(name) in self.names
                or secret_name(name, whole_words=not prose)
                or any(part in _compact(name) for part in self._parts)
            )
            if len(self._cache) < 10_000:
                self._cache[(name, prose)] = hit
        return hit

    def headers(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
        """A copy of `headers` (a mapping or (name, value) pairs) with secret values replaced."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        out: dict[str, str] = {}
        for name, value in items:
            out[name] = REDACTED if self.is_secret(name) else self.text(str(value))
        return out

    def value(self, obj: Any) -> Any:
        """A deep copy of JSON-like data with the values of secret keys replaced."""
        if isinstance(obj, Mapping):
            return {
                k: (REDACTED if isinstance(k, str) and self.is_secret(k) else self.value(v))
                for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [self.value(v) for v in obj]
        if isinstance(obj, str):
            return self.text(obj)
        return obj

    def text(self, text: str) -> str:
        """Free text with credentials scrubbed: `Bearer xyz`/`Negotiate xyz`, JWTs, the values
        of secret names as headers (`Name: v`), pairs (`"name": "v"`, `name=v`), HTML fields
        and query parameters. Never joins or splits lines."""
        if not text:
            return text
        # Each rule needs a `:`, `=`, a blank or `eyJ`, and the rules for names a secret name
        # somewhere in the text: most strings and lines skip most rules.
        colon, equals = ":" in text, "=" in text
        named = (colon or equals) and self.mentions_secret(text)
        if named:
            text = _LINE_SECRET.sub(lambda m: f"{m.group('key')}{REDACTED}", text)
        if " " in text or "\t" in text:
            text = _SCHEME_TOKEN.sub(_scheme_token, text)
        if "eyJ" in text:
            text = JWT.sub(REDACTED, text)
        if named:
            text = self._named_in_text.sub(_named_value, text)
            if colon:
                text = _HEADER_LINE.sub(self._header_line, text)
                text = _NAMED_PAIR.sub(self._named, text)
            if equals and "<" in text:
                text = _TAG.sub(self._tag, text)
            if equals:
                text = _PROSE_PAIR.sub(self._prose_pair, text)
        if equals:
            # query parameters whose name says secret (`?key=`, `&sig=`, `&client_secret=`),
            # as a query string is redacted (`query`).
            text = _PAIR.sub(
                lambda m: (
                    m.group("key") + REDACTED if secret_param(m.group("name")) else m.group(0)
                ),
                text,
            )
        return text

    def mentions_secret(self, text: str) -> bool:
        """Whether `text` holds a secret name anywhere (case, `-`, `_` and blanks aside): a
        fast path, as every rule for names needs one."""
        flat = text.lower().replace("-", "").replace("_", "").replace(" ", "")
        return any(needle in flat for needle in self._needles)

    def _header_line(self, m: re.Match[str]) -> str:
        if not self.is_secret(m.group("name"), prose=True):
            return m.group(0)
        return f"{m.group('key')}{REDACTED}"

    def _named(self, m: re.Match[str]) -> str:
        # a quoted name (`"pin": 1234`) is a data key; a bare one may be a word of prose
        prose = not m.group("q1")
        first, _, last = m.group("name").rpartition(" ")
        if first:  # `API key: v`, `session id: v`, `the X-Api-Key: v`; not `Token Ring: v`
            secret = self.is_secret(last, prose=prose) or (
                _compact(last) in _KEY_WORDS and self.is_secret(first + last, prose=True)
            )
        else:
            secret = self.is_secret(last, prose=prose)
        if not secret:
            return m.group(0)
        q = m.group("q") or ""
        return f"{m.group('key')}{q}{REDACTED}{q}"

    def _prose_pair(self, m: re.Match[str]) -> str:
        if not self.is_secret(m.group("name"), prose=True):
            return m.group(0)
        q = m.group("q") or ""
        return f"{m.group('name')}{m.group('eq')}{q}{REDACTED}{q}"

    def _tag(self, m: re.Match[str]) -> str:
        tag = m.group(0)
        if not any(self.is_secret(n.group(2)) for n in _TAG_NAME.finditer(tag)):
            return tag
        return _TAG_VALUE.sub(_tag_value, tag)

    def body(self, body: bytes, content_type: str | None = None) -> bytes:
        """A JSON body with secret fields redacted; other bodies are returned text-scrubbed."""
        if not body:
            return body
        if content_type is None or "json" in content_type.lower():
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                pass
            else:
                return json.dumps(self.value(parsed), separators=(",", ":")).encode()
        try:
            return self.text(body.decode("utf-8")).encode()
        except UnicodeDecodeError:
            return body

    def path(self, path: str) -> str:
        """A path with the values of secret `;name=value` parameters replaced (Java servlet
        containers put the session there: `/cart;jsessionid=...`), and JWTs in it (a
        magic link's `/verify/eyJ...`: a bearer credential whatever the segment's name).
        Callers skip it for paths with neither `;` nor `eyJ` (`needs_path_redaction`)."""
        if "eyJ" in path:
            path = JWT.sub(REDACTED, path)
        if ";" not in path:
            return path
        return _PATH_PARAM.sub(
            lambda m: (
                f"{m.group('key')}{REDACTED}"
                if self.is_secret(m.group("name")) or secret_param(m.group("name"))
                else m.group(0)
            ),
            path,
        )

    def _nested_param(self, m: re.Match[str]) -> str:
        name = m.group("name")
        if self.is_secret(name) or secret_param(name):
            return f"{m.group('key')}{REDACTED}"
        return m.group(0)

    def query(self, query: str) -> str:
        """A URL query string with the values of secret parameters replaced: the configured
        names, and any whose name says it carries a secret (`id_token`, `apikey`,
        `X-Amz-Signature`, `client_secret`...; see `secret_param`)."""
        if not query:
            return query
        parts = []
        for pair in query.split("&"):
            name, sep, value = pair.partition("=")
            secret = sep and (self.is_secret(name) or secret_param(name))
            if secret:
                pair = f"{name}={REDACTED}"
            else:
                if "eyJ" in value:  # a JWT is a credential under any name (`?t=eyJ...`)
                    value = JWT.sub(REDACTED, value)
                if "=" in value or "%3" in value:
                    value = _NESTED_PARAM.sub(self._nested_param, value)
                pair = f"{name}{sep}{value}"
            parts.append(pair)
        return "&".join(parts)
