"""A proxy that stops running for a while (SIGSTOP, a paused VM or container, a frozen
cgroup) and then resumes: the upstreams answered meanwhile, and those answers are relayed.

Every upstream timer comes due during the pause. uvloop (libuv) runs due timers before it
looks at the sockets, so the read and total timeouts fired first and every request in
flight became a 504 although its answer sat in the socket; five of them opened the breaker,
and the healthy upstream was refused for 30 s more.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.procs import wait_until

IN_FLIGHT = 8
# The pause: past the upstream's read (2 s) and total (5 s) timeouts: both come due in it.
PAUSE = 5.5
# The upstream answers this long after each request: long enough for all of them to be in
# flight at once on a slow machine before the stop, and under the read timeout, so the
# answers arrive while the proxy is stopped.
ANSWER_AFTER = 1.0

ROUTES = """\
- name: slow
  match: {prefix: /svc}
  mode: extracted
  target: svc
"""


def test_answers_that_arrived_while_the_proxy_was_stopped_are_relayed(start_proxy):
    proxy = start_proxy(routes=ROUTES)
    with httpx.Client(timeout=30.0) as warm:
        assert warm.get(proxy.url + "/svc/slow", params={"s": "0"}).status_code == 200

    def call(_: int) -> tuple[int, str]:
        with httpx.Client(timeout=30.0) as c:
            r = c.get(proxy.url + "/svc/slow", params={"s": str(ANSWER_AFTER)})
            return r.status_code, r.text

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        futures = [pool.submit(call, i) for i in range(IN_FLIGHT)]
        wait_until(
            lambda: httpx.get(proxy.admin + "/-/ready").json()["in_flight"] == IN_FLIGHT,
            what=f"{IN_FLIGHT} requests in flight",
        )
        os.kill(proxy.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(PAUSE)  # the fault itself: the process does not run for this long
        finally:
            os.kill(proxy.proc.pid, signal.SIGCONT)
        answers = [f.result() for f in futures]

    assert [status for status, _ in answers] == [200] * IN_FLIGHT, answers
    svc = httpx.get(proxy.admin + "/-/upstreams").json()["svc"]
    assert svc["breaker"]["state"] == "closed", svc
    assert svc["breaker"]["consecutive_failures"] == 0, svc
    assert httpx.get(proxy.url + "/svc/slow", params={"s": "0"}).status_code == 200
