"""Remove secrets from what the diff store keeps: header values, JSON fields, text bodies.

A key is sensitive when its normalised name (lower-case, without `-`/`_`) contains one of the
names: `email_addr` is caught by `email`, `X-Api-Key` by `apikey`. Over-redacting a harmless
field is the safe failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from proxy.telemetry.redact import secret_param

from .model import Difference
from .paths import keys_in_path

DEFAULT_SENSITIVE = (
    "authorization",
    "cookie",
    "email",
    "token",
    "password",
    "passwd",
    "secret",
    "apikey",
    "session",
    "credential",
    "privatekey",
    # payment and identity data a diff store must not keep (PCI DSS forbids storing a CVV)
    "cardnumber",
    "creditcard",
    "cvv",
    "cvc",
    "iban",
    "ssn",
    "otp",
)
REDACTED = "[REDACTED]"
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_BEARER = re.compile(r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=\-]{6,}")
# `name=value` pairs in free text (URLs and query strings echoed in bodies); the value is
# redacted when the name is sensitive (the configured names) or says it is a credential.
_PAIR = re.compile(r"\b([A-Za-z0-9_.\-]+)=([^&\s\"'<]+)")


def _norm(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


class Redactor:
    """Configured with `Config.telemetry.redact` on top of the defaults."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        names = {_norm(n) for n in DEFAULT_SENSITIVE}
        names.update(_norm(n) for n in extra if n)
        self._names = tuple(sorted(names))
        self._cache: dict[str, bool] = {}

    def is_sensitive(self, key: str) -> bool:
        hit = self._cache.get(key)
        if hit is None:
            norm = _norm(key)
            hit = any(name in norm for name in self._names)
            if len(self._cache) < 10_000:
                self._cache[key] = hit
        return hit

    def value(self, value: Any) -> Any:
        """A JSON value with every sensitive key's value replaced."""
        if isinstance(value, dict):
            return {
                k: REDACTED if self.is_sensitive(str(k)) else self.value(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def text(self, text: str) -> str:
        """Free text: e-mail addresses, bearer/basic credentials and secret query params."""
        if "@" in text:
            text = _EMAIL.sub(REDACTED, text)
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        if "=" not in text:
            return text
        return _PAIR.sub(
            lambda m: (
                f"{m.group(1)}={REDACTED}"
                if self.is_sensitive(m.group(1)) or secret_param(m.group(1))
                else m.group(0)
            ),
            text,
        )

    def path_is_sensitive(self, path: str) -> bool:
        if path.startswith("header:"):
            return self.is_sensitive(path[7:])
        return any(self.is_sensitive(k) for k in keys_in_path(path))

    def difference(self, diff: Difference) -> Difference:
        if self.path_is_sensitive(diff.path):
            p = REDACTED if diff.primary is not None else None
            c = REDACTED if diff.candidate is not None else None
            return Difference(diff.path, diff.field, diff.kind, p, c)
        return Difference(
            diff.path, diff.field, diff.kind, self.value(diff.primary), self.value(diff.candidate)
        )

    def body(self, body: bytes, kind: str, limit: int = 65_536) -> str | None:
        """A stored example body: JSON redacted by key, text by pattern, binary not kept."""
        if not body:
            return ""
        if kind == "json":
            try:
                doc = json.loads(body)
            except ValueError:
                return self.text(body[:limit].decode("utf-8", "replace"))
            text = json.dumps(self.value(doc), ensure_ascii=False)
            return text if len(text) <= limit else None
        if kind == "text":
            return self.text(body[:limit].decode("utf-8", "replace"))
        return None
