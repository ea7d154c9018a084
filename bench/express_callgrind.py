"""Instructions per express request under callgrind, per telemetry and shadow configuration.

Instruction counts do not move with the neighbours of a shared machine, so two revisions can
be compared exactly (bench/RESULTS.md, 2026-11-26 21:00). Needs valgrind, its headers
(valgrind/callgrind.h) and a C compiler. For the revision whose root is the cwd:

    python bench/express_callgrind.py [VARIANT ...]           # all variants without arguments

Each variant runs under `valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes`:
bench/express_profile.py's set-up (the real listener, handler and upstream protocol over
in-memory transports, nginx's answer), 2,000 warm-up requests, then instrumentation on, 1,000
requests, a dump, 3,000 requests, a dump; (second - first) / 2,000 = the event loop thread's
instructions per request, its two `sleep(0)` loop steps included. Variants: the routes of
bench/telemetry_bench.py with telemetry `off`, `metrics`, tracing to OTLP at sample 0
(`unsampled`), 1 (`sampled`) and 0.1 (`traced`), and a client traceparent (flags 00 or 01)
plus tracestate with tracing at 0.1 (`parent-00`, `parent-01`) or telemetry off
(`offparent-00`); the routes of bench/shadow_bench.py, on the legacy route (`shadow-legacy`)
and on the shadow route (`shadow-shadow`, its candidate never answering: the queue full, as
under wrk). Sampled spans go to OTLP_PORT (an OTLP/HTTP stub such as
`python bench/telemetry_bench.py --serve-otlp PORT`; without it the exporter's POSTs fail),
with a queue large enough that no span is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import glob
import importlib.util
import os
import random
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path.cwd()  # the revision measured (its `proxy` package is imported)
sys.path.insert(0, str(ROOT))
spec = importlib.util.spec_from_file_location("express_profile", ROOT / "bench/express_profile.py")
ep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ep)

import proxy  # noqa: E402

TOGGLE_C = """#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(const char *s) { CALLGRIND_DUMP_STATS_AT(s); }
"""


def toggle_library(directory: Path) -> Path:
    """A tiny C library switching callgrind's instrumentation (no-ops outside valgrind)."""
    source, lib = directory / "cgtoggle.c", directory / "libcgtoggle.so"
    source.write_text(TOGGLE_C)
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(lib), str(source)], check=True)
    return lib


OTLP = f"http://127.0.0.1:{os.environ.get('OTLP_PORT', '9')}/v1/traces"  # 9: nothing listens
N1, N2 = 1000, 3000
TEL = {
    "off": "metrics: false\ntraces: {exporter: none}",
    "metrics": "metrics: true\ntraces: {exporter: none}",
    "unsampled": f"metrics: true\ntraces: {{exporter: otlp, endpoint: '{OTLP}', sample: 0.0}}",
    "sampled": f"metrics: true\ntraces: {{exporter: otlp, endpoint: '{OTLP}', sample: 1.0}}",
    "traced": f"metrics: true\ntraces: {{exporter: otlp, endpoint: '{OTLP}', sample: 0.1}}",
}
VARIANTS = [
    *TEL,
    "parent-00",
    "parent-01",
    "offparent-00",
    "shadow-legacy",
    "shadow-shadow",
]


def telemetry_table(telemetry: str) -> str:  # bench/telemetry_bench.py's routes_yaml
    head = textwrap.dedent(
        """\
        version: 1
        upstreams:
          legacy:
            url: http://127.0.0.1:8000
        default: legacy
        routes:
          - name: customer-detail
            match: {path: "/api/customers/{id}"}
            mode: legacy
        telemetry:
        """
    )
    return head + textwrap.indent(telemetry, "  ") + "\n"


def shadow_table(work: str) -> str:  # bench/shadow_bench.py's routes_yaml
    return textwrap.dedent(
        f"""
        version: 1
        listen: {{host: 127.0.0.1, port: 8080}}
        admin: {{host: 127.0.0.1, port: 8081}}
        upstreams:
          legacy: {{url: "http://127.0.0.1:8000"}}
          candidate: {{url: "http://127.0.0.1:8000"}}
        default: legacy
        telemetry: {{log_format: text, metrics: true, traces: {{exporter: none}}}}
        shadow: {{store: "sqlite:///{work}/shadow.db"}}
        routes:
          - name: legacy
            match: {{prefix: /legacy}}
            mode: legacy
          - name: shadow
            match: {{prefix: /shadow}}
            mode: shadow
            target: candidate
        """
    )


