"""`strangler`: serve, check, routes, report, acl."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from proxy import __version__


def _stopped_while_starting(signum: int, frame: Any) -> None:
    """SIGTERM before the server runs (a rollout that changed its mind, `docker stop` on a
    slow start): nothing is in flight, so this is a clean stop, exit 0, not death by
    signal. The server replaces this handler with its drain once it listens."""
    print("strangler: stopped (SIGTERM) before serving", file=sys.stderr)
    raise SystemExit(0)


def _cmd_serve(args: argparse.Namespace) -> int:
    import signal

    from proxy.startup_signals import STARTUP_SIGNALS

    signal.signal(signal.SIGTERM, _stopped_while_starting)
    STARTUP_SIGNALS.hold()
    from proxy.server import PINNED_ENV, ServeOptions, serve

    return serve(
        ServeOptions(
            # Not resolved: a symlinked file (a Kubernetes ConfigMap swaps `..data`) is
            # watched and reloaded by the path the user gave.
            config_path=Path(args.config).absolute(),
            host=args.host,
            port=args.port,
            admin_host=args.admin_host,
            admin_port=args.admin_port,
            workers=args.workers,
            worker_index=args.worker_index,
            supervisor_pid=args.supervisor_pid,
            pinned=os.environ.get(PINNED_ENV) if args.supervisor_pid is not None else None,
            # Escape hatch: STRANGLER_FAST_LANE=0 serves every request through aiohttp.
            fast_lane=os.environ.get("STRANGLER_FAST_LANE", "1") != "0",
            # STRANGLER_EXPRESS=0 keeps a task per fast-lane request (for comparison).
            express=os.environ.get("STRANGLER_EXPRESS", "1") != "0",
        )
    )


def _cmd_check(args: argparse.Namespace) -> int:
    """Every file is checked, so one run lists the problems of all (exit 1 if any has one)."""
    results = [_check_one(Path(name)) for name in args.files]
    return max(results)


def _check_one(path: Path) -> int:
    from proxy.config.problems import ConfigError
    from proxy.server import load_runtime

    try:
        runtime = load_runtime(path, secrets=False)  # CI validating a file has no secrets
    except ConfigError as exc:
        for problem in exc.problems:
            print(str(problem))
        print(f"{path}: {len(exc.problems)} problem(s); the file was not accepted", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - anything else is still "not valid"
        text = str(exc)
        print(text if text.startswith(f"{path}:") else f"{path}: {text}")
        return 1
    config = runtime.config
    print(
        f"{path}: OK: {len(config.routes)} routes, {len(config.upstreams)} upstreams, "
        f"default {config.default}"
    )
    from proxy.config.loader import config_warnings
    from proxy.runtime import missing_secrets

    for warning in (*config_warnings(config), *runtime.notes, *missing_secrets(config)):
        print(f"warning: {warning}")
    return 0


def _cmd_routes(args: argparse.Namespace) -> int:
    from proxy.server import load_runtime

    try:
        config = load_runtime(Path(args.config), secrets=False).config
    except Exception as exc:  # noqa: BLE001
        print(str(exc), file=sys.stderr)
        return 1
    rows = [("ROUTE", "MATCH", "METHODS", "MODE", "ANSWERS", "REWRITE", "ACL")]
    for r in config.routes:
        m = r.match
        match = m.path or (f"{m.prefix}/*" if m.prefix and m.prefix != "/" else "/*")
        if m.regex:
            match = f"~{m.regex}"
        if m.host:
            match = f"host={m.host} {match}"
        for h in m.headers:
            match += f" [{h.name}: {h.value}]" if h.value is not None else f" [{h.name} ~{h.regex}]"
        mode = r.mode + (f" {r.canary.percent:g}%" if r.mode == "canary" else "")
        rows.append(
            (
                r.name,
                match,
                ",".join(sorted(m.methods)) if m.methods else "*",
                mode,
                _answers(r, config.default),
                r.rewrite or "-",
                r.acl or "-",
            )
        )
    rows.append(("(default)", "*", "*", "legacy", config.default, "-", "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _answers(route: Any, default: str) -> str:
    """Who answers the client, where the target comes in, and who is pinned elsewhere."""
    target = route.target or default
    if route.mode == "shadow":
        answer = f"{default} (shadow: {target})"
    elif route.mode == "canary":
        answer = f"{target} / {default}"
    elif route.mode == "extracted":
        answer = target + (f" (fallback: {default})" if route.fallback else "")
    else:
        answer = default
    pins = route.tenants
    if route.target and pins.extracted and route.mode != "extracted":
        answer += f"; {target} for {', '.join(sorted(pins.extracted))}"
    if route.target and pins.legacy and route.mode != "legacy":
        answer += f"; {default} for {', '.join(sorted(pins.legacy))}"
    return answer


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strangler", description="Strangler-fig migration proxy.")
    parser.add_argument("--version", action="version", version=f"strangler {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "serve",
        help="run the proxy",
        description="Serve the route table until SIGTERM/SIGINT (then drain in-flight "
        "requests). Edits to the file are picked up live (also SIGHUP, POST /-/reload).",
    )
    p.add_argument(
        "-c", "--config", default="routes.yaml", help="the route table (default: routes.yaml)"
    )
    p.add_argument("--host", help="listen address (overrides listen.host)")
    p.add_argument(
        "--port",
        type=_bounded(0, 65535),
        help="listen port, 0 for any free one (overrides listen.port)",
    )
    p.add_argument("--admin-host", help="admin API address (overrides admin.host)")
    p.add_argument(
        "--admin-port", type=_bounded(0, 65535), help="admin API port (overrides admin.port)"
    )
    p.add_argument(
        "--workers",
        type=_bounded(1, 256),
        default=1,
        help="worker processes sharing the port (SO_REUSEPORT), at most one per core (default: 1)",
    )
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "check",
        help="validate routes.yaml files; exit 1 listing every problem",
        description="Validate route tables without starting anything: every problem with "
        "file, line, route, field and fix (exit 1), warnings for settings that do nothing "
        "or are risky, and a one-line summary when valid (exit 0).",
    )
    p.add_argument(
        "files", nargs="*", default=["routes.yaml"], metavar="FILE", help="default: routes.yaml"
    )
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser(
        "routes",
        help="print the effective route table",
        description="The table as the proxy will use it: order, match, mode, who answers.",
    )
    p.add_argument(
        "-c", "--config", default="routes.yaml", help="the route table (default: routes.yaml)"
    )
    p.set_defaults(func=_cmd_routes)

    # Both ship in the distribution: one that fails to import is a broken install, said
    # by the import error, not a subcommand quietly missing from --help.
    from acl.cli import register as register_acl
    from proxy.shadow.cli import register as register_report

    register_report(sub)
    register_acl(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (`strangler report --format json | head`): nothing more to say, and
        # no traceback. Point stdout at /dev/null so the interpreter's own flush at exit
        # does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
