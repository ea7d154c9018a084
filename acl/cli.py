"""`strangler acl check` and `strangler acl run`: validate translators, try one on a sample.

Usable standalone (`python -m acl.cli ...`) or mounted by the proxy's CLI via `register`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from acl.registry import DEFAULT_DIRECTORY, load_translators
from acl.translator import (
    RequestMessage,
    ResponseMessage,
    TranslationError,
    TranslatorLoadError,
)

_DIR_HELP = (
    "translators directory (default: ./acl/translators when it exists, the one the proxy "
    "loads for ./routes.yaml; else the built-in translators)"
)


def _directory(given: Path | None) -> Path:
    """The folder the proxy would load for ./routes.yaml (`proxy.server.load_translators`)."""
    if given is not None:
        return given
    local = Path("acl") / "translators"
    return local if local.is_dir() else DEFAULT_DIRECTORY


def _cmd_check(args: argparse.Namespace) -> int:
    args.dir = _directory(args.dir)
    try:
        translators = load_translators(args.dir)
    except TranslatorLoadError as exc:
        print(exc, file=sys.stderr)
        return 1
    for name, t in sorted(translators.items()):
        kind = "bidirectional" if getattr(t, "bidirectional", False) else "one-way"
        source = getattr(t, "source", type(t).__module__)
        print(f"ok  {name:<20} {kind:<13} {source}")
    print(f"{len(translators)} translator(s) valid in {args.dir}")
    if args.samples is None:
        return 0
    if not args.samples.is_dir():
        # A mistyped folder must not pass as "every round trip ok": nothing was checked.
        print(f"--samples {args.samples}: not a directory; give the folder holding NAME.json "
              "sample files (a JSON array of legacy records each)", file=sys.stderr)  # fmt: skip
        return 1
    failures = 0
    for name, t in sorted(translators.items()):
        sample_file = args.samples / f"{name}.json"
        if not getattr(t, "bidirectional", False) or not sample_file.is_file():
            continue
        records = _read_sample(str(sample_file))
        if not isinstance(records, list):
            print(f"{sample_file}: expected a JSON array of legacy records", file=sys.stderr)
            return 1
        bad = _round_trip_failures(t, records)
        failures += len(bad)
        for index, problem in bad:
            print(f"{sample_file}[{index}]: {problem}", file=sys.stderr)
        print(f"round trip {name}: {len(records) - len(bad)}/{len(records)} samples ok")
    return 1 if failures else 0


def _round_trip_failures(translator: Any, records: list) -> list[tuple[int, str]]:
    """to_legacy(to_new(x)) == x for each sample; what differs, by top-level field."""
    bad = []
    for i, record in enumerate(records):
        try:
            back = translator.to_legacy(translator.to_new(record))
        except TranslationError as exc:
            bad.append((i, f"{exc.direction} failed at {exc.path}: {exc.message}"))
            continue
        if back == record:
            continue
        if isinstance(record, dict) and isinstance(back, dict):
            diffs = [
                f"{k}: {record.get(k, '<missing>')!r} -> {back.get(k, '<missing>')!r}"
                for k in sorted(set(record) | set(back))
                if record.get(k, ...) != back.get(k, ...)
            ]
        else:
            diffs = [f"{record!r} -> {back!r}"]
        bad.append((i, "round trip changed " + "; ".join(diffs)))
    return bad


def _read_sample(file: str) -> Any:
    """The JSON in FILE (or stdin); a file that cannot be read is one line, exit 1, no
    traceback."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SystemExit(f"{file}: no such file; give a JSON file, or - for stdin") from None
    except IsADirectoryError:
        raise SystemExit(f"{file}: is a directory; give a JSON file, or - for stdin") from None
    except UnicodeDecodeError as exc:
        raise SystemExit(f"{file}: not UTF-8 text ({exc.reason}); save it as UTF-8 JSON") from None
    except OSError as exc:
        raise SystemExit(f"{file}: cannot read: {exc.strerror}; check its permissions") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"{file}: not JSON: {exc}") from None


def _cmd_run(args: argparse.Namespace) -> int:
    args.dir = _directory(args.dir)
    try:
        translators = load_translators(args.dir)
    except TranslatorLoadError as exc:
        print(exc, file=sys.stderr)
        return 1
    translator = translators.get(args.name)
    if translator is None:
        known = ", ".join(sorted(translators)) or "none"
        print(f"no translator named {args.name!r} in {args.dir} (known: {known})", file=sys.stderr)
        return 2
    sample = _read_sample(args.file)
    try:
        if args.as_response:
            if args.to != "legacy":
                print("--response translates service responses, so it needs --to legacy",
                      file=sys.stderr)  # fmt: skip
                return 2
            method, _, path = args.as_response.partition(" ")
            req = RequestMessage(method.upper(), path or "/")
            resp = translator.response_to_legacy(ResponseMessage(args.status, (), sample), req)
            result: Any = {"status": resp.status, "body": resp.body}
        elif args.as_request:
            method, _, path = args.as_request.partition(" ")
            if args.to != "new":
                print("--request translates client requests, so it needs --to new",
                      file=sys.stderr)  # fmt: skip
                return 2
            path, _, qs = (path or "/").partition("?")
            query = tuple(parse_qsl(qs, keep_blank_values=True))
            req = translator.request_to_new(
                RequestMessage(method.upper(), path, query, (), sample), {}
            )
            result = {"method": req.method, "path": req.path, "query": list(req.query),
                      "body": req.body}  # fmt: skip
        elif args.to == "new":
            result = translator.to_new(sample)
        else:
            result = translator.to_legacy(sample)
    except TranslationError as exc:
        print(json.dumps(exc.to_json(), indent=2, ensure_ascii=False), file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _add_commands(acl: argparse.ArgumentParser) -> None:
    sub = acl.add_subparsers(dest="acl_command", required=True, metavar="{check,run}")
    check = sub.add_parser("check", help="load and validate every translator; exit 1 on problems")
    check.add_argument("--dir", type=Path, default=None, help=_DIR_HELP)
    check.add_argument(
        "--samples", type=Path, metavar="DIR",
        help="also check to_legacy(to_new(x)) == x for each bidirectional translator NAME "
        "over the legacy records in DIR/NAME.json (a JSON array)",
    )  # fmt: skip
    check.set_defaults(func=_cmd_check)
    run = sub.add_parser("run", help="translate a JSON sample and print the result")
    run.add_argument("name", help="translator name (file stem or registered name)")
    run.add_argument("file", help="JSON file with the sample, or - for stdin")
    run.add_argument("--to", choices=("new", "legacy"), required=True, help="target model")
    run.add_argument("--dir", type=Path, default=None, help=_DIR_HELP)
    how = run.add_mutually_exclusive_group()
    how.add_argument("--request", dest="as_request", metavar="'METHOD /path?query'",
                     help="treat FILE as a legacy request body (with --to new)")  # fmt: skip
    how.add_argument("--response", dest="as_response", metavar="'METHOD /legacy/path?query'",
                     help="treat FILE as the service's response body (with --to legacy)")  # fmt: skip
    run.add_argument("--status", type=int, default=200, help="response status for --response")
    run.set_defaults(func=_cmd_run)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Mount `acl check|run` under a parent CLI's subcommands (e.g. `strangler acl`)."""
    _add_commands(subparsers.add_parser("acl", help="anti-corruption layer translators"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m acl.cli", description=__doc__)
    _add_commands(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
