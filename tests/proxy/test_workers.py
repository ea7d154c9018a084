"""`--workers N`: N processes on one port (SO_REUSEPORT); a reload reaches every worker."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import textwrap
import threading
import time

import httpx
import pytest

from proxy.telemetry.metrics import samples_from_text
from tests.proxy.conftest import base_config
from tests.support.procs import PYTHON, ROOT, free_port, running, wait_until

SHADOW_ROUTE = """\
- name: shadowed
  match: {prefix: "/api/shadowed"}
  mode: shadow
  target: svc
"""


def fresh_get(url: str) -> httpx.Response:
    # A new connection each time, so the kernel spreads requests over the workers.
    with httpx.Client(timeout=5) as c:
        return c.get(url, headers={"Connection": "close"})


def worker_pids(supervisor: int) -> set[int]:
    out = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == supervisor:
                    out.add(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    return out


def test_two_workers_share_the_port_and_all_reload(start_proxy):
    p = start_proxy(args=("--workers", "2"))
    wait_until(lambda: len(worker_pids(p.proc.pid)) == 2, what="two workers")
    assert all(
        fresh_get(p.url + "/api/items/1").json()["raw_path"] == "/v1/items/1" for _ in range(20)
    )

    p.write_config(
        p.config.read_text().replace('rewrite: "/v1/items/{id}"', 'rewrite: "/v9/items/{id}"')
    )
    httpx.post(p.admin + "/-/reload")

    def all_new() -> bool:
        return all(
            fresh_get(p.url + "/api/items/1").json()["raw_path"] == "/v9/items/1" for _ in range(20)
        )

    wait_until(all_new, what="every worker to serve the new table")

    # A worker that dies is replaced; the port keeps answering.
    victim = sorted(worker_pids(p.proc.pid))[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(worker_pids(p.proc.pid)) == 2 and victim not in worker_pids(p.proc.pid),
        what="the supervisor to replace the dead worker",
    )
    assert fresh_get(p.url + "/x").status_code == 200

    # SIGTERM to the supervisor drains every worker and exits 0.
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(20) == 0


def serve_until_it_exits(config, *args: str) -> subprocess.CompletedProcess:
    """`strangler serve -c config ...` expected to refuse to start: its exit and output."""
    return subprocess.run(
        [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_clear_line_and_exit_1(tmp_path, upstreams, workers):
    """No traceback, and with several workers no restart loop: the supervisor stops."""
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    config = tmp_path / "routes.yaml"
    config.write_text(base_config(upstreams, port, free_port()))
    try:
        out = serve_until_it_exits(config, "--workers", workers)
    finally:
        taken.close()
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert f"cannot listen for requests (listen) on 127.0.0.1:{port}" in out.stderr
    assert "another process has it" in out.stderr
    assert "restarting" not in out.stderr + out.stdout


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_proxy_and_its_admin_api_on_one_port_is_said_before_binding(tmp_path, workers):
    """The listen port equal to the admin API's (its 8081 default when `admin:` is left
    out, or the same --port and --admin-port) was the admin bind's "another process has
    it": the other process was the proxy itself."""
    port = free_port()
    defaulted = tmp_path / "defaulted.yaml"
    defaulted.write_text("version: 1\nlisten: {port: 8081}\nupstreams: {legacy: 'http://h:1'}\n")
    flags = tmp_path / "flags.yaml"
    flags.write_text("version: 1\nupstreams: {legacy: 'http://h:1'}\n")
    for config, args, said in (
        (defaulted, (), "listen.port and admin.port (8081 when not set) are both 8081"),
        (
            flags,
            ("--port", str(port), "--admin-port", str(port)),
            f"--port and --admin-port are both {port}",
        ),
    ):
        out = serve_until_it_exits(config, "--workers", workers, *args)
        assert out.returncode == 1, out.stderr
        assert f"strangler: cannot start: {said}" in out.stderr, out.stderr
        assert "another process" not in out.stderr and "Traceback" not in out.stderr
    assert (
        f"`admin: {{port: 8082}}` in {defaulted}, or --admin-port 8082"
        in serve_until_it_exits(defaulted).stderr
    )


def test_bad_numbers_on_the_command_line_are_refused_by_name():
    for args, message in (
        (["--workers", "0"], "0 is not between 1 and 256"),
        (["--port", "70000"], "70000 is not between 0 and 65535"),
        (["--port", "http"], "'http' is not a whole number"),
    ):
        out = subprocess.run(
            [PYTHON, "-m", "proxy.cli", "serve", *args], capture_output=True, text=True, cwd=ROOT
        )
        assert out.returncode == 2 and message in out.stderr, out.stderr


