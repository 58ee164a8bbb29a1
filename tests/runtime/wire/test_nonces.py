"""The nonce store's group commit (peerbox.wire._nonces), on real SQLite files.

What a peer relies on: of any number of concurrent uses of one nonce, in
threads, stores or processes sharing the file, exactly one is accepted; an
accepted nonce is on disk before the caller hears "unseen" (so a restart
refuses the replay); a batch that cannot be committed refuses every request
in it and uses up none of their nonces; and the in-memory record stays
bounded.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from peerbox.wire import NonceStoreError
from peerbox.wire._nonces import PRUNE_EVERY, NonceStore

NOW = 1_700_000_000
CALLER = b"c" * 32


def nonce(i: int, tag: bytes = b"n") -> bytes:
    return tag + i.to_bytes(15, "big")


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` on ``count`` threads released together; re-raise the first failure."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        barrier.wait()
        try:
            target(i)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_many_threads_racing_one_pair_accept_it_once(tmp_path: Path) -> None:
    with NonceStore(tmp_path / "n.sqlite") as store:
        answers: list[tuple[int, bool]] = []
        lock = threading.Lock()

        def race(i: int) -> None:
            for k in range(20):  # 20 pairs, each raced by every thread
                seen = store.seen_or_add(CALLER, nonce(k), NOW + 60, NOW)
                with lock:
                    answers.append((k, seen))

        run_threads(16, race)
        for k in range(20):
            assert sorted(seen for j, seen in answers if j == k) == [False] + [True] * 15
        assert len(store) == 20


def test_two_stores_on_one_file_accept_each_pair_once(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    with NonceStore(path) as a, NonceStore(path) as b:
        accepted: list[int] = []
        lock = threading.Lock()

        def race(i: int) -> None:
            store = a if i % 2 else b
            for k in range(150):
                if not store.seen_or_add(CALLER, nonce(k), NOW + 60, NOW):
                    with lock:
                        accepted.append(k)

        run_threads(8, race)
        assert sorted(accepted) == list(range(150))
        # each store answers the other's pairs (through SQLite: its memory only has its own)
        assert all(a.seen_or_add(CALLER, nonce(k), NOW + 60, NOW + 1) for k in range(150))
        assert all(b.seen_or_add(CALLER, nonce(k), NOW + 60, NOW + 1) for k in range(150))


_RACER = r"""
import json, sys, threading, time
from peerbox.wire._nonces import NonceStore
path, start, pairs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
accepted, lock = [], threading.Lock()
def race(t):
    order = range(pairs) if t % 2 else range(pairs - 1, -1, -1)
    for k in order:
        if not store.seen_or_add(b"c" * 32, b"n" + k.to_bytes(15, "big"), 1_700_000_060, 1_700_000_000):
            with lock:
                accepted.append(k)
threads = [threading.Thread(target=race, args=(t,)) for t in range(4)]
while time.time() < start:
    time.sleep(0.0005)
store = NonceStore(path)  # both processes create the file at the same moment
for t in threads:
    t.start()
for t in threads:
    t.join()
store.close()
print(json.dumps(accepted))
"""


@pytest.mark.slow
def test_two_processes_on_one_file_accept_each_pair_once(tmp_path: Path) -> None:
    """Two processes (as two workers of one ``serve --workers 2`` are) racing 300 pairs, opening
    the new file at the same moment: every pair is accepted by exactly one of them."""
    path = tmp_path / "peer" / "nonces.sqlite"
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(path), str(start), "300"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert sorted(results[0] + results[1]) == list(range(300))
    with NonceStore(path) as store:  # and a third, later, refuses them all
        assert all(store.seen_or_add(CALLER, nonce(k), NOW + 60, NOW + 1) for k in range(300))


_OPENER = r"""
import sys, time
from peerbox.wire._nonces import NonceStore, NonceStoreError
root, start, files = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
failed = 0
for i in range(files):
    while time.time() < start + 0.05 * i:
        time.sleep(0.0005)
    try:
        NonceStore(f"{root}/{i}/nonces.sqlite").close()
    except NonceStoreError as exc:
        failed += 1
        print(exc, file=sys.stderr)
