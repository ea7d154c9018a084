"""Helpers: write a translator file into a temporary directory and load it for real."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from acl import DeclarativeTranslator, load_declarative


@pytest.fixture
def write_translator(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "t") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def make_translator(write_translator) -> Callable[..., DeclarativeTranslator]:
    def make(text: str, name: str = "t") -> DeclarativeTranslator:
        return load_declarative(write_translator(text, name))

    return make