def test_workers_stop_when_their_supervisor_is_killed(start_proxy):
    p = start_proxy(args=("--workers", "2"))
    wait_until(lambda: len(worker_pids(p.proc.pid)) == 2, what="two workers")
    workers = worker_pids(p.proc.pid)
    p.proc.send_signal(signal.SIGKILL)  # no chance to stop them itself
    p.proc.wait(10)

    def gone(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited
        except FileNotFoundError:
            return True

    try:
        wait_until(lambda: all(gone(pid) for pid in workers), timeout=20, what="workers to stop")
    finally:
        for pid in workers:  # whatever happened, leave no worker behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def listening(p, workers: int, times: int = 1) -> bool:
    """Each of `workers` workers has logged that it listens, `times` times (restarts)."""
    log = p.log.read_text()
    return all(log.count(f"strangler worker {i} listening") >= times for i in range(workers))


def reloads_counted(admin: str) -> float:
    text = httpx.get(admin + "/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("strangler_config_reloads_total{")
    )


def test_post_reload_reloads_each_worker_once(start_proxy):
    """Worker 0 answers `POST /-/reload` and reloads; the supervisor then reloads the others
    (not worker 0 a second time, which counted each failed reload one time too many)."""
    p = start_proxy(args=("--workers", "3"))
    wait_until(lambda: len(worker_pids(p.proc.pid)) == 3, what="three workers")
    wait_until(lambda: listening(p, 3), what="every worker to serve")
    before = reloads_counted(p.admin)
    assert httpx.post(p.admin + "/-/reload").status_code == 200
    wait_until(lambda: reloads_counted(p.admin) >= before + 3, what="every worker to reload")
    history = httpx.get(p.admin + "/-/config").json()["history"]
    assert [e["trigger"] for e in history if e["trigger"] != "startup"] == ["admin"]
    assert reloads_counted(p.admin) == before + 3


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_shadow_store_that_cannot_be_opened_is_one_clear_line_and_exit_1(
    tmp_path, upstreams, workers
):
    """The usual cause is a read-only config folder (a container's /etc, a ConfigMap): the
    default store is a file beside routes.yaml. The message names the store and the fix."""
    from tests.proxy.conftest import DEFAULT_ROUTES

    config = tmp_path / "routes.yaml"
    extra = 'shadow: {store: "sqlite:////proc/strangler-nope/shadow.db"}\n'
    routes = DEFAULT_ROUTES + SHADOW_ROUTE  # without one the store is made at the first diff
    config.write_text(base_config(upstreams, free_port(), free_port(), routes, extra))
    out = serve_until_it_exits(config, "--workers", workers)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert "cannot open the shadow diff store sqlite:////proc/strangler-nope/shadow.db" in (
        out.stderr
    )
    assert "set `shadow.store`" in out.stderr
    assert "restarting" not in out.stderr + out.stdout


def test_a_damaged_shadow_store_is_named_once_with_the_fix(tmp_path, upstreams):
    """Not \"cannot open … cannot open …\" with two contradicting fixes: the file, what is
    wrong with it and what to do, once."""
    from tests.proxy.conftest import DEFAULT_ROUTES

    config = tmp_path / "routes.yaml"
    routes = DEFAULT_ROUTES + SHADOW_ROUTE
    config.write_text(base_config(upstreams, free_port(), free_port(), routes))
    store = tmp_path / "strangler-shadow.db"  # the default store, beside routes.yaml
    store.write_bytes(b"\x00garbage" * 1000)
    out = serve_until_it_exits(config)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert f"the shadow diff store '{store}' is not a SQLite database" in out.stderr
    assert "move it aside" in out.stderr and str(config) in out.stderr
    assert out.stderr.count("shadow diff store") == 1, out.stderr


def shadow_snapshot(admin: str) -> dict:
    return httpx.get(admin + "/-/shadow", timeout=5).json()


def test_without_a_shadow_route_the_store_is_made_at_the_first_comparison(tmp_path, start_proxy):
    """A proxy that shadows nothing neither creates the default store beside routes.yaml nor
    needs that folder writable (a ConfigMap is read-only); a reload that adds a shadow route
    creates it with the first comparison, and `strangler report` reads it."""
    p = start_proxy()
    assert httpx.get(p.url + "/api/items/1").status_code == 200
    store = tmp_path / "strangler-shadow.db"
    assert not store.exists()

    p.write_config(
        p.config.read_text().replace(
            "routes:\n", "routes:\n" + textwrap.indent(SHADOW_ROUTE, "  "), 1
        )
    )
    wait_until(
        lambda: (
            httpx.get(p.url + "/api/shadowed/1").json()["server"] == "legacy"
            and any(
                r["route"] == "shadowed" and r["compared"]
                for r in shadow_snapshot(p.admin)["routes"]
            )
        ),
        what="a comparison on the reloaded shadow route",
    )
    wait_until(lambda: shadow_snapshot(p.admin)["store"]["written"] >= 1, what="a stored diff")
    out = subprocess.run(
        [PYTHON, "-m", "proxy.cli", "report", "-c", str(p.config), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert [e["route"] for e in json.loads(out.stdout)["endpoints"]] == ["shadowed"]


def test_a_store_that_cannot_be_made_does_not_stop_a_proxy_without_shadow_routes(
    tmp_path, start_proxy
):
    """Where the default store would go there is something else (a read-only folder as
    well): the proxy still serves; once a reload adds a shadow route, its diffs are lost and
    counted (`failed`, `last_error` naming the file), never its requests."""
    blocker = tmp_path / "strangler-shadow.db"
    blocker.mkdir()  # sqlite cannot open a directory, even for root
    p = start_proxy()
    assert httpx.get(p.url + "/api/items/1").status_code == 200

    p.write_config(
        p.config.read_text().replace(
            "routes:\n", "routes:\n" + textwrap.indent(SHADOW_ROUTE, "  "), 1
        )
    )
    wait_until(
        lambda: (
            httpx.get(p.url + "/api/shadowed/1").status_code == 200
            and shadow_snapshot(p.admin)["store"]["failed"] >= 1
        ),
        what="a diff the store could not write",
    )
    store = shadow_snapshot(p.admin)["store"]
    assert str(blocker) in store["last_error"], store
    for _ in range(5):
        resp = httpx.get(p.url + "/api/shadowed/2")
        assert resp.status_code == 200 and resp.json()["server"] == "legacy"


def test_port_0_logs_the_port_it_got_and_is_refused_with_workers(tmp_path, upstreams):
    config = tmp_path / "routes.yaml"
    config.write_text(base_config(upstreams, free_port(), free_port()))
    out = serve_until_it_exits(config, "--workers", "2", "--port", "0")
    assert out.returncode == 1 and "give a fixed port" in out.stderr, out.stderr

    log = tmp_path / "proxy.log"
    admin = free_port()
    config.write_text(base_config(upstreams, free_port(), admin))
    with (
        log.open("w") as sink,
        running(
            [PYTHON, "-m", "proxy.cli", "serve", "-c", str(config), "--port", "0"],
            ready_url=f"http://127.0.0.1:{admin}/-/ready",
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        ),
    ):
        wait_until(lambda: "listening on" in log.read_text(), what="the listening line")
        line = next(x for x in log.read_text().splitlines() if "listening on" in x)
        port = int(line.split("http://127.0.0.1:", 1)[1].split(" ", 1)[0].rstrip('",'))
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/x").status_code == 200
        view = httpx.get(f"http://127.0.0.1:{admin}/-/config").json()
        assert view["config"]["listen"]["port"] == port


def test_a_second_supervisor_cannot_share_the_port_through_reuseport(
    start_proxy, tmp_path, upstreams
):
    """Workers bind with SO_REUSEPORT; a second `strangler serve --workers` on the same port
    (started by mistake, with another config) would silently get half the traffic."""
    first = start_proxy(args=("--workers", "2"))
    wait_until(lambda: len(worker_pids(first.proc.pid)) == 2, what="two workers")
    port = int(first.url.rsplit(":", 1)[1])
    config = tmp_path / "second.yaml"
    config.write_text(base_config(upstreams, port, free_port()))
    out = serve_until_it_exits(config, "--workers", "2")
    assert out.returncode == 1, out.stderr
    assert f"cannot listen for requests (listen) on 127.0.0.1:{port}" in out.stderr
    assert fresh_get(first.url + "/x").status_code == 200


def slow_request_in_flight(p, seconds: float) -> tuple[threading.Thread, dict[str, object]]:
    """GET /slow?s=`seconds` on a thread, once a worker counts it in flight (in any worker:
    `/-/ready` tells worker 0's alone); the dict gets `status`, or `error` when cut."""
    outcome: dict[str, object] = {}

    def slow_request() -> None:
        try:
            url = f"{p.url}/slow?s={seconds}"
            outcome["status"] = httpx.get(url, timeout=seconds + 15).status_code
        except Exception as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = type(exc).__name__

    def in_flight() -> float:
        text = httpx.get(p.admin + "/metrics").text
        return sum(v for n, _, v in samples_from_text(text) if n == "strangler_requests_in_flight")

    t = threading.Thread(target=slow_request)
    t.start()
    wait_until(lambda: in_flight() >= 1, what="the request in flight")
    return t, outcome


def test_ctrl_c_at_a_terminal_drains_every_worker(start_proxy):
    """A terminal's Ctrl-C signals its whole foreground process group. The workers leave it
    to their supervisor, which has them drain: it is not the second Ctrl-C that cuts."""
    p = start_proxy(extra="grace_period: 30\n", args=("--workers", "2"))
    wait_until(lambda: listening(p, 2), what="every worker to serve")
    t, outcome = slow_request_in_flight(p, 2)
    os.killpg(p.proc.pid, signal.SIGINT)  # the supervisor leads the group `running` made
    assert p.proc.wait(20) == 0
    t.join(15)
    assert outcome == {"status": 200}, outcome
    assert "interrupted again" not in p.log.read_text()


def test_a_second_ctrl_c_at_a_terminal_cuts_the_workers_drain(start_proxy):
    p = start_proxy(extra="grace_period: 30\n", args=("--workers", "2"))
    wait_until(lambda: listening(p, 2), what="every worker to serve")
    t, outcome = slow_request_in_flight(p, 25)
    os.killpg(p.proc.pid, signal.SIGINT)
    wait_until(lambda: p.log.read_text().count("draining:") == 2, what="both workers to drain")
    os.killpg(p.proc.pid, signal.SIGINT)
    assert p.proc.wait(15) == 0, "a second Ctrl-C must not wait for the 25 s request"
    t.join(15)
    assert "error" in outcome, outcome  # cut, not answered
    assert "interrupted again: cutting 1 requests in flight now" in p.log.read_text()


def test_a_restarted_worker_keeps_the_settings_its_siblings_run_with(start_proxy):
    """`listen` waits for a restart; a worker the supervisor restarts after a crash is not a
    restart of the proxy: it listens where its siblings do, not on the edited port."""
    p = start_proxy(args=("--workers", "2"))
    wait_until(lambda: len(worker_pids(p.proc.pid)) == 2, what="two workers")
    wait_until(lambda: listening(p, 2), what="every worker to serve")
    edited = free_port()
    p.write_config(p.config.read_text().replace(f"port: {p.port}}}", f"port: {edited}}}"))
    assert httpx.post(p.admin + "/-/reload").status_code == 200
    wait_until(lambda: p.log.read_text().count("`listen` changed") >= 2, what="both reloads")
    victim = worker_with_index(p.proc.pid, 0)  # the one serving the admin port
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        log = p.log.read_text()
        return victim not in worker_pids(p.proc.pid) and log.count(" listening on http") == 3

    wait_until(replaced, what="the supervisor to restart the worker, listening")
    with pytest.raises(httpx.ConnectError):
        fresh_get(f"http://127.0.0.1:{edited}/x")
    assert all(fresh_get(p.url + "/x").status_code == 200 for _ in range(20))
    # Its view says so too: the port in force, and the edit still waiting for a restart.
    view = wait_until(lambda: fresh_get(p.admin + "/-/config").json(), what="the admin port")
    assert view["config"]["listen"]["port"] == p.port
    assert view["restart_pending"] == ["listen"]


def worker_with_index(supervisor: int, index: int) -> int:
    for pid in worker_pids(supervisor):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        if args[args.index(b"--worker-index") + 1] == str(index).encode():
            return pid
    raise AssertionError(f"no worker {index} under {supervisor}")


def test_a_worker_that_cannot_start_is_restarted_with_growing_delays(start_proxy):
    """A worker that dies while routes.yaml is broken fails each restart the same way: the
    supervisor waits longer each time rather than restarting it as fast as it can, and
    restarts it once the file is fixed."""
    p = start_proxy(args=("--workers", "2"))
    wait_until(lambda: len(worker_pids(p.proc.pid)) == 2, what="two workers")
    wait_until(lambda: listening(p, 2), what="every worker to serve")
    good = p.config.read_text()
    p.write_config(good.replace("mode: extracted", "mode: extracte", 1))
    assert httpx.post(p.admin + "/-/reload").status_code == 422
    killed = time.monotonic()
    os.kill(min(worker_pids(p.proc.pid)), signal.SIGKILL)
    wait_until(
        lambda: p.log.read_text().count("cannot start") >= 3,
        timeout=40,
        what="three failed restarts",
    )
    assert time.monotonic() - killed >= 3.0  # waited 1 s, then 2 s (at least)
    log = p.log.read_text()
    assert "restarting it in 1 s (1 quick exits in a row" in log, log
    assert "restarting it in 2 s (2 quick exits in a row" in log, log
    # The supervisor's lines come in the workers' format (JSON here), for log collectors.
    restart = next(line for line in log.splitlines() if "exited with -9" in line)
    assert json.loads(restart)["level"] == "error", restart
    assert fresh_get(p.url + "/x").status_code == 200  # the other worker serves on
    p.write_config(good)
    wait_until(
        lambda: p.log.read_text().count(" listening on http") == 3, timeout=30, what="the restart"
    )
    assert len(worker_pids(p.proc.pid)) == 2
