"""Path normalization: the path a request is routed by is the path that is forwarded."""

from __future__ import annotations

import pytest

from proxy.pathsafety import UnsafePath, normalize_path, without_params


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
        "/public/..;/admin",  # Tomcat reads `..;` as `..`
        "/public/..;jsessionid=1/admin",
        "/a/.;x/b",
        "/public/%2e%2e;/admin",
    ],
)
def test_rejects_ambiguous(raw):
    with pytest.raises(UnsafePath):
        normalize_path(raw)


def test_normalization_is_idempotent():
    for raw in ["//a/./b/../c/", "/x/%7e/%C3%A9", "/"]:
        once = normalize_path(raw)
        assert normalize_path(once) == once


@pytest.mark.parametrize(
    ("raw", "bare"),
    [
        ("/a;jsessionid=1/b", "/a/b"),
        ("/a/b;v=1", "/a/b"),
        ("/a;x;y/b;z", "/a/b"),
        ("/plain/path", "/plain/path"),
    ],
)
def test_path_parameters_are_kept_and_can_be_read_as_tomcat_would(raw, bare):
    assert normalize_path(raw) == raw  # forwarded as sent: Django sees `;` as data
    assert without_params(raw) == bare