print(failed)
"""


@pytest.mark.slow
def test_processes_opening_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Switching a new file to WAL can answer "locked" at once, without SQLite's busy wait,
    when another process is creating it (a worker's processes meet each peer's file at its
    first request); opening retries it. Three processes open 20 new files at the same moments."""
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", _OPENER, str(tmp_path), str(start), "20"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "0", err


def test_batching_commits_many_calls_per_transaction(tmp_path: Path) -> None:
    """Calls that arrive while a commit is under way join the next batch: with the database held by
    another connection for a moment, 16 concurrent callers are written in a handful of commits."""
    path = tmp_path / "n.sqlite"
    with NonceStore(path) as store:
        assert store.seen_or_add(CALLER, nonce(999), NOW + 60, NOW) is False  # the file exists

        def add(i: int) -> None:
            assert store.seen_or_add(CALLER, nonce(i), NOW + 60, NOW) is False

        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
        release = threading.Timer(0.5, lambda: holder.execute("ROLLBACK"))
        release.start()
        try:
            run_threads(16, add)
        finally:
            release.join()
            holder.close()
        assert store.calls == 17
        assert store.failed_commits == 0
        assert store.commits <= 4, store.commits  # the first write, the leader held up, then the rest
        assert len(store) == 17
        assert [store.seen_or_add(CALLER, nonce(i), NOW + 60, NOW) for i in range(16)] == [True] * 16


def test_a_single_caller_commits_at_once(tmp_path: Path) -> None:
    """No timer: a lone call is its own batch, committed before it returns."""
    path = tmp_path / "n.sqlite"
    with NonceStore(path) as store:
        assert store.seen_or_add(CALLER, nonce(1), NOW + 60, NOW) is False
        assert store.commits == 1
        other = sqlite3.connect(path)
        try:
            assert other.execute("SELECT count(*) FROM nonces").fetchone()[0] == 1
        finally:
            other.close()


