"""`timeout.idle`: how long pooled upstream connections are reused."""

from __future__ import annotations

import pytest

from proxy.config.loader import ConfigError, parse_config

BASE = """\
version: 1
upstreams:
  legacy: {url: "http://127.0.0.1:8000", timeout: {idle: IDLE}}
default: legacy
routes: []
"""


def test_upstream_idle_timeout_is_configurable_and_positive():
    config = parse_config(BASE.replace("IDLE", "1.5"))
    assert config.upstreams["legacy"].timeout.idle == 1.5
    with pytest.raises(ConfigError, match="timeout.idle"):
        parse_config(BASE.replace("IDLE", "0"))


def test_default_idle_is_30_seconds():
    config = parse_config(BASE.replace(", timeout: {idle: IDLE}", ""))
    assert config.upstreams["legacy"].timeout.idle == 30.0
