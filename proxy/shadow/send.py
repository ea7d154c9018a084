"""A ready-made `send` for `ShadowMirror`: buffered HTTP to a named upstream with aiohttp.

The proxy may pass its own sender (sharing its connection pools); this one is for tools, tests
and a proxy that wants shadow traffic on separate pools so it can never starve client traffic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import aiohttp
from yarl import URL

from proxy.config.model import Upstream

from .model import CapturedResponse, ShadowRequest, headers_of

_DROP_REQUEST_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "expect",
    }
)
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class HttpSender:
    """`await sender(upstream_name, request) -> CapturedResponse`.

    `upstreams` is the config's mapping or a callable returning the current one (so reloads
    are seen). Bodies stay compressed (`auto_decompress=False`): the comparator decodes them.
    """

    def __init__(
        self,
        upstreams: Mapping[str, Upstream] | Callable[[], Mapping[str, Upstream]],
        *,
        session: aiohttp.ClientSession | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self._upstreams = upstreams
        self._session = session
        self._own_session = session is None
        self._max = max_response_bytes

    def _lookup(self, name: str) -> Upstream:
        table = self._upstreams() if callable(self._upstreams) else self._upstreams
        try:
            return table[name]
        except KeyError:
            raise LookupError(
                f"shadow target upstream {name!r} is not defined under upstreams: in routes.yaml"
            ) from None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def __call__(self, upstream_name: str, request: ShadowRequest) -> CapturedResponse:
        upstream = self._lookup(upstream_name)
        target = upstream.base_path + request.path
        if request.query is not None:
            target += "?" + request.query
        url = URL(f"{upstream.scheme}://{upstream.host}:{upstream.port}{target}", encoded=True)
        headers = [(k, v) for k, v in request.headers if k.lower() not in _DROP_REQUEST_HEADERS]
        if upstream.host_header:
            headers.append(("Host", upstream.host_header))
        t = upstream.timeout
        timeout = aiohttp.ClientTimeout(
            total=t.total, connect=t.connect, sock_connect=t.connect, sock_read=t.read
        )
        started = time.perf_counter()
        async with self._client().request(
            request.method,
            url,
            headers=headers,
            data=request.body or None,
            timeout=timeout,
            allow_redirects=False,
        ) as resp:
            chunks, size = [], 0
            async for chunk in resp.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > self._max:
                    raise ValueError(
                        f"shadow response from {upstream_name!r} exceeds {self._max} bytes; "
                        "not compared"
                    )
                chunks.append(chunk)
            body = b"".join(chunks)
            latency = time.perf_counter() - started
            return CapturedResponse(resp.status, headers_of(resp.headers.items()), body, latency)

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
