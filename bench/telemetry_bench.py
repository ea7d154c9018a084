"""What observability costs: proxy throughput with metrics and tracing on, as ratios to off.

Three variants of the same routes.yaml, measured interleaved (the machine is shared and noisy,
so only ratios measured in one run mean anything):

  off      telemetry.metrics false, traces none        (the baseline)
  metrics  metrics true, traces none                   (target: < 5% fewer requests/s)
  traced   metrics true, traces otlp at 10% sampling   (target: < 15% fewer requests/s)
           to a local OTLP/HTTP collector stub

Each proxy is `python -m proxy.cli serve` in front of a minimal keep-alive upstream; load is
`wrk`. Run `python bench/telemetry_bench.py` (or `run()` from bench/run.py); results are
printed and written to bench/out/telemetry.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.procs import free_port, running, wait_http  # noqa: E402

PY = sys.executable
DURATION = os.environ.get("BENCH_DURATION", "6s")
CONNECTIONS = os.environ.get("BENCH_CONNECTIONS", "32")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
TARGETS = {"metrics": 0.05, "traced": 0.15}

BODY = b'{"cust_id":17,"cust_nm":"DOE, Jane","status_cd":"A","tenant_id":"acme"}'


# -- stub servers (run as subprocesses of this file) --------------------------------------------


class _Fixed(asyncio.Protocol):
    """Answers every HTTP/1.1 request on a keep-alive connection with one fixed response.

    Bodies are skipped by count, not buffered: the OTLP stub receives batches of hundreds of
    kilobytes and must not spend CPU the proxy under test would otherwise get."""

    response = b""

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""
        self.skip = 0  # body bytes of the current request still to come

    def data_received(self, data):
        if self.skip:
            if len(data) <= self.skip:
                self.skip -= len(data)
                if not self.skip:
                    self.transport.write(self.response)
                return
            data, self.skip = data[self.skip :], 0
            self.transport.write(self.response)
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            m = re.search(r"(?im)^content-length:\s*(\d+)", head)
            length = int(m.group(1)) if m else 0
            rest = self.buf[end + 4 :]
            if len(rest) < length:
                self.buf, self.skip = b"", length - len(rest)
                return
            self.buf = rest[length:]
            self.transport.write(self.response)


def _serve(port: int, response: bytes) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    _Fixed.response = response

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Fixed, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def upstream_response() -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
    )


def otlp_response() -> bytes:
    # An empty ExportTraceServiceResponse is a valid (zero-byte) protobuf message.
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"


# -- the benchmark ------------------------------------------------------------------------------


def routes_yaml(upstream_port: int, telemetry: str) -> str:
    head = textwrap.dedent(
        f"""\
        version: 1
        upstreams:
          legacy:
            url: http://127.0.0.1:{upstream_port}
        default: legacy
        routes:
          - name: customer-detail
            match: {{path: "/api/customers/{{id}}"}}
            mode: legacy
        telemetry:
        """
    )
    return head + textwrap.indent(telemetry, "  ") + "\n"


def variants(otlp_port: int, detail: bool = False) -> dict[str, str]:
    """The configurations compared; `detail` adds tracing with every request unsampled
    (`unsampled`, sample 0) and with every request sampled (`sampled`, sample 1)."""
    endpoint = f"'http://127.0.0.1:{otlp_port}/v1/traces'"
    extra = {
        "unsampled": f"metrics: true\ntraces: {{exporter: otlp, endpoint: {endpoint}, sample: 0.0}}",
        "sampled": f"metrics: true\ntraces: {{exporter: otlp, endpoint: {endpoint}, sample: 1.0}}",
    }
    return {
        "off": "metrics: false\ntraces: {exporter: none}",
        "metrics": "metrics: true\ntraces: {exporter: none}",
        "traced": (
            "metrics: true\n"
            f"traces: {{exporter: otlp, endpoint: 'http://127.0.0.1:{otlp_port}/v1/traces', "
            "sample: 0.1}"
        ),
    } | (extra if detail else {})


def wrk(url: str, duration: str = DURATION) -> tuple[float, int]:
    """Requests per second and the number of requests completed."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, int(re.search(r"(\d+) requests in", out).group(1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_once(config: Path, attempts: int = 3) -> tuple[float, float]:
    """One proxy on fresh ports: (requests/s, proxy CPU microseconds per request).

    Retried on a start-up failure: on a shared machine another process can grab a port
    between `free_port()` and the proxy binding it.
    """
    for attempt in range(attempts):
        port, admin = free_port(), free_port()
        args = [PY, "-m", "proxy.cli", "serve", "-c", str(config)]
        args += ["--port", str(port), "--admin-port", str(admin)]
        try:
            with running(
                args, ready_url=f"http://127.0.0.1:{admin}/-/health", stderr=subprocess.DEVNULL
            ) as proxy:
                url = f"http://127.0.0.1:{port}/api/customers/17"
                wait_http(url)
                wrk(url, "1s")  # warm-up: connections, caches
                before = cpu_seconds(proxy.pid)
                per_second, count = wrk(url)
                used = cpu_seconds(proxy.pid) - before
                return per_second, round(used / max(count, 1) * 1e6, 2)
        except (TimeoutError, RuntimeError) as exc:
            if attempt == attempts - 1:
                raise
            print(f"retrying {config.name}: {exc}", file=sys.stderr)
    raise AssertionError("unreachable")


