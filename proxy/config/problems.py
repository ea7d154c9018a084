"""What is wrong with a routes.yaml, said so a person can fix it without reading the code.

A config is validated in one pass that collects every problem, so an operator fixes a
broken file in one edit instead of one restart per typo. Each problem carries the file,
the line (from PyYAML's marks, never guessed), the route it belongs to and the dotted
field path, plus a concrete fix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_ROUTE_FIELD = re.compile(r"^routes\[\d+\](?:\.|$)")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file."""

    file: str
    line: int | None  # 1-based; None when the problem has no single place (empty file)
    route: str | None  # the route's name when the problem is inside a named route
    field: str  # dotted path from the top: "routes[2].match.methods"
    message: str
    fix: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        parts = [where]
        field = self.field
        if self.route is not None:
            parts.append(f"route {self.route!r}")
            # Inside a named route the route is already named; show the field relative to it.
            field = _ROUTE_FIELD.sub("", field)
        if field:
            parts.append(field)
        text = ": ".join(parts) + ": " + self.message
        if self.fix:
            text += "; " + self.fix
        return text


class ConfigError(ValueError):
    """The config is invalid; `problems` lists everything found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = sorted(
            problems, key=lambda p: p.line if p.line is not None else 0
        )
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.problems:
            return "invalid configuration"
        if len(self.problems) == 1:
            return str(self.problems[0])
        head = f"{self.problems[0].file}: {len(self.problems)} problems"
        return head + "\n" + "\n".join(f"  {p}" for p in self.problems)


class Invalid(ValueError):
    """A value is wrong: `message` says what, `fix` says how to repair it (pure checks raise it)."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """`"did you mean 'methods'?"` for a near miss, or None when nothing is close."""
    options = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in options}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f"did you mean {close[0]!r}?" if close else None


def one_of(word: str, choices: Iterable[str], what: str = "use one of") -> str:
    """A fix for an unknown value: a suggestion when one is close, else the full list."""
    options = list(choices)
    return did_you_mean(word, options) or f"{what}: {', '.join(options)}"
