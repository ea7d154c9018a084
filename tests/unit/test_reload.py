"""Reloads build off the event loop and share builds when triggers pile up."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from proxy.config.loader import parse_config
from proxy.reload import Reloader, _fingerprint
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


def counting_build(calls: list[int]):
    def build(path: Path, generation: int) -> Runtime:
        calls.append(generation)
        return Runtime.build(parse_config(path.read_text()), generation=generation)

    return build


async def watch_until(reloader: Reloader, done, timeout: float = 10.0) -> None:
    watcher = asyncio.create_task(reloader.watch(interval=0.01))
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.01)
    finally:
        watcher.cancel()


async def test_the_watcher_retries_a_file_made_readable_by_chmod(tmp_path):
    """A reload that could not read the file (mode 000, as a deploy script may leave it) is
    retried once `chmod` fixes it, though its contents, size and mtime did not change."""
    path = tmp_path / "routes.yaml"
    path.write_text(TEXT)
    holder = RuntimeHolder(Runtime.build(parse_config(TEXT)))
    calls: list[int] = []
    build = counting_build(calls)

    def unreadable(p: Path, generation: int) -> Runtime:  # what mode 000 does to non-root
        if p.stat().st_mode & 0o777 == 0:
            raise PermissionError(f"{p}: Permission denied")
        return build(p, generation)

    reloader = Reloader(path, holder, unreadable)
    path.write_text(TEXT + "# edited\n")
    path.chmod(0)
    await watch_until(reloader, lambda: reloader.failures == 1)
    path.chmod(0o644)
    await watch_until(reloader, lambda: reloader.successes == 1)
    assert holder.current.generation == 1 and reloader.last_error is None


async def test_a_deleted_file_is_reported_and_its_return_reloaded(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(TEXT)
    holder = RuntimeHolder(Runtime.build(parse_config(TEXT)))
    reloader = Reloader(path, holder, counting_build([]))
    path.unlink()  # `git checkout` of a branch without it
    await watch_until(reloader, lambda: reloader.failures == 1)
    assert "No such file" in (reloader.last_error or ""), reloader.last_error
    assert holder.current.generation == 0  # the last good table keeps serving
    path.write_text(TEXT)
    await watch_until(reloader, lambda: reloader.successes == 1)
    assert reloader.failures == 1  # reported once, not at every poll


async def test_the_same_contents_under_a_new_ctime_are_not_rebuilt(tmp_path):
    """A hard link or a same-mode chmod (backup tools, config management) changes the file's
    ctime, not its table: a 10 000-route file is not rebuilt for that. A `touch` (or a save)
    does reload: translators beside the file are read again then."""
    import os

    path = tmp_path / "routes.yaml"
    path.write_text(TEXT)
    holder = RuntimeHolder(Runtime.build(parse_config(TEXT)))
    calls: list[int] = []
    reloader = Reloader(path, holder, counting_build(calls))
    os.link(path, tmp_path / "backup.yaml")
    path.chmod(0o644)
    started = _fingerprint(path)
    await watch_until(reloader, lambda: reloader._seen == started)
    assert calls == []
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # `touch`
    await watch_until(reloader, lambda: reloader.successes == 1)
    path.write_text(TEXT + "# edited\n")
    await watch_until(reloader, lambda: reloader.successes == 2)
    assert calls == [1, 2]
