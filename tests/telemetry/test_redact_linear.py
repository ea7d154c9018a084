"""Redaction runs on what clients and upstreams send (log lines, shadowed bodies up to 8 MiB):
each rule must take time linear in its input. These inputs made the rules backtrack
exponentially (an unclosed quote and a run of backslashes: 40 bytes froze the event loop for
13 s) or quadratically (1 MiB: minutes). The timeout is the assertion."""

from __future__ import annotations

import pytest

from proxy.shadow.redact import Redactor as StoreRedactor
from proxy.telemetry.redact import REDACTED, Redactor

MIB = 1 << 20

ADVERSARIAL = {
    "unclosed quote, backslashes (named value)": 'password: "' + "\\" * 80,
    "unclosed quote, backslashes (JSON-like pair)": 'x "token": "' + "\\" * 80,
    "unclosed quote, backslashes (pair)": "x sid: '" + "\\" * 80,
    "JWT starts everywhere": "eyJ-" * (MIB // 4),
    "JWT starts after every dot": "eyJ." * (MIB // 4),
    "JWT starts after every percent-escape": "%2FeyJaaaa" * (MIB // 10),
    "JWT starts after escapes and dashes": "%2D-eyJ%2DeyJ-" * (MIB // 14),
    "an element that never closes": "password <a" + " id=" * (MIB // 4),
    "dotted words before a pair": "a." * (MIB // 2) + " password=x",
    "blanks before no equals sign": "password " + "a " * (MIB // 2) + "=",
    "an unclosed quoted pair value": "password a = '" + "\\" * 80,
    "a long local part without a domain": "token " + "a" * MIB + "@",
    "header-like lines": ("X-Api-Key" + " " * 100 + "\n") * 5000,
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_rules_take_linear_time(text: str) -> None:
    for redactor in (Redactor(), StoreRedactor()):
        out = redactor.text(text)
        assert out.count("\n") == text.count("\n")  # lines are never joined or split


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "query",
    ["x=" + "%3Fa%3D" * (MIB // 7), "x=" + "%" * MIB, "x=" + ";a=" * (MIB // 3)],
    ids=["nested starts everywhere", "percent signs", "semicolon pairs"],
)
def test_nested_query_parameters_take_linear_time(query: str) -> None:
    assert Redactor().query(query).startswith("x=")


@pytest.mark.timeout(30)
def test_difference_paths_take_linear_time() -> None:
    assert StoreRedactor().path("$" + "[a=" * (MIB // 3)).startswith("$")


def test_the_linear_rules_still_redact() -> None:
    r = Redactor()
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    assert r.text(f"token={jwt}") == f"token={REDACTED}"
    assert r.text(f"got {jwt} back") == f"got {REDACTED} back"
    assert r.text(f"v1.{jwt}") == f"v1.{REDACTED}"
    assert r.text('"token": "a\\"b" next') == f'"token": "{REDACTED}" next'
    assert REDACTED in r.text('<input type="hidden" name="csrfmiddlewaretoken" value="abc">')
    assert r.text("db_password=hunter2 AWS_SECRET_ACCESS_KEY=abcd") == (
        f"db_password={REDACTED} AWS_SECRET_ACCESS_KEY={REDACTED}"
    )
    assert r.text("connect.sid=s%3ASECRET") == f"connect.sid={REDACTED}"
    # quoted keyword arguments, blanks around `=`, upper-case HTML
    assert r.text("Settings(db_password='hunter2')") == f"Settings(db_password='{REDACTED}')"
    assert r.text("secret_key = abcdef") == f"secret_key = {REDACTED}"
    assert (
        r.text('<INPUT NAME="CSRF_TOKEN" VALUE="S">')
        == f'<INPUT NAME="CSRF_TOKEN" VALUE="{REDACTED}">'
    )
    for prose in ("x = 1", "sorted(x, key=len)", "if key == value", "exit code=137"):
        assert r.text(prose) == prose
    assert StoreRedactor().text("mail a.b@example.com now") == f"mail {REDACTED} now"
