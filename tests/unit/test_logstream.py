"""BackgroundLogStream: log lines written from the event loop never wait for stdout."""

from __future__ import annotations

import os

from proxy.telemetry.logstream import BackgroundLogStream

LINE = "x" * 99 + "\n"


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_lines_arrive_whole_and_in_order():
    r, w = os.pipe()
    try:
        stream = BackgroundLogStream(w)
        for i in range(100):
            stream.write(f"{i}\n")
        stream.flush()
        assert stream.drain(10)
        assert _read_all(r).decode().splitlines() == [str(i) for i in range(100)]
    finally:
        os.close(r)
        os.close(w)


def test_a_reader_that_stopped_costs_lines_not_waiting_and_says_how_many():
    """A pipe nobody reads takes about 64 KiB; a blocking write past that waited for the
    reader (the proxy stopped serving). Here 1 MB of lines is written without waiting;
    past the backlog limit lines are dropped and counted, and the count is reported once
    the reader caught up."""
    r, w = os.pipe()
    try:
        stream = BackgroundLogStream(w, backlog_limit=200_000)
        for _ in range(10_000):  # 1 MB, never read meanwhile: none of these calls may block
            stream.write(LINE)
            stream.flush()
        assert stream.take_dropped() == 0  # the backlog is still full: nothing said yet
        got = b""
        while not stream.drain(0.01):
            got += _read_all(r)
        got += _read_all(r)
        lines = got.decode().splitlines(keepends=True)
        assert lines and set(lines) == {LINE}  # only whole lines
        dropped = stream.take_dropped()
        assert dropped > 0 and len(lines) + dropped == 10_000
        assert stream.take_dropped() == 0  # said once
    finally:
        os.close(r)
        os.close(w)


def test_a_reader_that_left_ends_the_writing():
    r, w = os.pipe()
    os.close(r)
    try:
        stream = BackgroundLogStream(w)
        stream.write(LINE)
        assert stream.drain(10)  # EPIPE: nothing more to wait for
        stream.write(LINE)  # discarded, as before
        assert stream.drain(10)
    finally:
        os.close(w)


def test_the_proxy_says_how_many_lines_were_dropped(caplog):
    import logging

    from proxy.telemetry.logging import RequestLog

    r, w = os.pipe()
    try:
        stream = BackgroundLogStream(w, backlog_limit=200_000)
        handler = logging.StreamHandler(stream)
        for _ in range(5_000):  # 500 kB with nobody reading
            stream.write(LINE)
            stream.flush()
        got = b""
        while not stream.drain(0.01):
            got += _read_all(r)
        got += _read_all(r)
        with caplog.at_level(logging.WARNING, logger="strangler"):
            RequestLog()._flush(handler)  # the access log's periodic flush
        (said,) = [rec.getMessage() for rec in caplog.records if rec.name == "strangler"]
        assert said.startswith(f"{5_000 - len(got.splitlines())} log lines were dropped")
    finally:
        os.close(r)
        os.close(w)


def test_a_process_leaves_with_lines_never_handed_over():
    """IOBase's close flushes, and the interpreter closes the stream while finalizing,
    when the writer thread can no longer start: the process waited for it for ever."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from proxy.telemetry.logstream import BackgroundLogStream\n"
        "stream = BackgroundLogStream(os.open(os.devnull, os.O_WRONLY))\n"
        "stream.write('never flushed\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr
