"""Forward authentication: an extracted service answers only whom the identity provider
(here the `legacy` test upstream's `/auth/check`) lets through."""

from __future__ import annotations

import asyncio
import socket
import uuid

import httpx
import pytest
import redis

from proxy.telemetry.metrics import samples_from_text
from tests.support.procs import wait_until
from tests.support.rawhttp import exchange, status_of

AUTH = """\
auth:
  upstream: legacy
  path: /auth/check
  send: [Authorization]
  copy: [X-Auth-User]
"""

ROUTES = """\
- name: private
  match: {prefix: /svc}
  mode: extracted
  target: svc
- name: public
  match: {prefix: /public}
  mode: extracted
  target: svc
  auth: false
"""


@pytest.fixture
def proxy(start_proxy):
    return start_proxy(routes=ROUTES, extra=AUTH)


def seen_by_check(upstreams) -> list[dict[str, str]]:
    checks = httpx.get(upstreams.legacy + "/auth/seen").json()
    return [{k.lower(): v for k, v in headers} for headers in checks]


def header_values(payload: dict, name: str) -> list[str]:
    return [v for k, v in payload["headers"] if k.lower() == name.lower()]


@pytest.mark.parametrize("lane", ["express", "aiohttp"])
def test_an_allowed_request_gets_the_checks_headers_and_never_the_clients(proxy, lane):
    """`X-Auth-User` comes from the check's 2xx; a client's own is dropped (on every route,
    legacy included), and the check's other headers are not copied."""
    headers = {"Authorization": "Bearer good", "X-Auth-User": "mallory"}
    if lane == "aiohttp":  # a chunked body hands the request to the aiohttp lane
        got = httpx.post(proxy.url + "/svc/x?q=1", headers=headers, content=iter([b"hi"]))
    else:
        got = httpx.get(proxy.url + "/svc/x?q=1", headers=headers)
    assert got.status_code == 200, got.text
    payload = got.json()
    assert payload["server"] == "svc"
    assert header_values(payload, "X-Auth-User") == ["alice"]
    assert header_values(payload, "X-Other") == []
    legacy = httpx.get(proxy.url + "/anything", headers=headers).json()
    assert legacy["server"] == "legacy" and header_values(legacy, "X-Auth-User") == []


