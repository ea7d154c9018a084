"""`--workers N`: N processes on one port (SO_REUSEPORT); a reload reaches every worker."""

from __future__ import annotations

import os
import signal

import httpx

from tests.support.procs import wait_until


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
