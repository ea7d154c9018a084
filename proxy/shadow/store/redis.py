"""Redis diff store: several proxy replicas append to one stream, one report covers them all.

Records go to the stream `<prefix>shadow:comparisons` (default prefix `strangler:`; set it with
`redis://host:6379/0?prefix=myapp:`). Stream ids are millisecond timestamps, so retention by
age is `XTRIM MINID` and by count `XTRIM MAXLEN`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis as redis_lib

from ..model import DiffRecord
from .base import DiffStore


def split_prefix(url: str) -> tuple[str, str]:
    """(url without the `prefix` query parameter, prefix)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = "strangler:"
    kept = []
    for key, value in query:
        if key == "prefix":
            prefix = value
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), prefix


class RedisStore(DiffStore):
    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        clean, self.prefix = split_prefix(url)
        self.url = clean
        self.key = f"{self.prefix}shadow:comparisons"
        self._client = redis_lib.Redis.from_url(
            clean, socket_timeout=5.0, socket_connect_timeout=2.0
        )

    def _write_batch(self, records: list[DiffRecord]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for r in records:
            pipe.xadd(self.key, {"r": r.dumps()})
        pipe.execute()

    def _prune(self, now: float) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.xtrim(self.key, maxlen=max(self.retention_count, 0), approximate=False)
        pipe.xtrim(self.key, minid=f"{int(self._cutoff(now) * 1000)}-0", approximate=False)
        pipe.execute()

    def records(
        self, *, routes: Sequence[str] | None = None, since: float | None = None
    ) -> Iterator[DiffRecord]:
        wanted = set(routes) if routes else None
        start = f"{int(since * 1000)}-0" if since is not None else "-"
        while True:
            chunk = self._client.xrange(self.key, min=start, max="+", count=1000)
            if not chunk:
                return
            for _entry_id, fields in chunk:
                record = DiffRecord.loads(fields[b"r"])
                if wanted is not None and record.route not in wanted:
                    continue
                if since is not None and record.ts < since:
                    continue
                yield record
            last = chunk[-1][0].decode()
            start = "(" + last
            if len(chunk) < 1000:
                return

    def count(self) -> int:
        return int(self._client.xlen(self.key))

    def delete_all(self) -> None:
        """Remove this store's key (tests and `reset`); other prefixes are untouched."""
        self._client.delete(self.key)

    def _close_backend(self) -> None:
        self._client.close()
