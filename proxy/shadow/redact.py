"""Remove secrets from what the diff store keeps: header values, JSON fields, text bodies,
difference paths and endpoints.

What is secret is decided by the log redactor (`proxy.telemetry.redact`): the same names are
secret in a log line, a query string and the store. The store adds personal and payment
data (`PERSONAL`) and reads `telemetry.redact` names as parts: a key is sensitive when its
normalised name (lower-case, without `-`/`_`) contains one, so `email_addr` is caught by
`email`. Over-redacting a harmless field is the safe failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from proxy.telemetry.redact import REDACTED
from proxy.telemetry.redact import Redactor as TextRedactor

from .endpoint import generalize_path
from .model import Difference
from .paths import keys_in_path

# Data a diff store must not keep besides credentials (PCI DSS forbids storing a CVV).
PERSONAL = ("email", "cardnumber", "creditcard", "cvv", "cvc", "iban", "ssn", "otp")
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]++@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# A keyed list element in a difference path: `$.sessions[session_id="abc"]`.
_KEYED = re.compile(r"\[([A-Za-z_][\w\-]*+)=(\"(?:[^\"\\]|\\.)*+\"|[^\]\[]*+)\]")


class Redactor:
    """Configured with `Config.telemetry.redact` on top of the defaults."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        extra = tuple(n for n in extra if n)
        self._text = TextRedactor(extra, parts=PERSONAL + extra)

    def is_sensitive(self, key: str) -> bool:
        """Whether a JSON key or header called `key` must not be stored."""
        return self._text.is_secret(key)

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
        """Free text: e-mail addresses, and the log redactor's rules (credential headers and
        lines, auth schemes, JWTs, secret pairs and `name=value`, HTML fields, query
        parameters)."""
        if "@" in text:
            text = _EMAIL.sub(REDACTED, text)
        return self._text.text(text)

    def path(self, path: str) -> str:
        """A stored difference path or field: values in it (a keyed element's key value, a
        JWT or e-mail used as an object key) are data too."""
        if "[" in path and "=" in path:
            path = _KEYED.sub(
                lambda m: (
                    f'[{m.group(1)}="{REDACTED}"]' if self.is_sensitive(m.group(1)) else m.group(0)
                ),
                path,
            )
        return self.text(path)

    def endpoint(self, endpoint: str) -> str:
        """The stored endpoint: a template or generalised path (see `generalize_path`), with
        whatever a caller's raw path still carries redacted."""
        return "/".join(self.text(seg) for seg in generalize_path(endpoint).split("/"))

    def path_is_sensitive(self, path: str) -> bool:
        if path.startswith("header:"):
            return self.is_sensitive(path[7:])
        return any(self.is_sensitive(k) for k in keys_in_path(path))

    def difference(self, diff: Difference) -> Difference:
        """The difference as stored: path, field and both values redacted."""
        path, field = self.path(diff.path), self.path(diff.field)
        if self.path_is_sensitive(diff.path):
            p = REDACTED if diff.primary is not None else None
            c = REDACTED if diff.candidate is not None else None
            return Difference(path, field, diff.kind, p, c)
        return Difference(
            path, field, diff.kind, self.value(diff.primary), self.value(diff.candidate)
        )

    def body(self, body: bytes, kind: str, limit: int = 65_536) -> str | None:
        """A stored example body: JSON redacted by key, text by pattern, binary not kept."""
        if not body:
            return ""
        if kind == "json":
            if len(body) > 4 * limit:  # its redacted text could not fit: not worth the work
                return None
            try:
                doc = json.loads(body)
            except (ValueError, RecursionError):
                return self.text(body[:limit].decode("utf-8", "replace"))
            text = json.dumps(self.value(doc), ensure_ascii=False)
            return text if len(text) <= limit else None
        if kind == "text":
            return self.text(body[:limit].decode("utf-8", "replace"))
        return None
