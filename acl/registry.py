"""Where translators come from: YAML files, and Python translators registered by name.

A `*.py` file in the translators directory is imported first, so it can register whole
translators (`@register("name")`) or extra converters and expression functions that the YAML
files then use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from acl.loader import load_declarative
from acl.translator import LoadProblem, Translator, TranslatorLoadError

DEFAULT_DIRECTORY = Path(__file__).resolve().parent / "translators"

TranslatorFactory = Callable[[], Translator]
PYTHON_TRANSLATORS: dict[str, tuple[TranslatorFactory, str]] = {}


def register(name: str) -> Callable[[TranslatorFactory], TranslatorFactory]:
    """Register a Python translator under `name`: a class or zero-argument factory returning an
    object with the Translator interface. Use it for what YAML cannot express."""

    def deco(factory: TranslatorFactory) -> TranslatorFactory:
        module = sys.modules.get(getattr(factory, "__module__", ""))
        origin = str(Path(module.__file__).resolve()) if module and module.__file__ else "?"
        PYTHON_TRANSLATORS[name] = (factory, origin)
        return factory

    return deco


def _import_module(path: Path) -> None:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    module_name = f"acl_translators_{path.stem}_{digest}"
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise


def load_translators(directory: Path | str = DEFAULT_DIRECTORY) -> Mapping[str, Translator]:
    """Every translator in `directory` by name (file stem or registered name). Raises
    TranslatorLoadError listing every problem in every file, so one run shows them all."""
    translators, problems = load_translators_reporting(directory)
    if problems:
        raise TranslatorLoadError(problems)
    return translators


def load_translators_reporting(
    directory: Path | str = DEFAULT_DIRECTORY,
) -> tuple[Mapping[str, Translator], list[LoadProblem]]:
    """The translators that loaded, and the problems of those that did not: the proxy
    refuses a routes.yaml only when a route names a translator that failed."""
    directory = Path(directory)
    problems: list[LoadProblem] = []
    if not directory.is_dir():
        raise TranslatorLoadError(
            [LoadProblem(str(directory), 0, "not a directory", "pass --dir acl/translators")]
        )
    for py in sorted(directory.glob("*.py")):
        if py.name.startswith("_"):
            continue
        try:
            _import_module(py)
        except Exception as exc:  # noqa: BLE001 - reported with file and line
            tb = traceback.extract_tb(exc.__traceback__)
            here = py.resolve()  # the traceback names it absolute; `py` may be relative
            line = next((f.lineno for f in reversed(tb) if Path(f.filename) == here), 0) or 0
            if isinstance(exc, SyntaxError) and exc.lineno:
                line = exc.lineno
            problems.append(
                LoadProblem(str(py), line, f"import failed: {type(exc).__name__}: {exc}")
            )
            # What it registered before failing is half a translator (its converters or
            # functions may be missing): not loaded, so a route naming it is refused.
            for name in [n for n, (_, o) in PYTHON_TRANSLATORS.items() if o == str(here)]:
                del PYTHON_TRANSLATORS[name]
    translators: dict[str, Translator] = {}
    origins: dict[str, str] = {}
    for yml in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            translators[yml.stem] = load_declarative(yml)
            origins[yml.stem] = str(yml)
        except TranslatorLoadError as exc:
            problems.extend(exc.problems)
    here = directory.resolve()
    for name, (factory, origin) in sorted(PYTHON_TRANSLATORS.items()):
        if Path(origin).parent != here:
            continue  # registered by a file of another translators directory
        if name in origins:
            problems.append(
                LoadProblem(
                    origins[name],
                    1,
                    f"translator `{name}` is defined both here and in Python ({origin})",
                    "rename one of them",
                )  # fmt: skip
            )
            continue
        try:
            translator = factory()
        except Exception as exc:  # noqa: BLE001
            problems.append(LoadProblem(origin, 0, f"Python translator `{name}` failed: {exc}"))
            continue
        missing = [
            attr
            for attr in ("request_to_new", "response_to_legacy", "to_new", "to_legacy")
            if not callable(getattr(translator, attr, None))
        ]
        if missing:
            problems.append(
                LoadProblem(
                    origin,
                    0,
                    f"Python translator `{name}` lacks {', '.join(missing)}",
                    "subclass acl.BaseTranslator",
                )  # fmt: skip
            )
            continue
        if not getattr(translator, "name", None):
            translator.name = name
        if not getattr(translator, "source", None):
            try:
                translator.source = origin
            except AttributeError:
                pass
        translators[name] = translator
    return MappingProxyType(translators), problems