def _paired(values: dict[str, list[float]], name: str, *, cpu: bool) -> float:
    """The median over rounds of each round's cost against that round's baseline.

    Variants of one round run back to back, so a ratio within a round cancels most of the
    drift of a shared machine's background load; medians of whole variants do not."""
    pairs = zip(values[name], values["off"], strict=True)
    ratios = [(v / off - 1) if cpu else (1 - v / off) for v, off in pairs]
    return round(statistics.median(ratios), 4)


def run(rounds: int = ROUNDS, detail: bool = False) -> dict:
    """Measure all variants `rounds` times, interleaved; returns medians and cost ratios."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    me = str(Path(__file__).resolve())
    up_port, otlp_port = free_port(), free_port()
    names = list(variants(0, detail))
    rps: dict[str, list[float]] = {name: [] for name in names}
    # CPU time per request of the proxy process: robust to other load on a shared machine,
    # where requests/s swings with whatever else runs.
    cpu_us: dict[str, list[float]] = {name: [] for name in names}
    with (
        tempfile.TemporaryDirectory(prefix="strangler-telbench-") as tmp,
        running(
            [PY, me, "--serve-upstream", str(up_port)], ready_url=f"http://127.0.0.1:{up_port}/"
        ),
        running(
            [PY, me, "--serve-otlp", str(otlp_port)], ready_url=f"http://127.0.0.1:{otlp_port}/"
        ),
    ):
        configs = {}
        for name, telemetry in variants(otlp_port, detail).items():
            path = Path(tmp) / f"routes-{name}.yaml"
            path.write_text(routes_yaml(up_port, telemetry))
            configs[name] = path
        for _ in range(rounds):
            for name, path in configs.items():
                per_second, cpu_per_request = measure_once(path)
                rps[name].append(per_second)
                cpu_us[name].append(cpu_per_request)
    medians = {name: statistics.median(values) for name, values in rps.items()}
    cpu = {name: statistics.median(values) for name, values in cpu_us.items()}
    others = names[1:]
    result = {
        "rps": rps,
        "median_rps": medians,
        "cpu_us_per_request": cpu_us,
        "median_cpu_us_per_request": cpu,
        # Each the median of per-round ratios to "off" (see `_paired`).
        "cost": {name: _paired(rps, name, cpu=False) for name in others},
        "cpu_cost": {name: _paired(cpu_us, name, cpu=True) for name in others},
        "targets": TARGETS,
        "duration": DURATION,
        "connections": CONNECTIONS,
        "rounds": rounds,
    }
    result["ok"] = all(result["cost"][k] < v for k, v in TARGETS.items())
    result["cpu_ok"] = all(result["cpu_cost"][k] < v for k, v in TARGETS.items())
    return result


def report(result: dict) -> str:
    lines = [
        "telemetry cost, medians of interleaved runs; cost = median of per-round ratios to off",
        "(throughput; proxy CPU per request)",
    ]
    base = result["median_rps"]["off"]
    cpu = result["median_cpu_us_per_request"]
    lines.append(f"  off       {base:9.0f} req/s  {cpu['off']:7.1f} us CPU/req  (baseline)")
    for name in result["cost"]:
        cost, ccost = result["cost"][name], result["cpu_cost"][name]
        line = (
            f"  {name:9} {result['median_rps'][name]:9.0f} req/s  {cpu[name]:7.1f} us CPU/req"
            f"  cost {cost:6.1%} throughput, {ccost:6.1%} CPU"
        )
        target = result["targets"].get(name)
        if target is not None:
            verdict = "ok" if max(cost, ccost) < target else "OVER TARGET"
            line += f"  (target < {target:.0%}: {verdict})"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-otlp", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument(
        "--detail",
        action="store_true",
        help="also measure tracing with no request sampled and with every request sampled",
    )
    args = parser.parse_args(argv)
    if args.serve_upstream:
        _serve(args.serve_upstream, upstream_response())
        return 0
    if args.serve_otlp:
        _serve(args.serve_otlp, otlp_response())
        return 0
    result = run(args.rounds, args.detail)
    print(report(result))
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "telemetry.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
