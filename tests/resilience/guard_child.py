"""A second proxy replica for the Redis tests: a GuardRegistry driven over stdin/stdout.

Commands, one per line, each answered with one JSON line:
`state NAME`, `admit NAME` (enter and leave a slot: "ok" or the rejection reason),
`fail NAME N`, `hold NAME N` (keep N slots open), `release NAME`, `snapshot NAME`, `quit`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from types import MappingProxyType

from proxy.config.model import BreakerPolicy, Config, Upstream
from proxy.upstream import GuardRegistry, Rejected


def config(state: str, open_for: float) -> Config:
    breaker = BreakerPolicy(consecutive_failures=3, open_for=open_for)
    ups = {n: Upstream(name=n, url="http://127.0.0.1:1", breaker=breaker) for n in ("x", "y")}
    return Config(version=1, upstreams=MappingProxyType(ups), routes=(), state=state)


async def main(url: str, prefix: str, open_for: float) -> None:
    registry = GuardRegistry(config(url, open_for), key_prefix=prefix, sync_interval=0.05)
    await registry.start()
    loop = asyncio.get_running_loop()
    held: dict[str, list[asyncio.Task]] = {}
    release = asyncio.Event()

    async def hold(name: str) -> None:
        async with registry.get(name).slot() as slot:
            await release.wait()
            slot.done(status=200)

    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        words = line.split()
        if not words or words[0] == "quit":
            break
        cmd, name, *rest = words
        guard = registry.get(name)
        answer: object
        if cmd == "state":
            answer = guard.breaker.state
        elif cmd == "admit":
            try:
                async with guard.slot() as slot:
                    slot.done(status=200)
                answer = "ok"
            except Rejected as exc:
                answer = exc.reason
        elif cmd == "fail":
            for _ in range(int(rest[0])):
                try:
                    async with guard.slot() as slot:
                        slot.done(status=503)
                except Rejected:
                    pass
            answer = guard.breaker.state
        elif cmd == "hold":
            release.clear()
            tasks = [asyncio.create_task(hold(name)) for _ in range(int(rest[0]))]
            held.setdefault(name, []).extend(tasks)
            while guard.bulkhead.in_flight < len(held[name]):
                await asyncio.sleep(0.001)
            answer = guard.bulkhead.in_flight
        elif cmd == "release":
            release.set()
            await asyncio.gather(*held.pop(name, []))
            answer = guard.bulkhead.in_flight
        else:
            answer = guard.snapshot()
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    release.set()
    await registry.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