@pytest.mark.parametrize(
    "body", [b"", b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n"], ids=["fast", "aiohttp"]
)
def test_two_authorization_headers_are_refused_before_the_check(proxy, upstreams, body):
    """The check could vouch for one token while the service acts on the other."""
    request = (
        b"GET /svc/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer good\r\n"
        b"Authorization: Bearer admin\r\n" + (body or b"\r\n") + b"\r\n"
    )
    before = len(seen_by_check(upstreams))
    answer = exchange(proxy.port, request)
    assert status_of(answer) == 400 and b"more than one Authorization" in answer, answer
    assert b"\r\nConnection: close\r\n" in answer.partition(b"\r\n\r\n")[0]
    assert len(seen_by_check(upstreams)) == before  # never checked, never forwarded


def test_the_check_sees_the_credentials_and_what_the_request_is_for(proxy, upstreams):
    before = len(seen_by_check(upstreams))
    httpx.delete(
        proxy.url + "/svc/items/7?force=1",
        headers={"Authorization": "Bearer good", "Cookie": "s=1", "X-Secret": "x"},
    )
    check = seen_by_check(upstreams)[before]
    assert check["authorization"] == "Bearer good"
    assert check["x-forwarded-method"] == "DELETE"
    assert check["x-forwarded-uri"] == "/svc/items/7?force=1"
    assert "x-forwarded-for" in check and "x-request-id" in check
    assert "cookie" not in check and "x-secret" not in check  # only what `send` names
    # The check is asked about the path that is routed and forwarded, never the raw one: a
    # check that lets `/public/*` through must not be shown `/public/../svc/...`.
    # (A raw request: httpx would remove the dot segments itself.)
    answer = exchange(
        proxy.port,
        b"GET /public/../svc/items/8?q HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer good\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert status_of(answer) == 200
    assert seen_by_check(upstreams)[before + 1]["x-forwarded-uri"] == "/svc/items/8?q"


@pytest.mark.parametrize("lane", ["express", "aiohttp"])
def test_a_client_cannot_tell_the_check_what_the_request_is_for(start_proxy, upstreams, lane):
    """With `X-Forwarded-Uri`/`-Method` in `send`, the client's own copies came first, and
    a check reads the first: a DELETE of /svc/admin was asked about as a GET of /public."""
    auth = AUTH.replace(
        "send: [Authorization]", "send: [Authorization, X-Forwarded-Uri, X-Forwarded-Method]"
    )
    proxy = start_proxy(routes=ROUTES, extra=auth)
    before = len(httpx.get(upstreams.legacy + "/auth/seen").json())
    forged = {
        "Authorization": "Bearer good",
        "X-Forwarded-Uri": "/public",
        "X-Forwarded-Method": "GET",
    }
    if lane == "aiohttp":  # a chunked body hands the request to the aiohttp lane
        sent = httpx.put(proxy.url + "/svc/admin", headers=forged, content=iter([b"hi"]))
    else:
        sent = httpx.delete(proxy.url + "/svc/admin", headers=forged)
    assert sent.status_code == 200
    check = httpx.get(upstreams.legacy + "/auth/seen").json()[before]
    values = {
        name: [v for k, v in check if k.lower() == name]
        for name in ("x-forwarded-uri", "x-forwarded-method")
    }
    method = "PUT" if lane == "aiohttp" else "DELETE"
    assert values == {"x-forwarded-uri": ["/svc/admin"], "x-forwarded-method": [method]}


@pytest.mark.parametrize("lane", ["express", "aiohttp"])
def test_a_refusal_is_the_checks_own_answer_and_the_service_is_not_called(proxy, lane):
    def call(headers: dict[str, str]) -> httpx.Response:
        if lane == "aiohttp":
            return httpx.post(proxy.url + "/svc/x", headers=headers, content=iter([b"hi"]))
        return httpx.get(proxy.url + "/svc/x", headers=headers)

    refused = call({"Authorization": "Bearer stolen"})
    assert refused.status_code == 401
    assert refused.json() == {"error": "who are you?"}
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="x"'
    assert refused.headers["X-Request-ID"]
    login = call({"Authorization": "Bearer login"})
    assert (login.status_code, login.headers["Location"]) == (302, "/login")
    broken = call({"Authorization": "Bearer broken"})  # no verdict: closed, not open
    assert broken.status_code == 503 and "authentication check" in broken.json()["message"]
    assert "the check itself failed" not in broken.text


def limited_routes(rate_limit: str) -> str:
    return (
        ROUTES
        + f"""- name: limited
  match: {{prefix: /limited}}
  mode: extracted
  target: svc
  rate_limit: {rate_limit}
"""
    )


def test_the_rate_limit_counts_after_the_check_and_keys_on_what_it_vouches_for(start_proxy):
    """A `header:` key on a `copy` header reads the check's value: a client forging other
    values gets no fresh budget; and a refused attempt spends the address's refusal budget,
    not the budget of the user it could not prove it was."""
    proxy = start_proxy(
        routes=limited_routes('{requests: 1, per: 3600, burst: 2, key: "header:X-Auth-User"}'),
        extra=AUTH,
    )
    bad = httpx.get(proxy.url + "/limited/x", headers={"Authorization": "nope"})
    assert bad.status_code == 401
    good = [
        httpx.get(
            proxy.url + "/limited/x",
            headers={"Authorization": "Bearer good", "X-Auth-User": f"forged-{i}"},
        )
        for i in range(3)
    ]
    assert [r.status_code for r in good] == [200, 200, 429]


@pytest.mark.parametrize("lane", ["express", "aiohttp"])
@pytest.mark.parametrize("key", ["ip", "header:X-Auth-User", "route"])
def test_credential_guessing_is_throttled_before_the_check(start_proxy, upstreams, lane, key):
    """Refused attempts spend the address's budget on the route: past it, the check is not
    asked at all, so a right guess gets the same 429 as a wrong one."""
    proxy = start_proxy(
        routes=limited_routes(f'{{requests: 1, per: 3600, burst: 3, key: "{key}"}}'), extra=AUTH
    )

    def attempt(token: str) -> int:
        headers = {"Authorization": token}
        if lane == "aiohttp":
            return httpx.post(
                proxy.url + "/limited/x", headers=headers, content=iter([b"hi"])
            ).status_code
        return httpx.get(proxy.url + "/limited/x", headers=headers).status_code

    before = len(seen_by_check(upstreams))
    assert [attempt(f"Bearer guess-{i}") for i in range(3)] == [401] * 3
    assert len(seen_by_check(upstreams)) == before + 3
    throttled = httpx.get(proxy.url + "/limited/x", headers={"Authorization": "Bearer good"})
    assert throttled.status_code == 429, throttled.text
    assert 3000 < int(throttled.headers["Retry-After"]) <= 3600
    assert attempt("Bearer good") == 429
    assert len(seen_by_check(upstreams)) == before + 3  # not asked once the budget was spent


@pytest.mark.parametrize("scope", ["local", "shared"])
def test_a_client_that_leaves_during_its_check_spends_no_attempt(start_proxy, upstreams, scope):
    # Shared: the give-back to Redis outlives the cancelled request (it stayed spent).
    extra, prefix = _shared_state(AUTH) if scope == "shared" else (AUTH, "")
    policy = '{requests: 1, per: 3600, burst: 1, key: "header:X-Auth-User"' + (
        ", scope: shared}" if prefix else "}"
    )
    proxy = start_proxy(routes=limited_routes(policy), extra=extra)
    before = len(seen_by_check(upstreams))
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(b"GET /limited/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer slow\r\n\r\n")
        wait_until(lambda: len(seen_by_check(upstreams)) > before, what="the check to be asked")
    wait_until(
        lambda: httpx.get(proxy.admin + "/-/ready").json()["in_flight"] == 0,
        what="the proxy to see the client leave",
    )
    try:
        wait_until(
            lambda: (
                httpx.get(
                    proxy.url + "/limited/x", headers={"Authorization": "Bearer good"}
                ).status_code
                == 200
            ),
            what="the attempt given back",
        )
    finally:
        if prefix:
            _forget(prefix)


@pytest.mark.parametrize("scope", ["local", "shared"])
def test_a_late_give_back_returns_no_attempt_time_already_returned(start_proxy, upstreams, scope):
    """An attempt held by a check that outlasts the budget's interval was already paid back
    by the time that passed: giving the whole interval back after that erased a later
    refusal, and a client holding slow checks (or leaving them) got twice the guesses.
    The interval is 10 s: the refused guess, the client leaving and the next guess must
    all fit in one (with 2 s a slow machine could take longer, and the budget was whole
    again by time alone)."""
    extra, prefix = _shared_state(AUTH) if scope == "shared" else (AUTH, "")
    policy = '{requests: 1, per: 10, burst: 1, key: "header:X-Auth-User"' + (
        ", scope: shared}" if prefix else "}"
    )
    proxy = start_proxy(routes=limited_routes(policy), extra=extra)
    url = proxy.url + "/limited/x"
    try:
        before = len(seen_by_check(upstreams))
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(
                b"GET /limited/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer slow\r\n\r\n"
            )
            wait_until(lambda: len(seen_by_check(upstreams)) > before, what="the slow check")
            # The held attempt is paid back by time (one interval, 10 s): a guess is allowed
            # and refused, and spends the budget for the next 10 s.
            guess = wait_until(
                lambda: (
                    r
                    if (r := httpx.get(url, headers={"Authorization": "Bearer g1"})).status_code
                    != 429
                    else None
                ),
                timeout=30,
                what="the held attempt to be paid back by time",
            )
            assert guess.status_code == 401
        wait_until(
            lambda: httpx.get(proxy.admin + "/-/ready").json()["in_flight"] == 0,
            what="the proxy to see the client leave",
        )
        again = httpx.get(url, headers={"Authorization": "Bearer g2"})
        assert again.status_code == 429, "the late give-back erased the refused guess"
    finally:
        if prefix:
            _forget(prefix)


def test_refused_attempts_spend_one_budget_across_replicas(start_proxy, upstreams):
    """With `scope: shared`, the refusal budget is the fleet's, like the route's budget."""
    prefix = f"strangler-auth-{uuid.uuid4().hex[:10]}:"
    top = AUTH + f'state: "redis://127.0.0.1:6379/0?prefix={prefix}"\n'
    routes = limited_routes("{requests: 1, per: 3600, burst: 2, scope: shared}")
    a, b = start_proxy(routes=routes, extra=top), start_proxy(routes=routes, extra=top)
    client = redis.Redis()
    try:
        guesses = [
            httpx.get(p.url + "/limited/x", headers={"Authorization": f"Bearer guess-{i}"})
            for i, p in enumerate([a, b, a])
        ]
        assert [r.status_code for r in guesses] == [401, 401, 429]
        good = httpx.get(b.url + "/limited/x", headers={"Authorization": "Bearer good"})
        assert good.status_code == 429
        # In Redis, only the refusal budget: no request got past the check to spend another.
        assert len(list(client.scan_iter(match=f"{prefix}rl:*"))) == 1
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _concurrent_guesses(urls: list[str], n: int) -> list[int]:
    """`n` wrong guesses in flight at once from one address, spread over `urls`."""

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=n)) as c:
            answers = await asyncio.gather(
                *(
                    c.get(urls[i % len(urls)], headers={"Authorization": f"Bearer guess-{i}"})
                    for i in range(n)
                )
            )
        return [a.status_code for a in answers]

    return asyncio.run(run())