def test_a_failed_commit_fails_every_caller_of_its_batch_and_spends_no_nonce(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    with NonceStore(path, busy_timeout=0.3) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock too long
        outcomes: list[object] = []
        lock = threading.Lock()

        def call(i: int) -> None:
            try:
                result: object = store.seen_or_add(CALLER, nonce(i % 10), NOW + 60, NOW)
            except NonceStoreError as exc:
                result = exc
            with lock:
                outcomes.append(result)

        try:
            run_threads(12, call)  # 10 pairs, two of them asked twice
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert len(outcomes) == 12
        assert all(isinstance(o, NonceStoreError) for o in outcomes), outcomes
        assert all(isinstance(o.__cause__, sqlite3.OperationalError) for o in outcomes
                   if isinstance(o, NonceStoreError))
        assert "locked" in str(outcomes[0])
        assert store.commits == 0
        assert 1 <= store.failed_commits < 12  # the callers shared batches
        assert store.remembered == 0
        # nothing was spent: the same nonces are accepted now, once
        assert [store.seen_or_add(CALLER, nonce(i), NOW + 60, NOW) for i in range(10)] == [False] * 10
        assert [store.seen_or_add(CALLER, nonce(i), NOW + 60, NOW) for i in range(10)] == [True] * 10
        assert len(store) == 10


def test_restart_refuses_replays_and_accepts_expired_pairs(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nonces.sqlite"
    with NonceStore(path) as store:
        assert [store.seen_or_add(CALLER, nonce(k), NOW + 60, NOW) for k in range(50)] == [False] * 50
    with NonceStore(path) as store:
        assert store.remembered == 0  # a new process's memory is empty: SQLite answers
        assert all(store.seen_or_add(CALLER, nonce(k), NOW + 60, NOW + 30) for k in range(50))
        assert store.seen_or_add(b"d" * 32, nonce(0), NOW + 60, NOW) is False  # other caller
        # once expired, a pair counts as unseen and is recorded again
        assert store.seen_or_add(CALLER, nonce(0), NOW + 200, NOW + 60) is False
        assert store.seen_or_add(CALLER, nonce(0), NOW + 200, NOW + 100) is True


def test_an_expired_pair_in_memory_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    with NonceStore(path) as a, NonceStore(path) as b:
        assert a.seen_or_add(CALLER, nonce(1), NOW + 10, NOW) is False
        assert a.seen_or_add(CALLER, nonce(1), NOW + 10, NOW + 9) is True  # from memory
        assert b.seen_or_add(CALLER, nonce(1), NOW + 40, NOW + 10) is False  # expired: replaced
        assert a.seen_or_add(CALLER, nonce(1), NOW + 40, NOW + 20) is True  # memory expired, SQLite knows
        assert b.seen_or_add(CALLER, nonce(1), NOW + 40, NOW + 20) is True


def test_memory_is_bounded_and_forgetting_never_accepts_a_replay(tmp_path: Path) -> None:
    with NonceStore(tmp_path / "n.sqlite", memory_entries=100) as store:
        assert [store.seen_or_add(CALLER, nonce(k), NOW + 60, NOW) for k in range(1000)] == [False] * 1000
        assert store.remembered == 100
        assert all(store.seen_or_add(CALLER, nonce(k), NOW + 60, NOW) for k in range(1000))


def test_expired_entries_leave_memory_and_disk(tmp_path: Path) -> None:
    with NonceStore(tmp_path / "n.sqlite") as store:
        for k in range(PRUNE_EVERY):
            store.seen_or_add(CALLER, nonce(k, b"a"), NOW + 5, NOW)
        assert len(store) == PRUNE_EVERY
        # later calls: the first batch's pairs expired and are swept from memory and table
        for k in range(PRUNE_EVERY):
            store.seen_or_add(CALLER, nonce(k, b"b"), NOW + 60, NOW + 10)
        assert store.remembered == PRUNE_EVERY  # the "b" pairs only
        assert len(store) == PRUNE_EVERY
        assert store.prune(NOW + 100) == PRUNE_EVERY
        assert store.remembered == 0
        assert len(store) == 0


def test_memory_per_entry_is_small(tmp_path: Path) -> None:
    with NonceStore(tmp_path / "n.sqlite", memory_entries=4000) as store:
        pairs = [(CALLER, nonce(k)) for k in range(2000)]
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for caller, n in pairs:
                store.seen_or_add(caller, n, NOW + 60, NOW)
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert store.remembered == 2000
        assert (after - before) / 2000 < 250, after - before


def test_a_closed_store_refuses_instead_of_answering(tmp_path: Path) -> None:
    store = NonceStore(tmp_path / "n.sqlite")
    assert store.seen_or_add(CALLER, nonce(1), NOW + 60, NOW) is False
    store.close()
    store.close()  # idempotent
    with pytest.raises(NonceStoreError, match="closed"):
        store.seen_or_add(CALLER, nonce(1), NOW + 60, NOW)
    with pytest.raises(NonceStoreError, match="closed"):
        store.seen_or_add(CALLER, nonce(2), NOW + 60, NOW)
    with pytest.raises(NonceStoreError, match="closed"):
        len(store)
    with pytest.raises(NonceStoreError, match="closed"):
        store.prune(NOW)


def test_close_fails_the_callers_waiting_for_a_batch(tmp_path: Path) -> None:
    """Closing while a commit waits on another process's lock: the callers in that commit and
    those gathered behind it all get NonceStoreError, none an answer."""
    path = tmp_path / "n.sqlite"
    store = NonceStore(path, busy_timeout=0.5)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    outcomes: list[object] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        try:
            result: object = store.seen_or_add(CALLER, nonce(i), NOW + 60, NOW)
        except NonceStoreError as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    store.close()
    for t in threads:
        t.join()
    blocker.execute("ROLLBACK")
    blocker.close()
    assert len(outcomes) == 6 and all(isinstance(o, NonceStoreError) for o in outcomes), outcomes


def test_bad_settings_are_usage_errors(tmp_path: Path) -> None:
    from peerbox import UsageError

    with pytest.raises(UsageError):
        NonceStore(tmp_path / "n.sqlite", synchronous="OFF")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        NonceStore(tmp_path / "n.sqlite", memory_entries=-1)


def test_full_synchronous_is_a_choice(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    with NonceStore(path, synchronous="FULL") as store:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert store.seen_or_add(CALLER, nonce(1), NOW + 60, NOW) is False
    with NonceStore(path) as store:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.seen_or_add(CALLER, nonce(1), NOW + 60, NOW) is True
