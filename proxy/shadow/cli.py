"""`strangler report`: summarise the shadow diff store as text, JSON or one HTML page.

The proxy's CLI mounts this with `register(subparsers)`; `python -m proxy.shadow.cli report`
runs it standalone.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from .noise import ABSOLUTE_THRESHOLD, RELATIVE_THRESHOLD
from .report.build import build_report
from .report.html import render_html
from .report.text import render_text
from .store import StoreUnusable, open_store, store_from_config

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(text: str, now: float | None = None) -> float:
    """`30m`, `2h`, `7d`, an ISO-8601 time (UTC unless it says otherwise) or epoch seconds."""
    now = time.time() if now is None else now
    m = _DURATION.match(text)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since {text!r}: expected a duration like 30m, 2h, 7d or a time like "
            "2026-01-31T12:00:00Z"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _fraction(text: str) -> float:
    value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 0..1 or a percentage like 20%")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        default="routes.yaml",
        help="routes.yaml, for shadow.store (default: %(default)s)",
    )
    p.add_argument("--store", help="diff store URL, overriding shadow.store in routes.yaml")
    p.add_argument(
        "--format", choices=("text", "json", "html"), default="text", help="(default: %(default)s)"
    )
    p.add_argument("-o", "--output", help="write here instead of standard output")
    p.add_argument("--route", action="append", help="only this route (repeatable)")
    p.add_argument(
        "--since",
        help="only comparisons since: 30m, 2h, 7d, an ISO time (UTC unless it says) or "
        "epoch seconds",
    )
    p.add_argument(
        "--relative-threshold",
        type=_fraction,
        default=RELATIVE_THRESHOLD,
        help="Diffy's relative threshold |raw-noise|/(raw+noise) (default 20%%)",
    )
    p.add_argument(
        "--absolute-threshold",
        type=_fraction,
        default=ABSOLUTE_THRESHOLD,
        help="Diffy's absolute threshold |raw-noise|/samples (default 0.03%%)",
    )
    p.add_argument(
        "--fail-under",
        type=_fraction,
        help="exit 3 when the overall match rate is below this, 0..1 or a percentage like "
        "99.5%% (for CI gates)",
    )
    p.set_defaults(func=run_report)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Mount `report` on the proxy's `strangler` command line."""
    p = subparsers.add_parser(
        "report",
        help="summarise shadow comparisons (match rates, differing fields, latency)",
        description="Summarise the shadow diff store per route and endpoint.",
    )
    add_arguments(p)


def _open(args: argparse.Namespace):
    if args.store:
        return open_store(args.store, base_dir=Path.cwd(), readonly=True)
    from proxy.config.loader import load_config

    config = load_config(args.config)
    return store_from_config(config, readonly=True)


def _unknown_routes(args: argparse.Namespace) -> str | None:
    """With routes.yaml at hand, a `--route` it does not have is a typo: say which exist.
    (With `--store` alone there is no table to check against: the store's records are
    all there is.)"""
    if not args.route or args.store:
        return None
    from proxy.config.loader import load_config

    names = [route.name for route in load_config(args.config).routes]
    missing = [name for name in args.route if name not in names]
    if not missing:
        return None
    return (
        f"no route {', '.join(map(repr, missing))} in {args.config}; its routes: "
        f"{', '.join(names) or 'none'}"
    )


def run_report(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since) if args.since else None
    except argparse.ArgumentTypeError as exc:
        print(f"strangler report: {exc}", file=sys.stderr)
        return 2
    try:
        store = _open(args)
    except Exception as exc:  # noqa: BLE001 - the message names the file and the fix
        print(f"strangler report: {exc}", file=sys.stderr)
        return 1
    unknown = _unknown_routes(args)
    if unknown:
        store.close()
        print(f"strangler report: {unknown}", file=sys.stderr)
        return 2
    try:
        report = build_report(
            store.records(routes=args.route, since=since),
            routes=args.route,
            since=since,
            relative=args.relative_threshold,
            absolute=args.absolute_threshold,
        )
    except StoreUnusable as exc:  # names the file and the fix
        print(f"strangler report: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001
        print(f"strangler report: cannot read the diff store: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.format == "json":
        text = json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"
    elif args.format == "html":
        text = render_html(report)
    else:
        text = render_text(report)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(
                f"strangler report: cannot write -o {args.output}: {exc.strerror or exc}; "
                "choose a writable path (its folder must exist)",
                file=sys.stderr,
            )
            return 1
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    seen = {row["route"] for row in report["routes"]}
    for name in args.route or ():
        if name not in seen:
            print(f"strangler report: no comparisons stored for route {name!r}", file=sys.stderr)
    rate = report["totals"]["match_rate"]
    if args.fail_under is not None and (rate is None or rate < args.fail_under):
        return 3
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="strangler")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