def local_counts(proxy, route: str) -> float:
    """`strangler_rate_limit_local_total` for `route`: requests the replica counted alone."""
    text = httpx.get(f"{proxy.admin}/metrics").text
    return sum(
        v
        for n, labels, v in samples_from_text(text)
        if n == "strangler_rate_limit_local_total" and labels.get("route") == route
    )


def _shared_state(extra: str) -> tuple[str, str]:
    prefix = f"strangler-auth-{uuid.uuid4().hex[:10]}:"
    return extra + f'state: "redis://127.0.0.1:6379/0?prefix={prefix}"\n', prefix


def _forget(prefix: str) -> None:
    client = redis.Redis()
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.parametrize("scope", ["local", "shared"])
def test_concurrent_guesses_get_no_more_checks_than_the_budget(start_proxy, upstreams, scope):
    """Guesses sent at once cannot all slip past the budget while none has been refused
    yet: each check takes its attempt before it is asked (looking first and spending after
    the refusal let 67 of 100 concurrent guesses reach the check, for a burst of 3); an
    accepted check gives its attempt back (in Redis for a shared budget)."""
    extra, prefix = _shared_state(AUTH) if scope == "shared" else (AUTH, "")
    policy = '{requests: 1, per: 3600, burst: 3, key: "header:X-Auth-User"' + (
        ", scope: shared}" if prefix else "}"
    )
    proxies = [start_proxy(routes=limited_routes(policy), extra=extra)]
    if prefix:  # two replicas spend one budget
        proxies.append(start_proxy(routes=limited_routes(policy), extra=extra))
    try:
        before = len(seen_by_check(upstreams))
        accepted = [
            httpx.get(p.url + "/limited/x", headers={"Authorization": "Bearer good"})
            for p in (proxies * 3)[:3]
        ]
        assert [a.status_code for a in accepted] == [200] * 3
        codes = _concurrent_guesses([p.url + "/limited/x" for p in proxies], 60)
        # A shared budget whose Redis call timed out (a starved loop) is counted by its
        # process alone, as documented: each replica that had to may let its own burst by.
        alone = sum(1 for p in proxies if local_counts(p, "limited") > 0)
        refused = codes.count(401)
        assert codes.count(429) == 60 - refused
        assert refused == 3 if alone == 0 else 3 <= refused <= 3 + 3 * alone, (codes, alone)
        assert len(seen_by_check(upstreams)) == before + 3 + refused
    finally:
        if prefix:
            _forget(prefix)


