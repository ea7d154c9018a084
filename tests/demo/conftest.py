"""Session-wide demo world pieces: one seeded monolith that read-only tests share."""

from __future__ import annotations

import pytest

from tests.support.world import start_legacy


@pytest.fixture(scope="session")
def legacy_url(tmp_path_factory) -> str:
    """A monolith seeded with the SMALL dataset; do not write through it (start your own)."""
    with start_legacy(tmp_path_factory.mktemp("legacy-shared")) as url:
        yield url
