"""`strangler ... --help` says each default a user would otherwise have to guess."""

from __future__ import annotations

import argparse
import re

import pytest

from proxy.cli import build_parser


def help_of(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return " ".join(sub.choices[command].format_help().split())  # argparse wraps lines


@pytest.mark.parametrize(
    ("command", "said"),
    [
        ("serve", "the route table (default: routes.yaml)"),
        # "one per core (1)" read as "one per core" being the default; it is 1.
        ("serve", "at most one per core (default: 1)"),
        ("routes", "the route table (default: routes.yaml)"),
        ("report", "for shadow.store (default: routes.yaml)"),
        ("report", "--format {text,json,html} (default: text)"),
    ],
)
def test_help_names_the_defaults(command, said):
    assert said in help_of(command), help_of(command)
    assert not re.search(r"\(\d+\)", help_of(command))