def test_legacy_and_opted_out_routes_are_not_checked(proxy, upstreams):
    before = len(seen_by_check(upstreams))
    assert httpx.get(proxy.url + "/anything").json()["server"] == "legacy"
    assert httpx.get(proxy.url + "/public/x").json()["server"] == "svc"
    assert len(seen_by_check(upstreams)) == before


def test_a_check_that_gives_no_verdict_in_time_fails_closed(start_proxy):
    """`svc` reads with a 2 s timeout, and its `/slow` takes 10 s: no verdict is a 503,
    never a request let through."""
    slow = AUTH.replace("upstream: legacy", "upstream: svc").replace(
        "path: /auth/check", "path: /slow?s=10"
    )
    proxy = start_proxy(routes=ROUTES, extra=slow)
    answer = httpx.get(proxy.url + "/svc/x", headers={"Authorization": "Bearer good"}, timeout=20)
    assert answer.status_code == 503, answer.text
    assert "authentication check" in answer.json()["message"]


def test_a_failed_check_tells_nobody_its_path_or_key(start_proxy):
    """The check's query may hold a shared key: it reaches neither the client nor the log
    (the warning names the upstream and the path without its query)."""
    slow = AUTH.replace("upstream: legacy", "upstream: svc").replace(
        "path: /auth/check", "path: /slow?s=10&key=SHAREDKEY"
    )
    proxy = start_proxy(routes=ROUTES, extra=slow)
    answer = httpx.get(proxy.url + "/svc/x", headers={"Authorization": "Bearer good"}, timeout=20)
    assert answer.status_code == 503
    assert answer.json()["message"] == "authentication check by upstream svc failed"
    assert "/slow" not in answer.text and "127.0.0.1" not in answer.text
    proxy.stop()
    log = proxy.log.read_text()
    assert "authentication check svc /slow failed: timeout" in log
    assert "SHAREDKEY" not in log


