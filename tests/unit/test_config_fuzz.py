"""Whatever the file says, the loader answers with a Config or a ConfigError, never a crash.

And a Config it accepts is internally consistent: every name a route uses exists, so the
request path can index `config.upstreams[...]` without a KeyError.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.loader import parse_config
from proxy.config.model import Config
from proxy.config.problems import ConfigError

DEMO = (Path(__file__).resolve().parents[2] / "routes.yaml").read_text(encoding="utf-8")
DEMO_LINES = DEMO.splitlines()

KEYS = st.sampled_from(
    [
        "version", "upstreams", "routes", "default", "legacy", "url", "name", "match", "path",
        "prefix", "regex", "methods", "mode", "target", "canary", "percent", "shadow", "noise",
        "tenants", "extracted", "headers", "rewrite", "timeout", "retry", "tenant", "header",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["legacy", "/api/{id}", "{x", "http://h:1", "canary", "(", "GET", "1", "", "off", "~"]
    ),
    st.text(max_size=12),
)
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(KEYS, st.text(max_size=6)), inner, max_size=5),
    ),
    max_leaves=30,
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
    try:
        config = parse_config(text, "fuzz.yaml", base_dir=Path("/tmp"))
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == "fuzz.yaml"
            assert problem.line is None or problem.line >= 1
            assert problem.message
            str(problem)
        return
    assert_consistent(config)


def assert_consistent(config: Config) -> None:
    assert config.default in config.upstreams
    names = [r.name for r in config.routes]
    assert len(names) == len(set(names))
    for route in config.routes:
        if route.target is not None:
            assert route.target in config.upstreams
        if route.mode != "legacy":
            assert route.target is not None
        assert route.shadow.noise in ("off", "primary-twice") or (
            route.shadow.noise in config.upstreams
        )
        kinds = [route.match.path, route.match.prefix, route.match.regex]
        assert sum(k is not None for k in kinds) == 1


@SETTINGS
@given(DOCS)
def test_any_yaml_document(doc) -> None:
    check(yaml.safe_dump(doc, allow_unicode=True))


@SETTINGS
@given(st.text(max_size=200))
def test_any_text(text: str) -> None:
    check(text)


@SETTINGS
@given(
    st.integers(0, len(DEMO_LINES) - 1),
    st.sampled_from(["", "  x: 1", "- 7", "      percent: 101", "  :", "\t", "{", "mode: shadow"]),
)
def test_the_demo_with_one_line_replaced(index: int, replacement: str) -> None:
    lines = list(DEMO_LINES)
    lines[index] = replacement
    check("\n".join(lines) + "\n")


@SETTINGS
@given(st.integers(0, len(DEMO_LINES) - 1), st.integers(1, 4))
def test_the_demo_with_lines_deleted(index: int, count: int) -> None:
    lines = DEMO_LINES[:index] + DEMO_LINES[index + count :]
    check("\n".join(lines) + "\n")
