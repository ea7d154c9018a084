"""Reloads build off the event loop and share builds when triggers pile up."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from proxy.config.loader import parse_config
from proxy.reload import Reloader
from proxy.runtime import Runtime, RuntimeHolder

TEXT = "version: 1\nupstreams: {legacy: 'http://127.0.0.1:9'}\n"


class SlowBuild:
    """A build that blocks its thread until released, and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, path: Path, generation: int) -> Runtime:
        self.calls += 1
        self.started.set()
        assert self.release.wait(10), "never released"
        return Runtime.build(parse_config(TEXT), generation=generation)


async def test_a_build_runs_off_the_loop_and_piled_up_triggers_share_one(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(TEXT)
    holder = RuntimeHolder(Runtime.build(parse_config(TEXT)))
    build = SlowBuild()
    reloader = Reloader(path, holder, build)

    first = asyncio.create_task(reloader.reload_async("admin"))
    await asyncio.to_thread(build.started.wait, 10)
    # The loop keeps running while the table is built: other work gets done meanwhile.
    assert await asyncio.wait_for(asyncio.sleep(0.01, "served"), 5) == "served"
    later = [asyncio.create_task(reloader.reload_async("admin")) for _ in range(10)]
    await asyncio.sleep(0.01)
    assert build.calls == 1
    build.release.set()
    events = await asyncio.gather(first, *later)

    # One build for the first trigger, one for the ten that came while it ran (the file
    # may have changed after the first build read it).
    assert build.calls == 2
    assert all(e.ok for e in events)
    assert holder.current.generation == 2 and reloader.successes == 2


async def test_a_failed_build_keeps_the_table_and_is_reported_to_each_waiter(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(TEXT)
    start = Runtime.build(parse_config(TEXT))
    holder = RuntimeHolder(start)

    def broken(path: Path, generation: int) -> Runtime:
        raise ValueError(f"{path}:3: unknown key 'metods'")

    reloader = Reloader(path, holder, broken)
    events = await asyncio.gather(*(reloader.reload_async("signal") for _ in range(3)))
    assert not any(e.ok for e in events) and "metods" in (events[0].error or "")
    assert holder.current is start and reloader.last_error == events[0].error