async def run(variant: str, lib: str, warm: int = 2000, n1: int = N1, n2: int = N2) -> None:
    """Inside valgrind: serve `variant`'s requests, dumping after `n1` and `n2` more."""
    cg = ctypes.CDLL(lib)
    from proxy.client import _UpstreamProtocol
    from proxy.forward import UpstreamPool
    from proxy.handler import ProxyHandler
    from proxy.listener import EdgeConnection, Listener
    from proxy.runtime import RuntimeHolder
    from proxy.server import load_runtime
    from proxy.telemetry.core import Telemetry
    from proxy.upstream.registry import GuardRegistry

    work = tempfile.mkdtemp()
    routes = Path(work) / "routes.yaml"
    if variant in TEL or variant.startswith(("parent-", "offparent-")):
        base = "off" if variant.startswith("offparent-") else "traced"
        routes.write_text(telemetry_table(TEL.get(variant, TEL[base])))
        path = b"/api/customers/17"
    else:  # shadow-legacy / shadow-shadow
        routes.write_text(shadow_table(work))
        path = b"/legacy/p/17" if variant == "shadow-legacy" else b"/shadow/p/17"
    extra = b""
    if variant.startswith(("parent-", "offparent-")):  # a client sending a traceparent
        flags = variant[-2:].encode()
        extra = (
            b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"
            + flags
            + b"\r\ntracestate: vendor=abc,other=1\r\n"
        )
    request = b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" + extra + b"\r\n"
    runtime = load_runtime(routes)
    config = runtime.config
    pool = UpstreamPool()
    telemetry = Telemetry(config.telemetry, log_stream=open(os.devnull, "w"))  # noqa: SIM115
    telemetry.reconfigure(config)
    guards = GuardRegistry(config, on_transition=telemetry.breaker_changed)
    await guards.start()
    mirror = None
    if variant.startswith("shadow"):
        from proxy.shadow import mirror as mirror_mod

        mirror_mod.LAG_PROBE = 1e6  # no wall-clock timer: the lag probe never wakes

        loop = asyncio.get_running_loop()

        async def hang(upstream, req):  # a candidate that never answers: workers stay busy
            await loop.create_future()

        mirror = mirror_mod.ShadowMirror(
            None, send=hang, primary_upstream=config.default, count=telemetry.count
        )
    handler = ProxyHandler(
        RuntimeHolder(runtime), pool, guards=guards, telemetry=telemetry, mirror=mirror
    )
    listener = Listener(handler, lambda: asyncio.Protocol(), config.limits)
    loop = asyncio.get_running_loop()
    upstream = _UpstreamProtocol(loop)
    upstream.connection_made(ep.MemoryTransport())
    pool.pool(config.upstreams[config.default]).put(upstream)
    conn = EdgeConnection(listener)
    client = ep.MemoryTransport()
    conn.connection_made(client)

    async def one() -> None:
        conn.data_received(request)
        await asyncio.sleep(0)
        upstream.data_received(ep.ANSWER)
        await asyncio.sleep(0)

    for _ in range(warm):
        await one()
    assert client.sent[-1].endswith(ep.BODY), client.sent[-1:]
    assert listener.escalated <= 1, f"requests left the express path: {listener.escalated}"
    random.seed(12345)
    cg.cg_start()
    cg.cg_zero()
    for _ in range(n1):
        await one()
    cg.cg_dump(f"n{n1}".encode())
    for _ in range(n2):
        await one()
    cg.cg_dump(f"n{n2}".encode())
    cg.cg_stop()
    assert listener.escalated <= 1, f"requests left the express path: {listener.escalated}"
    sink = telemetry.tracing.provider if getattr(telemetry, "tracing", None) else None
    extra = ""
    if sink is not None:
        extra = f" spans queued={len(getattr(sink, '_queue', ()))} dropped={getattr(sink, 'dropped', '?')}"
    if mirror is not None:
        st = mirror._stats.get("shadow")
        extra += (
            f" mirror: submitted={st.submitted} enqueued={st.enqueued} dropped={dict(st.dropped)}"
            if st
            else " mirror: no stats"
        )
    print(f"{variant}: proxy={proxy.__file__}{extra}", file=sys.stderr)


def _totals(path: str) -> int:
    text = Path(path).read_text()
    m = re.search(r"^totals:\s+(\d+)", text, re.M) or re.search(r"^summary:\s+(\d+)", text, re.M)
    assert m, path
    return int(m.group(1))


def measure(variant: str, lib: Path, out: Path) -> float:
    """Instructions per request of the event loop thread for `variant`."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="0")
    env["OTEL_BSP_MAX_QUEUE_SIZE"] = "1000000"  # no span dropped, whenever the exporter runs
    cmd = ["valgrind", "-q", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes"]
    cmd += [f"--callgrind-out-file={out}/{variant}.%p", sys.executable, __file__]
    subprocess.run([*cmd, "--inside", variant, "--lib", str(lib)], cwd=ROOT, env=env, check=True)
    # callgrind.out naming: NAME.PID.DUMP-THREAD; thread 01 runs the event loop
    first, second = (_totals(glob.glob(f"{out}/{variant}.*.{n}-01")[0]) for n in (1, 2))
    return (second - first) / (N2 - N1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="*", help=f"some of {', '.join(VARIANTS)}")
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    parser.add_argument("--lib", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        import uvloop

        uvloop.run(run(args.inside, args.lib))
        return
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}; use {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="strangler-callgrind-") as tmp:
        lib = toggle_library(Path(tmp))
        for variant in args.variants or VARIANTS:
            per_request = measure(variant, lib, Path(tmp))
            print(f"{variant:14} {per_request / 1000:8.1f}k instructions/request", flush=True)


if __name__ == "__main__":
    main()
