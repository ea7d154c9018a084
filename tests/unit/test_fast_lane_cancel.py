"""A fast-lane request whose connection is lost before its task takes its first step.

The task runs `_serve(work)`; cancelled before it starts, `_serve` never runs, so `work`
(the handler's coroutine) was never awaited and Python reported it when it was collected
(RuntimeWarning: coroutine ... was never awaited), one warning per such request.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from types import SimpleNamespace

from proxy.config.model import Limits
from proxy.listener import Listener

REQUEST = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"


class Handler:
    """Only what the fast lane asks of `ProxyHandler` before the work starts."""

    def __init__(self) -> None:
        self.ran = 0
        self.work: list = []  # the coroutines handed to the fast lane

    def preflight(self, msg, peer):
        return SimpleNamespace(content_length=None)

    def serve_plain(self, conn, msg, pre, body, **_):
        work = self._serve()
        self.work.append(work)
        return work

    async def _serve(self) -> None:
        self.ran += 1


class Transport(asyncio.Transport):
    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def test_work_of_a_task_cancelled_before_it_started_is_not_reported_unawaited():
    handler = Handler()
    listener = Listener(handler, lambda: None, Limits(), express=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conn = listener()
        conn.connection_made(Transport())
        conn.data_received(REQUEST)  # the task is created, not yet started
        task = conn.task
        assert task is not None
        conn.connection_lost(ConnectionResetError())  # in the same loop iteration
        await asyncio.gather(task, return_exceptions=True)
        del task, conn
        gc.collect()
    assert handler.ran == 0  # the work really was cancelled before it began
    # Closed (no frame left): a coroutine never started still has its frame, and warns
    # when it is collected.
    assert [work.cr_frame for work in handler.work] == [None]
    handler.work.clear()
    gc.collect()
    assert [str(w.message) for w in caught if w.category is RuntimeWarning] == []


async def test_work_of_a_task_that_ran_is_left_alone():
    """The close comes after the task is done: work that ran is finished, not cut short."""
    handler = Handler()
    listener = Listener(handler, lambda: None, Limits(), express=False)
    conn = listener()
    transport = Transport()
    conn.connection_made(transport)
    conn.data_received(REQUEST)
    task = conn.task
    await asyncio.gather(task, return_exceptions=True)
    assert handler.ran == 1
    assert conn.task is None
