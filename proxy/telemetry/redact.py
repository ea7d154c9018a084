"""Keep secrets out of logs, spans and stored diffs.

Everything that leaves the process for humans to read (log lines, span attributes, the shadow
diff store) passes through one `Redactor`, so the list of secrets lives in one place: the
built-in credentials (Authorization, cookies, API keys) plus `TelemetryConfig.redact`.
Pure functions over plain data; no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

# Header / field names that always carry credentials. Compared case-insensitively and with
# "-" and "_" treated alike, so `X-Api-Key`, `x_api_key` and `X_API_KEY` are one name.
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
    r"""(?P<key>\b(?:proxy-authorization|authorization|set-cookie|cookie)["']?\s*[:=]\s*["']?)"""
    r"""[^\r\n"']+""",
    re.IGNORECASE,
)
# Credentials after an auth scheme; 8+ characters so prose like "Token is" stays readable.
_SCHEME_TOKEN = re.compile(r"\b([Bb]earer|BEARER|Token|Basic|Digest)\s+[A-Za-z0-9._~+/=\-]{8,}")


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


# Parts of a query parameter's name that say its value is a credential. Over-redacting a
# harmless parameter is the safe failure; `key` and `sig` count only as whole names.
_SECRET_PARTS = ("token", "secret", "passw", "apikey", "accesskey", "signature", "credential")
_SECRET_WHOLE = frozenset({"key", "sig", "auth", "jwt", "code", "session", "sessionid"})


# A query parameter in free text (`...?key=V&sig=V`): only after '?' or '&', so prose and
# tracebacks (`exit code=137`, `sorted(x, key=len)`) keep their words.
_PAIR = re.compile(r"""(?P<key>(?<=[?&])(?P<name>[A-Za-z][\w.-]*)=)(?![\[])[^&;\s"'<>()]+""")


def secret_param(name: str) -> bool:
    """Whether a query parameter's name marks its value as a secret (pure)."""
    norm = name.lower().replace("-", "").replace("_", "")
    return norm in _SECRET_WHOLE or any(part in norm for part in _SECRET_PARTS)


class Redactor:
    """Replaces the values of secret names; built once per config, then shared read-only."""

    __slots__ = ("names", "_quoted", "_colon", "_equals")

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.names: frozenset[str] = DEFAULT_SECRETS | {_norm(n) for n in extra if n.strip()}
        # Secrets named in free text (messages, tracebacks, query strings); names match with
        # - or _ as separators. Three shapes, most specific first:
        #   "name": "value" / name='value'   -> the whole quoted value
        #   name: value                       -> to the end of the line (header-like)
        #   name=value                        -> to the next & ; or space (query-string-like)
        names = "|".join(
            sorted((re.escape(n).replace(r"\-", "[-_]") for n in self.names), key=len, reverse=True)
        )
        key = r"""["']?\b(?:""" + names + r""")\b["']?"""
        flags = re.IGNORECASE
        self._quoted = re.compile(
            r"(?P<key>" + key + r"""\s*[:=]\s*)(?P<q>["'])(?:\\.|(?!(?P=q)).)*(?P=q)""", flags
        )
        self._colon = re.compile(r"(?P<key>" + key + r"""\s*:[ \t]*)(?!["'\s])[^\r\n]+""", flags)
        self._equals = re.compile(r"(?P<key>" + key + r"""\s*=\s*)(?!["'])[^&;\s"']*""", flags)

    def is_secret(self, name: str) -> bool:
        """Whether a header or field called `name` must never be shown."""
        return _norm(name) in self.names

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
        """Free text with `Bearer xyz` tokens and `secret=value` pairs scrubbed."""
        if not text:
            return text
        text = _LINE_SECRET.sub(lambda m: f"{m.group('key')}{REDACTED}", text)
        text = _SCHEME_TOKEN.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        text = self._quoted.sub(
            lambda m: f"{m.group('key')}{m.group('q')}{REDACTED}{m.group('q')}", text
        )
        text = self._colon.sub(lambda m: f"{m.group('key')}{REDACTED}", text)
        text = self._equals.sub(lambda m: f"{m.group('key')}{REDACTED}", text)
        # query parameters whose name says secret (`?key=`, `&sig=`, `&client_secret=`),
        # as a query string is redacted (`query`).
        return _PAIR.sub(
            lambda m: m.group("key") + REDACTED if secret_param(m.group("name")) else m.group(0),
            text,
        )

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

    def query(self, query: str) -> str:
        """A URL query string with the values of secret parameters replaced: the configured
        names, and any whose name says it carries a secret (`id_token`, `apikey`,
        `X-Amz-Signature`, `client_secret`...; see `secret_param`)."""
        if not query:
            return query
        parts = []
        for pair in query.split("&"):
            name, sep, _ = pair.partition("=")
            secret = sep and (self.is_secret(name) or secret_param(name))
            parts.append(f"{name}={REDACTED}" if secret else pair)
        return "&".join(parts)
