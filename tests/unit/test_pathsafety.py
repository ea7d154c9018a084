"""Path normalization: the path a request is routed by is the path that is forwarded."""

from __future__ import annotations

import pytest

from proxy.pathsafety import UnsafePath, normalize_path


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/api/customers", "/api/customers"),
        ("//api///customers", "/api/customers"),
        ("/api/./customers", "/api/customers"),
        ("/public/../api/customers", "/api/customers"),
        ("/../../api", "/api"),
        ("/api/customers/", "/api/customers/"),
        ("/api/%63ustomers", "/api/customers"),
        ("/a/%7e", "/a/~"),
        ("/a/%c3%a9", "/a/%C3%A9"),
        ("/a/b/..", "/a/"),
        ("/", "/"),
    ],
)
def test_normalizes(raw, normal):
    assert normalize_path(raw) == normal


@pytest.mark.parametrize(
    "raw",
    [
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/..%2fadmin",
        "/public/..%2Fadmin",
        "/public/..%5cadmin",
        "/public\\..\\admin",
        "/a%00b",
        "/a/%zz",
        "/a/%4",
        "relative/path",
        "/a\tb",
    ],
)
def test_rejects_ambiguous(raw):
    with pytest.raises(UnsafePath):
        normalize_path(raw)


def test_normalization_is_idempotent():
    for raw in ["//a/./b/../c/", "/x/%7e/%C3%A9", "/"]:
        once = normalize_path(raw)
        assert normalize_path(once) == once
