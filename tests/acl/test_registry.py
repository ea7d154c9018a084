"""Python translators registered by name sit beside YAML ones, with the same interface."""

from __future__ import annotations

import textwrap

import pytest

from acl import (
    DEFAULT_DIRECTORY,
    RequestMessage,
    ResponseMessage,
    Translator,
    TranslatorLoadError,
    load_translators,
)
from acl.registry import (
    load_translators_reporting,
)


def test_shipped_translators_load_and_satisfy_the_protocol():
    translators = load_translators(DEFAULT_DIRECTORY)
    assert {"customers", "catalog"} <= set(translators)
    for t in translators.values():
        assert isinstance(t, Translator)
    catalog = translators["catalog"]
    req = RequestMessage("GET", "/v1/products/3", (("page", "2"),), (), None)
    assert catalog.request_to_new(req, {"id": "3"}) is req
    resp = ResponseMessage(200, (), {"prod_id": 3})
    assert catalog.response_to_legacy(resp, req) is resp


def test_python_translator_and_custom_converter_from_the_directory(tmp_path):
    (tmp_path / "plugins.py").write_text(
        textwrap.dedent("""
        from acl import BaseTranslator, Codec, ConversionError, register, converter

        @converter("reverse")
        def reverse(args):
            def flip(value):
                if not isinstance(value, str):
                    raise ConversionError(f"expected a string, got {value!r}")
                return value[::-1]
            return Codec(flip, flip)

        @register("upper")
        class Upper(BaseTranslator):
            def to_new(self, legacy):
                return {k: v.upper() for k, v in legacy.items()}
        """)
    )
    (tmp_path / "words.yaml").write_text(
        "record:\n  fields:\n    - {legacy: w, new: word, convert: reverse}\n"
    )
    translators = load_translators(tmp_path)
    assert translators["upper"].name == "upper"
    assert translators["upper"].to_new({"a": "x"}) == {"a": "X"}
    assert translators["words"].to_new({"w": "abc"}) == {"word": "cba"}
    # Registered in another directory: not visible from the shipped one.
    assert "upper" not in load_translators(DEFAULT_DIRECTORY)


def test_python_translator_import_error_is_reported_with_line(tmp_path):
    (tmp_path / "broken.py").write_text("import acl\n\nraise RuntimeError('boom')\n")
    with pytest.raises(TranslatorLoadError) as info:
        load_translators(tmp_path)
    [problem] = info.value.problems
    assert problem.file.endswith("broken.py") and problem.line == 3
    assert problem.message == "import failed: RuntimeError: boom"


def test_import_error_line_from_a_relative_directory(tmp_path, monkeypatch):
    """`strangler acl check` reads `./acl/translators`: a relative path, still the line."""
    folder = tmp_path / "acl" / "translators"
    folder.mkdir(parents=True)
    (folder / "broken2.py").write_text("import acl\n\n\nraise RuntimeError('boom')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TranslatorLoadError) as info:
        load_translators("acl/translators")
    [problem] = info.value.problems
    assert str(problem).startswith("acl/translators/broken2.py:4: import failed")


def test_python_translator_missing_methods_and_name_clash(tmp_path):
    (tmp_path / "odd.py").write_text(
        textwrap.dedent("""
        from acl import register

        @register("half")
        class Half:
            def to_new(self, legacy):
                return legacy

        @register("dup")
        class Dup:
            pass
        """)
    )
    (tmp_path / "dup.yaml").write_text("record:\n  fields: [{legacy: a, new: b}]\n")
    with pytest.raises(TranslatorLoadError) as info:
        load_translators(tmp_path)
    messages = sorted(p.message for p in info.value.problems)
    assert messages[0].startswith("Python translator `half` lacks request_to_new")
    assert messages[1].startswith("translator `dup` is defined both here and in Python")


def test_missing_directory(tmp_path):
    with pytest.raises(TranslatorLoadError) as info:
        load_translators(tmp_path / "nope")
    assert "not a directory" in str(info.value)


def test_a_python_file_that_fails_after_registering_loads_no_translator(tmp_path):
    """Registered, then failed: half a translator is not one (the proxy refuses a route
    naming it, with the file and line) rather than serving it."""
    (tmp_path / "half.py").write_text(
        "from acl import BaseTranslator, register\n\n\n"
        "@register('half')\nclass Half(BaseTranslator):\n    name = 'half'\n\n\n"
        "raise RuntimeError('boom')\n"
    )
    translators, problems = load_translators_reporting(tmp_path)
    assert "half" not in translators
    assert [(p.line, p.message) for p in problems] == [(9, "import failed: RuntimeError: boom")]
