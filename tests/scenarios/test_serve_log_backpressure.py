"""A `peerbox serve` whose stderr nobody reads keeps serving: log lines are dropped, never waited for.

The server's stderr is a pipe this test does not read while it sends
:data:`CALLS` requests: enough access lines to fill the pipe's buffer and the
log queue (``--log-queue``) many times over (the arithmetic is checked below,
from the pipe's real size and the lines' real length). Every request is
answered; ``/metrics`` counts the dropped lines; once the test drains the pipe
the server says how many it dropped, and every access line it did write is
whole (one JSON object per line). A server whose stderr never moves at all
(full before it starts) serves, counts its drops and still stops cleanly on
SIGTERM: the lines it could not write are given up after a bounded wait.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import peerbox
from peerbox.net._h2client import H2Transport
from peerbox.net._logqueue import BATCH

from ._serve_helpers import Caller
from .conftest import Serving

pytestmark = pytest.mark.slow  # `peerbox serve` subprocesses

#: Requests sent while nobody reads the server's stderr.
CALLS = 1200
#: The server's ``--log-queue``: small, so that a few hundred requests overflow it.
QUEUE = 32
#: An access line is at least this long (a did, a nonce, a script hash...): checked on the lines read.
MIN_LINE = 300
_F_GETPIPE_SZ = 1032  # Linux: the capacity of a pipe's buffer


@pytest.fixture
def store(tmp_path: Path, demo_policy: str) -> peerbox.PeerStore:
    """alice and bob under ``tmp_path``; bob runs the demo policy (alice may exec)."""
    peers = peerbox.PeerStore(tmp_path)
    for name in ("alice", "bob"):
        peers.init(name)
    (tmp_path / "peers" / "bob" / "policy.toml").write_text(demo_policy)
    return peers


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe (read end, write end); whatever the test did not close is closed after it."""
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


async def _flood(store: peerbox.PeerStore, port: int, calls: int = CALLS) -> list[int]:
    """``calls`` allowed execs from alice to bob, eight at a time; their statuses."""
    statuses: list[int] = []
    async with H2Transport() as transport:
        caller = Caller(store, transport, f"http://127.0.0.1:{port}")

        async def some(n: int) -> None:
            for _ in range(n):
                statuses.append((await caller.send("40 + 2"))[0])

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(some, calls // 8)
    return statuses


async def _dropped(port: int) -> int:
    """The sum of ``peerbox_log_records_dropped_total`` over the processes ``/metrics`` shows."""
    async with H2Transport() as transport:
        answer = await transport.get(f"http://127.0.0.1:{port}", "/metrics", 10.0)
    assert answer.status == 200
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in answer.body.decode().splitlines()
               if line.startswith("peerbox_log_records_dropped_total"))


def _dropped_soon(port: int) -> int:
    """:func:`_dropped`, asked again for up to 20 s while it is 0 (with ``--workers 2`` the other
    process's count reaches the one answering when it publishes, four times a second)."""
    deadline = time.monotonic() + 20
    while (dropped := trio.run(_dropped, port)) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    return dropped


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stderr_nobody_reads_drops_lines_and_blocks_nothing(
        tmp_path: Path, store: peerbox.PeerStore, serving: Serving, pipe: tuple[int, int], workers: str) -> None:
    r, w = pipe
    capacity = fcntl.fcntl(w, _F_GETPIPE_SZ)
    # what the pipe and the queues (and the batch in each writer's hand) hold before a line is dropped
    held = capacity // MIN_LINE + int(workers) * (QUEUE + BATCH)
    assert CALLS > 2 * held, (capacity, held)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(r, 1 << 16), b"")), daemon=True)
    with serving(tmp_path, "--peers", "bob", "--workers", workers, "--log-format", "json",
                 "--log-queue", str(QUEUE), stderr=w) as (port, _):
        os.close(w)  # the server's copy is the only writer left: the reader sees the end when it exits
        statuses = trio.run(_flood, store, port)  # nobody reads stderr meanwhile
        assert statuses == [200] * CALLS
        dropped = _dropped_soon(port)
        assert dropped > 0
        reader.start()  # now somebody reads: the writers catch up and say what they dropped
        deadline = time.monotonic() + 20
        while b"not read fast enough" not in b"".join(chunks) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b"not read fast enough" in b"".join(chunks)  # told while serving, not only at the exit
    reader.join(30)
    docs = [json.loads(line) for line in b"".join(chunks).decode().splitlines() if line.strip()]
    access = [d for d in docs if d["logger"] == "peerbox.access"]
    told = [d for d in docs if d["logger"] == "peerbox.worker" and d["message"].startswith("dropped ")]
    assert told and all(d["level"] == "warning" and d["dropped"] > 0 for d in told)
    assert sum(d["dropped"] for d in told) >= dropped  # more may have been dropped after the scrape
    assert len(access) + sum(d["dropped"] for d in told) >= CALLS  # a line written or a line counted
    assert len(access) < CALLS and all(d["status"] == 200 and d["outcome"] == "ok" for d in access)
    shortest = min(len(json.dumps(d, separators=(",", ":"), ensure_ascii=False)) for d in access)
    assert shortest >= MIN_LINE, shortest  # the arithmetic above holds


def test_a_server_whose_stderr_never_moves_still_stops_cleanly(
        tmp_path: Path, store: peerbox.PeerStore, serving: Serving, pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.set_blocking(w, False)
    try:  # the pipe is full before the server starts: its very first log write blocks
        while True:
            os.write(w, b"\n" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(w, True)
    with serving(tmp_path, "--peers", "bob", "--workers", "2", "--log-queue", str(QUEUE),
                 stderr=w) as (port, _):
        os.close(w)
        assert trio.run(_flood, store, port, 400) == [200] * 400  # more than two queues and batches hold
        assert _dropped_soon(port) > 0
    # serving sent SIGTERM and saw exit 0: the queued lines were given up after a bounded wait
    chunks = list(iter(lambda: os.read(r, 1 << 16), b""))
    assert b"Traceback" not in b"".join(chunks)