def test_the_check_is_an_attempt_of_the_request_trace(start_proxy, upstreams):
    """The check carries the request's trace, with the proxy's attempt span as its parent
    (not the client's span), so the IdP's spans hang off the right place."""
    extra = AUTH + "telemetry: {traces: {exporter: console, sample: 1.0}}\n"
    proxy = start_proxy(routes=ROUTES, extra=extra)
    client_parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    answer = httpx.get(
        proxy.url + "/svc/x",
        headers={"Authorization": "Bearer good", "traceparent": client_parent},
    )
    assert answer.status_code == 200
    seen = seen_by_check(upstreams)[-1]["traceparent"]
    version, trace_id, parent, flags = seen.split("-")
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert parent != "b7ad6b7169203331"


def test_a_failing_check_does_not_open_the_monoliths_breaker(start_proxy):
    """The check is not the monolith's traffic: a check endpoint in a brownout (503s) fails
    the checked requests closed, and nothing else; legacy keeps serving."""
    broken = AUTH.replace("path: /auth/check", "path: /status/503")
    proxy = start_proxy(routes=ROUTES, extra=broken)
    answers = [
        httpx.get(proxy.url + "/svc/x", headers={"Authorization": "Bearer good"}).status_code
        for _ in range(8)
    ]
    assert answers == [503] * 8
    assert httpx.get(proxy.url + "/anything").status_code == 200
    legacy = httpx.get(proxy.admin + "/-/upstreams").json()["legacy"]
    assert legacy["breaker"]["state"] == "closed", legacy
