"""Structured logs: one JSON (or plain text) line per request and per error, secrets removed.

Every line carries the same `request_id` and `trace_id`, so an error can be joined to its
access line and to its trace. The formatter redacts on the way out, so a component that logs a
header dict or an exception holding a token cannot leak it; access lines are built from values
already known to be safe and skip that work on the hot path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Mapping
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import IO, Any

from proxy.telemetry.redact import Redactor

FLUSH_INTERVAL = 0.1  # seconds an access line may wait in the stream buffer
ACCESS_LOGGER = "strangler.access"
# The root logger's level, by name (WARNING silences request lines, keeps warnings and errors).
LOG_LEVEL_ENV = "STRANGLER_LOG_LEVEL"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HANDLER_MARK = "_strangler_handler"
_BARE = re.compile(r"[A-Za-z0-9._:/@+%,{}\[\]\-]+")


class _Clock:
    """ISO-8601 UTC timestamps with milliseconds; the seconds part is cached."""

    __slots__ = ("_second", "_prefix")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, t: float) -> str:
        second = int(t)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((t - second) * 1000):03d}Z"


class _BaseFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self.clock = _Clock()

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ts": self.clock.iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        safe = getattr(record, "safe_fields", None)
        if safe is not None:  # built by Telemetry from known-safe values
            out["msg"] = record.msg
            out.update(safe)
            return out
        out["msg"] = self.redactor.text(record.getMessage())
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            out.update(self.redactor.value(dict(extra)))
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
            out["traceback"] = self.redactor.text(self.formatException(record.exc_info))
        return out

    def access_line(self, fields: dict[str, Any], created: float) -> str:
        """The line `format` would write for an access record, without building the record."""
        out: dict[str, Any] = {
            "ts": self.clock.iso(created),
            "level": "info",
            "logger": ACCESS_LOGGER,
            "msg": "request",
        }
        out.update(fields)
        return self.compose(out)

    def compose(self, out: dict[str, Any]) -> str:
        raise NotImplementedError

    def format(self, record: logging.LogRecord) -> str:
        return self.compose(self.fields(record))


# `json.dumps(separators=(",", ":"), default=str)`, with the C encoder made once rather than on
# every call (which `JSONEncoder.encode` does): a quarter of an access line's cost.
_json_chunks = c_make_encoder(
    None, str, encode_basestring_ascii, None, ":", ",", False, False, True
)


def _json_encode(value: Any) -> str:
    return "".join(_json_chunks(value, 0))


if c_make_encoder is None:  # an interpreter without json's C accelerator
    _json_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode  # noqa: F811


class JsonFormatter(_BaseFormatter):
    """One compact JSON object per line."""

    def compose(self, out: dict[str, Any]) -> str:
        return _json_encode(out)

    def access_line(self, fields: dict[str, Any], created: float) -> str:
        # What `compose` writes for an access record, without copying `fields` into a new dict.
        if not fields:
            return super().access_line(fields, created)
        return self.access_json(_json_encode(fields), created)

    def access_json(self, encoded: str, created: float) -> str:
        """`access_line` for fields already encoded (`_json_encode` of a non-empty dict)."""
        return f'{{"ts":"{self.clock.iso(created)}",{_ACCESS_KEYS}{encoded[1:]}'


_ACCESS_KEYS = f'"level":"info","logger":"{ACCESS_LOGGER}","msg":"request",'
_INFINITY = float("inf")


def json_access_fields(
    request_id: Any,
    trace_id: Any,
    route: Any,
    mode: Any,
    side: Any,
    upstream: Any,
    method: Any,
    path: Any,
    status: Any,
    duration_ms: Any,
    bytes_out: Any,
    tenant: Any,
    query: Any,
    bytes_in: Any,
    client: Any,
    fallback: Any,
    error: Any,
) -> str | None:
    """`_json_encode` of the access line's fields dict as `Telemetry.request_finished`
    builds it (`query` and the fields after it only when not None), written straight from
    the values: building the dict and encoding it cost about 2,500 instructions a field.
    The same bytes: text through the same `encode_basestring_ascii`, ints and finite
    floats through their `repr`, as the C encoder writes them. None when a value is of
    another type (then the dict is built and encoded as before)."""
    if not (
        type(status) is int
        and type(bytes_out) is int
        and type(duration_ms) is float
        and -_INFINITY < duration_ms < _INFINITY
    ):
        return None
    esc = encode_basestring_ascii
    try:
        line = (
            f'{{"request_id":{"null" if request_id is None else esc(request_id)},'
            f'"trace_id":{"null" if trace_id is None else esc(trace_id)},'
            f'"route":{esc(route)},"mode":{esc(mode)},"side":{esc(side)},'
            f'"upstream":{"null" if upstream is None else esc(upstream)},'
            f'"method":{esc(method)},"path":{"null" if path is None else esc(path)},'
            f'"status":{status!r},"duration_ms":{duration_ms!r},"bytes_out":{bytes_out!r},'
            f'"tenant":{"null" if tenant is None else esc(tenant)}'
        )
        if query is not None:
            line += f',"query":{esc(query)}'
        if bytes_in is not None:
            if type(bytes_in) is not int:
                return None
            line += f',"bytes_in":{bytes_in!r}'
        if client is not None:
            line += f',"client":{esc(client)}'
        if fallback is not None:
            line += f',"fallback":{esc(fallback)}'
        if error is not None:
            line += f',"error":{esc(error)}'
    except TypeError:  # a value that is not text: the encoder decides
        return None
    return line + "}"


class TextFormatter(_BaseFormatter):
    """`ts LEVEL logger msg key=value ...` for people reading a terminal."""

    def compose(self, fields: dict[str, Any]) -> str:
        head = f"{fields.pop('ts')} {fields.pop('level').upper():5} {fields.pop('logger')} "
        msg = str(fields.pop("msg"))
        tb = fields.pop("traceback", None)
        parts = [f"{k}={_text_value(v)}" for k, v in fields.items() if v is not None]
        line = head + msg + (" " + " ".join(parts) if parts else "")
        return line + ("\n" + tb if tb else "")

    def access_line(self, fields: dict[str, Any], created: float) -> str:
        # What `compose` writes for an access line, without building and unpacking a dict.
        parts = [f"{self.clock.iso(created)} INFO  {ACCESS_LOGGER} request"]
        for k, v in fields.items():
            if v is not None:
                parts.append(f"{k}={_text_value(v)}")
        return " ".join(parts)


def _text_value(value: Any) -> str:
    # Bare only when it cannot be mistaken for another field or line; otherwise JSON-quoted.
    kind = type(value)
    if kind is str:
        if value.isascii() and value.isalnum():
            return value
        text = _TEXT_CACHE.get(value)
        if text is None:
            text = value if _BARE_MATCH(value) else json.dumps(value)
            if len(_TEXT_CACHE) >= 4096:
                _TEXT_CACHE.clear()
            _TEXT_CACHE[value] = text
        return text
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)  # what json.dumps writes, and always bare
    text = json.dumps(value, default=str)
    return text if _BARE_MATCH(text) else json.dumps(text)


_BARE_MATCH = _BARE.fullmatch
_TEXT_CACHE: dict[str, str] = {}  # route names, paths, addresses repeat from line to line


def make_formatter(log_format: str, redactor: Redactor) -> logging.Formatter:
    """The formatter for `TelemetryConfig.log_format` ("json" or "text")."""
    if log_format == "json":
        return JsonFormatter(redactor)
    if log_format == "text":
        return TextFormatter(redactor)
    raise ValueError(f"telemetry.log_format: unknown format {log_format!r}; use 'json' or 'text'")


def log_level_from_env() -> int:
    """The root level `STRANGLER_LOG_LEVEL` names (INFO when unset or empty).

    An operator's only way to quiet a proxy without code: `WARNING` drops the request lines
    (and the info lines) but keeps warnings and errors. A name that is not a level raises
    `ValueError` saying so, which `strangler serve` turns into a refusal to start: a typo
    must not leave the log as loud (or as quiet) as the operator did not ask for.
    """
    raw = os.environ.get(LOG_LEVEL_ENV, "").strip()
    if not raw:
        return logging.INFO
    name = raw.upper()
    if name == "WARN":
        name = "WARNING"
    if name not in _LEVELS:
        raise ValueError(
            f"{LOG_LEVEL_ENV}={raw!r} is not a log level; set it to one of "
            f"{', '.join(_LEVELS)}, or unset it for INFO"
        )
    return logging.getLevelNamesMapping()[name]


def configure_logging(
    log_format: str,
    redactor: Redactor,
    *,
    stream: IO[str] | None = None,
    level: int | None = None,
) -> logging.Handler:
    """Route the root logger (so every module's logs) through one redacting formatter.

    The access logger gets the same handler directly (not through the root), which lets
    `RequestLog.access` write its line without building a LogRecord. Idempotent: calling it
    again (on reload) replaces the handler it installed before. `level` None: the root level
    is `STRANGLER_LOG_LEVEL`'s (see `log_level_from_env`).
    """
    if level is None:
        level = log_level_from_env()
    root = logging.getLogger()
    access = logging.getLogger(ACCESS_LOGGER)
    for logger in (root, access):
        for old in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
            logger.removeHandler(old)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(log_format, redactor))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    access.addHandler(handler)
    access.propagate = False
    return handler


class RequestLog:
    """Writes the per-request line and errors with the same ids, skipping `findCaller`."""

    __slots__ = ("_access", "_errors", "_flush_pending")

    def __init__(self) -> None:
        self._access = logging.getLogger(ACCESS_LOGGER)
        self._errors = logging.getLogger("strangler.errors")
        self._flush_pending = False

    def _flush_soon(self, handler: logging.StreamHandler) -> None:
        """Flush within FLUSH_INTERVAL instead of once per line.

        A write system call per request was a tenth of the proxy's CPU (profiled under
        wrk); lines now reach the stream in batches, at most FLUSH_INTERVAL late, and
        `flush()` runs at shutdown.
        """
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a CLI, a test): flush right away
            handler.flush()
            return
        self._flush_pending = True
        loop.call_later(FLUSH_INTERVAL, self._flush, handler)

    def _flush(self, handler: logging.StreamHandler) -> None:
        self._flush_pending = False
        try:
            handler.flush()
        except (OSError, ValueError):
            pass
        take_dropped = getattr(handler.stream, "take_dropped", None)
        if take_dropped is not None and (dropped := take_dropped()):
            logging.getLogger("strangler").warning(
                "%d log lines were dropped: stdout was not read for a while (a stuck log "
                "collector?); requests were served meanwhile",
                dropped,
            )

    def flush(self) -> None:
        for handler in self._access.handlers:
            try:
                handler.flush()
            except (OSError, ValueError):
                pass

    def _direct(self) -> logging.StreamHandler | None:
        """The access logger's one stream handler when a line may be written to it directly
        (what `handle` would do for it, minus the record); None: through `handle`."""
        logger = self._access
        handlers = logger.handlers
        if len(handlers) == 1 and not logger.propagate and not logger.filters:
            handler = handlers[0]
            if (
                isinstance(handler, logging.StreamHandler)
                and isinstance(handler.formatter, _BaseFormatter)
                and not handler.filters
                and handler.level <= logging.INFO
            ):
                return handler
        return None

    def json_direct(self) -> logging.StreamHandler | None:
        """`_direct`'s handler when it formats JSON and the access logger is on: then
        `write_json` takes an access line's fields already encoded (`json_access_fields`)."""
        if not self._access.isEnabledFor(logging.INFO):
            return None
        handler = self._direct()
        if handler is not None and type(handler.formatter) is JsonFormatter:
            return handler
        return None

    def write_json(self, handler: logging.StreamHandler, encoded: str) -> None:
        """Log one finished request through `json_direct`'s handler; `encoded` is
        `json_access_fields` of safe fields (see `Telemetry`)."""
        formatter = handler.formatter
        assert isinstance(formatter, JsonFormatter)
        self._write(handler, formatter.access_json(encoded, time.time()))

    def _write(self, handler: logging.StreamHandler, line: str) -> None:
        handler.acquire()
        try:
            handler.stream.write(line + handler.terminator)
        except (OSError, ValueError):
            pass  # a closed or broken log stream must not fail requests
        finally:
            handler.release()
        self._flush_soon(handler)

    def access(self, fields: dict[str, Any]) -> None:
        """Log one finished request; `fields` must already be safe (see `Telemetry`)."""
        logger = self._access
        if not logger.isEnabledFor(logging.INFO):
            return
        handler = self._direct()
        if handler is not None:
            # The hot path: what `handle` would do for this one handler, minus the record.
            formatter = handler.formatter
            assert isinstance(formatter, _BaseFormatter)
            self._write(handler, formatter.access_line(fields, time.time()))
            return
        record = logger.makeRecord(ACCESS_LOGGER, logging.INFO, "", 0, "request", None, None)
        record.safe_fields = fields
        logger.handle(record)

    def error(
        self,
        message: str,
        *,
        request_id: str | None,
        trace_id: str | None,
        exc: BaseException | None = None,
        **fields: Any,
    ) -> None:
        """Log a failure; `fields` and the exception text are redacted by the formatter."""
        logger = self._errors
        if not logger.isEnabledFor(logging.ERROR):
            return
        exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
        record = logger.makeRecord(logger.name, logging.ERROR, "", 0, message, None, exc_info)
        record.fields = {"request_id": request_id, "trace_id": trace_id, **fields}
        logger.handle(record)


class ThrottledWarnings:
    """At most one warning per key every `every` seconds, the next one saying how many were
    held back: a dead upstream under load would otherwise write a warning per request
    (thousands a second, beside the access lines that already record each one)."""

    def __init__(self, logger: logging.Logger, every: float = 10.0) -> None:
        self.logger = logger
        self.every = every
        self._last: dict[Any, float] = {}
        self._held: dict[Any, int] = {}

    def warn(
        self, key: Any, message: str, *args: Any, fields: Mapping[str, Any] | None = None
    ) -> None:
        """`fields` (the request's `request_id` and `trace_id`) become fields of the line."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._held[key] = self._held.get(key, 0) + 1
            return
        if len(self._last) > 10_000:  # keys are routes and reasons: bounded in practice
            self._last.clear()
            self._held.clear()
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            message += " (and %d more like it in the last %.0fs)"
            args = (*args, held, now - last if last is not None else self.every)
        self.logger.warning(message, *args, extra={"fields": fields} if fields else None)
