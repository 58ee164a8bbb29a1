"""The log queue of a serving process: logging drops lines rather than ever blocking the caller.

Each test writes through :class:`DroppingQueueHandler` into a real pipe (or a
``StringIO``): with nobody reading the pipe, logging still returns and counts
what it dropped; once the pipe is drained, every line written plus the counts
of the "dropped N log lines" warnings add up to exactly what was logged;
closing the handler writes what is still queued; ``/metrics`` shows the count.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from collections.abc import Iterator

import pytest

from peerbox.net._logqueue import BATCH, FIELDS_ATTR, DroppingQueueHandler, LazyFields, dropped_records
from peerbox.net._logsetup import LogFormat, LogOptions, TextFormatter
from peerbox.net._metrics import Metrics

LINE = "x" * 100
DROPPED = re.compile(r"WARNING peerbox\.worker dropped (\d+) log lines")


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own (no handler, nothing propagated), its handlers closed after the test."""
    log = logging.getLogger(f"peerbox-test-logqueue.{os.urandom(4).hex()}")
    log.propagate = False
    log.setLevel(logging.INFO)
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


@pytest.fixture
def pipe() -> Iterator[tuple[int, io.TextIOWrapper]]:
    """A pipe whose buffer is already full of empty lines (the next write blocks until somebody
    reads): (its read end, its write end as a text stream); both closed after the test."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    try:
        while True:
            os.write(w, b"\n" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(w, True)
    stream = os.fdopen(w, "w")
    yield r, stream
    stream.close()
    os.close(r)


def _handler(stream: io.TextIOBase, capacity: int, flush_seconds: float = 60.0) -> DroppingQueueHandler:
    """A queue handler writing text lines to ``stream``; closing it waits for the writer (a minute at
    most: a reader that drains is never that slow) unless ``flush_seconds`` says otherwise."""
    handler = DroppingQueueHandler(stream, capacity, flush_seconds=flush_seconds)  # type: ignore[arg-type]
    handler.setFormatter(TextFormatter())
    return handler


def _drain(fd: int) -> tuple[threading.Thread, list[bytes]]:
    """Read ``fd`` to its end on a thread; the chunks read."""
    chunks: list[bytes] = []

    def read() -> None:
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, chunks


def test_a_full_queue_drops_and_counts_and_the_lines_add_up(
        logger: logging.Logger, pipe: tuple[int, io.TextIOWrapper]) -> None:
    r, w = pipe
    before = dropped_records()
    handler = _handler(w, capacity=5)
    logger.addHandler(handler)
    for i in range(1000):  # the pipe is full and nobody reads it yet
        logger.info("line %d %s", i, LINE)
    # logging returned every time: it dropped what the queue (5) and the blocked writer's batch did not hold
    assert handler.dropped >= 1000 - 5 - BATCH
    assert dropped_records() - before == handler.dropped
    reader, chunks = _drain(r)  # now somebody reads
    logger.removeHandler(handler)
    handler.close()
    w.close()
    reader.join()
    lines = b"".join(chunks).decode().splitlines()
    written = [int(line.split()[4]) for line in lines if " peerbox-test-logqueue." in line]
    told = sum(int(m.group(1)) for line in lines if (m := DROPPED.search(line)))
    assert written == sorted(written) and len(written) == len(set(written))  # in order, none twice
    assert told == handler.dropped and len(written) + told == 1000


def test_close_writes_what_is_queued(logger: logging.Logger) -> None:
    out = io.StringIO()
    handler = _handler(out, capacity=1000)
    logger.addHandler(handler)
    for i in range(500):
        logger.info("line %d", i, extra={FIELDS_ATTR: {"n": i}})
    logger.removeHandler(handler)
    handler.close()
    lines = out.getvalue().splitlines()
    assert [line.split(" ", 3)[3] for line in lines] == [f"line {i} n={i}" for i in range(500)]
    assert handler.dropped == 0


def test_close_gives_up_on_a_stuck_stream(logger: logging.Logger, pipe: tuple[int, io.TextIOWrapper]) -> None:
    _, w = pipe
    handler = _handler(w, capacity=10, flush_seconds=0.5)
    logger.addHandler(handler)
    for i in range(20):
        logger.info("line %d %s", i, LINE)
    logger.removeHandler(handler)
    handler.close()  # returns although the writer is stuck in a write nobody will ever read
    assert handler.dropped > 0


def test_arguments_are_merged_when_logged(logger: logging.Logger) -> None:
    out = io.StringIO()
    handler = _handler(out, capacity=10)
    logger.addHandler(handler)
    items = [1]
    logger.info("items %s", items)
    items.append(2)  # changed after the call: the line shows what was logged
    logger.removeHandler(handler)
    handler.close()
    assert out.getvalue().rstrip("\n").endswith("items [1]")


def test_metrics_count_the_drops(logger: logging.Logger, pipe: tuple[int, io.TextIOWrapper]) -> None:
    _, w = pipe
    handler = _handler(w, capacity=5)
    logger.addHandler(handler)
    for i in range(30):
        logger.info("line %d %s", i, LINE)
    metrics = Metrics()
    assert metrics.log_dropped == dropped_records() > 0
    assert f"\npeerbox_log_records_dropped_total {metrics.log_dropped}\n" in metrics.render()
    copy = Metrics.from_snapshot(metrics.snapshot())  # another process's, as --workers N publishes it
    assert copy.log_dropped == metrics.log_dropped
    assert Metrics.from_snapshot({**metrics.snapshot(), "log_dropped": 7}).log_dropped == 7


def test_configure_installs_one_queue_and_hands_it_on() -> None:
    peerbox_log = logging.getLogger("peerbox")
    saved = (list(peerbox_log.handlers), peerbox_log.level, peerbox_log.propagate)
    first, second = io.StringIO(), io.StringIO()
    try:
        LogOptions(queue=3).configure(first)
        logging.getLogger("peerbox.access").info("to the first")
        LogOptions(format=LogFormat.JSON, queue=8).configure(second)  # closes the first: it is written
        logging.getLogger("peerbox.access").info("to the second")
        ours = [h for h in peerbox_log.handlers if isinstance(h, DroppingQueueHandler)]
        assert len(ours) == 1 and ours[0].capacity == 8
        ours[0].close()
    finally:
        for handler in list(peerbox_log.handlers):
            peerbox_log.removeHandler(handler)
        for handler in saved[0]:
            peerbox_log.addHandler(handler)
        peerbox_log.setLevel(saved[1])
        peerbox_log.propagate = saved[2]
    assert first.getvalue().endswith(" INFO peerbox.access to the first\n")
    assert '"message":"to the second"' in second.getvalue()
    assert LogOptions(queue=8).argv()[4:6] == ["--log-queue", "8"]


def test_lazy_fields_are_built_by_the_writer_and_never_for_a_dropped_line(
        logger: logging.Logger, pipe: tuple[int, io.TextIOWrapper]) -> None:
    built_by: list[str] = []

    def fields() -> dict[str, object]:
        built_by.append(threading.current_thread().name)
        return {"status": 200}

    out = io.StringIO()
    handler = _handler(out, capacity=10)
    logger.addHandler(handler)
    logger.info("GET /", extra={FIELDS_ATTR: LazyFields(fields)})
    logger.removeHandler(handler)
    handler.close()
    assert out.getvalue().endswith(" GET / status=200\n") and built_by == ["peerbox-log-writer"]
    _, w = pipe
    stuck = _handler(w, capacity=1, flush_seconds=0.1)  # the pipe is full: the writer blocks at once
    logger.addHandler(stuck)
    for _ in range(200):
        logger.info("GET /", extra={FIELDS_ATTR: LazyFields(fields)})
    assert stuck.dropped >= 200 - 1 - BATCH and len(built_by) <= 1 + 1 + BATCH  # only what was queued
