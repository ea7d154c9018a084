"""Every example in the user docs is at least well-formed, and full routes.yaml examples load.

docs/routes.md has its own, stricter test (tests/unit/test_config_docs.py); this one keeps
the other pages honest too: a YAML block must parse, a block that is a whole routes.yaml
(it has `version:` and `upstreams:`) must pass the real loader, and a Python block must
compile.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from proxy.config.loader import parse_config

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(lang: str) -> list[tuple[str, int, str]]:
    out = []
    for page in PAGES:
        text = page.read_text()
        for m in FENCE.finditer(text):
            if m.group(1) == lang:
                line = text.count("\n", 0, m.start()) + 2
                out.append((f"{page.relative_to(ROOT)}:{line}", line, m.group(2)))
    return out


YAML_BLOCKS = blocks("yaml")
PY_BLOCKS = blocks("python")


def test_the_docs_have_examples():
    assert len(YAML_BLOCKS) >= 10 and len(PY_BLOCKS) >= 1


@pytest.mark.parametrize(("where", "line", "text"), YAML_BLOCKS, ids=[b[0] for b in YAML_BLOCKS])
def test_yaml_examples(where, line, text):
    if "# invalid" in text:
        return  # documented failures are checked by the page's own test
    data = yaml.safe_load(text)
    if isinstance(data, dict) and "version" in data and "upstreams" in data:
        parse_config(text, source=where)


@pytest.mark.parametrize(("where", "line", "text"), PY_BLOCKS, ids=[b[0] for b in PY_BLOCKS])
def test_python_examples_compile(where, line, text):
    compile(text, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
