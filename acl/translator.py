"""The contract between the proxy and every translator: plain messages in, plain messages out.

Nothing here touches sockets or aiohttp, so translators are tested as functions and the proxy
can call them inline on the request path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Directions, as they appear in errors and in `strangler acl run --to`.
REQUEST_TO_NEW = "request_to_new"
RESPONSE_TO_LEGACY = "response_to_legacy"
TO_NEW = "to_new"
TO_LEGACY = "to_legacy"


@dataclass(frozen=True, slots=True)
class RequestMessage:
    """A request as the ACL sees it. `body` is parsed JSON, or None when there is none or it
    is not JSON (the proxy keeps the raw bytes and forwards them if the body is unchanged).
    `unparsed` says why a non-empty body is None ("invalid JSON: ..."), so a translator that
    needs a record refuses it instead of letting untranslated bytes through."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None
    unparsed: str | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        """First value of a header, case-insensitively."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return default


@dataclass(frozen=True, slots=True)
class ResponseMessage:
    """A response as the ACL sees it; `body` and `unparsed` as in `RequestMessage`."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None
    unparsed: str | None = None


@runtime_checkable
class Translator(Protocol):
    """What a route's `acl: NAME` resolves to. Implementations must be pure and thread-safe."""

    name: str
    bidirectional: bool

    def request_to_new(self, req: RequestMessage, params: Mapping[str, str]) -> RequestMessage:
        """Legacy request -> request for the extracted service (path, query, body)."""
        ...

    def response_to_legacy(self, resp: ResponseMessage, req: RequestMessage) -> ResponseMessage:
        """Extracted service's response -> what the monolith would have answered.
        `req` is the ORIGINAL legacy request (pagination and error mapping need it)."""
        ...

    def to_new(self, legacy: Any) -> Any:
        """One legacy record -> one new record (backfill, property tests)."""
        ...

    def to_legacy(self, new: Any) -> Any:
        """One new record -> one legacy record."""
        ...


class TranslationError(Exception):
    """A payload the translator cannot translate faithfully. The proxy answers `status` (502)
    with `to_json()`: a wrong answer would be worse than no answer."""

    status = 502

    def __init__(self, translator: str, direction: str, path: str, message: str) -> None:
        super().__init__(f"{translator} ({direction}) at {path}: {message}")
        self.translator = translator
        self.direction = direction
        self.path = path
        self.message = message

    def to_json(self) -> dict[str, Any]:
        """A body in the monolith's error envelope, so legacy clients can still parse it."""
        return {
            "error": {
                "code": "TRANSLATION_FAILED",
                "message": self.message,
                "translator": self.translator,
                "direction": self.direction,
                "path": self.path,
            }
        }


class RequestRejected(TranslationError):
    """The client's own input is invalid in a way the monolith would have rejected itself
    (e.g. `status=X`): answer what the monolith answers instead of a 502."""

    def __init__(
        self,
        translator: str,
        direction: str,
        path: str,
        message: str,
        *,
        status: int,
        body: Any,
    ) -> None:
        super().__init__(translator, direction, path, message)
        self.status = status
        self.body = body

    def to_json(self) -> Any:
        return self.body


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """One thing wrong with a translator file, with where and how to fix it."""

    file: str
    line: int
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}: {self.message}"
        return f"{text} (fix: {self.fix})" if self.fix else text


@dataclass
class TranslatorLoadError(Exception):
    """Every problem found while loading translators, reported together."""

    problems: list[LoadProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        lines = [f"{count} problem{'s' if count != 1 else ''} in ACL translators:"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class NoEndpoint(TranslationError):
    """No endpoint of the translator covers the request's method and path: the translator
    cannot say what the service would make of it. The proxy lets legacy, the path's owner
    before the route was extracted, answer it (`/api/customers/abc` is its 404)."""


class BaseTranslator:
    """Identity translator to subclass for Python translators: override what differs."""

    name: str = ""
    bidirectional: bool = True
    # How the monolith writes JSON: json.dumps options (`separators`, `ensure_ascii`) for the
    # bodies acl.wire writes to legacy clients; None writes compact UTF-8.
    legacy_json: Mapping[str, Any] | None = None

    def request_to_new(self, req: RequestMessage, params: Mapping[str, str]) -> RequestMessage:
        return req

    def response_to_legacy(self, resp: ResponseMessage, req: RequestMessage) -> ResponseMessage:
        return resp

    def to_new(self, legacy: Any) -> Any:
        return legacy

    def to_legacy(self, new: Any) -> Any:
        return new
