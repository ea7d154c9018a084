"""Shadow reports: `build_report` aggregates records; text, JSON and HTML render it."""

from .build import build_report

__all__ = ["build_report"]
