"""Every ```yaml block in docs/routes.md loads, or fails with the message it documents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.config.loader import parse_config
from proxy.config.problems import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "routes.md"
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
_INVALID = "# invalid:"


def yaml_blocks() -> list[tuple[int, str]]:
    """(line in routes.md, block text) for every yaml block."""
    text = DOC.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in _BLOCK.finditer(text)]


BLOCKS = yaml_blocks()


def test_the_doc_has_valid_and_invalid_examples():
    invalid = [b for _, b in BLOCKS if b.startswith(_INVALID)]
    assert len(BLOCKS) >= 10 and len(invalid) >= 5


@pytest.mark.parametrize(("line", "block"), BLOCKS, ids=[f"routes.md:{n}" for n, _ in BLOCKS])
def test_doc_block(line: int, block: str, tmp_path: Path) -> None:
    first = block.splitlines()[0]
    if not first.startswith(_INVALID):
        config = parse_config(block, f"routes.md:{line}", base_dir=tmp_path)
        assert config.version == 1 and config.upstreams
        return
    expected = first[len(_INVALID) :].strip()
    assert expected, "an `# invalid:` block must say which message it expects"
    with pytest.raises(ConfigError) as info:
        parse_config(block, "routes.yaml", base_dir=tmp_path)
    assert len(info.value.problems) == 1, str(info.value)
    assert expected in str(info.value), f"documented {expected!r}, got {info.value}"
