"""Per-caller quotas: the ledger attributes a peer's storage to the callers whose requests wrote it.

Every test runs once per backend (``make_backend``): the ledger sits in the
Dispatch, above the backends, and must account the same on both. Host calls go
through a real :class:`Dispatch` (as a script's would) against real storage and a
real SQLite ledger.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peerbox.hostcalls import (LEDGER_FILE, Backend, CallerQuota, Dispatch, HostCallError, Ledger, Op,
                               StorageSite, open_backend, open_storage)

from .conftest import MakeBackend

CAROL = "did:key:z6Mkcarol"
DAVE = "did:key:z6Mkdave"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / LEDGER_FILE) as led:
        yield led


def run(backend: Backend, quota: CallerQuota | None, op: Op, *args: Any) -> object:
    """One host call, as a script's run makes it."""
    return Dispatch(backend, quota=quota).call(int(op), list(args))


def sizes_on_disk(backend: Backend, names: list[str]) -> int:
    return sum(backend.stat(n).size for n in names if backend.exists(n))


def test_write_charges_the_caller_and_replace_moves_the_share(backend: Backend, ledger: Ledger) -> None:
    carol = CallerQuota(ledger, CAROL, max_bytes=1000, max_files=10, owner="bob")
    dave = CallerQuota(ledger, DAVE, max_bytes=1000)
    run(backend, carol, Op.WRITE, "a.txt", "x" * 100)
    assert ledger.usage(CAROL) == (100, 1)
    run(backend, carol, Op.WRITE, "a.txt", "x" * 40)  # her own file, replaced smaller
    assert ledger.usage(CAROL) == (40, 1)
    run(backend, dave, Op.WRITE_BYTES, "a.txt", b"y" * 70)  # dave replaces it: the share moves
    assert ledger.usage(CAROL) == (0, 0)
    assert ledger.usage(DAVE) == (70, 1)
    run(backend, None, Op.WRITE, "a.txt", "z")  # an unaccounted run leaves the ledger alone
    assert ledger.usage(DAVE) == (70, 1)
    run(backend, CallerQuota(ledger), Op.WRITE, "a.txt", "z")  # the owner's run replaces it
    assert ledger.usage(DAVE) == (0, 0)
    assert ledger.usages() == {}


def test_append_charges_only_the_appended_bytes(backend: Backend, ledger: Ledger) -> None:
    carol = CallerQuota(ledger, CAROL, max_bytes=1000, max_files=10)
    dave = CallerQuota(ledger, DAVE, max_files=10)
    run(backend, dave, Op.WRITE, "log.txt", "d" * 300)
    run(backend, carol, Op.APPEND, "log.txt", "c" * 20)
    run(backend, carol, Op.APPEND, "log.txt", "c" * 5)
    assert ledger.usage(CAROL) == (25, 0)  # the file's entry stays dave's
    assert ledger.usage(DAVE) == (300, 1)
    run(backend, carol, Op.APPEND, "new.log", "c" * 7)  # an append that creates the file
    assert ledger.usage(CAROL) == (32, 1)
    assert backend.stat("log.txt").size == 325


def test_mkdir_charges_each_created_directory(backend: Backend, ledger: Ledger) -> None:
    carol = CallerQuota(ledger, CAROL, max_files=10)
    run(backend, None, Op.MKDIR, "inbox")
    run(backend, carol, Op.MKDIR, "inbox/a/b")
    assert ledger.usage(CAROL) == (0, 2)  # inbox/a and inbox/a/b; inbox was there
    run(backend, carol, Op.MKDIR, "inbox/a/b")  # exists: nothing more
    assert ledger.usage(CAROL) == (0, 2)
    run(backend, CallerQuota(ledger), Op.DELETE, "inbox/a/b")
    assert ledger.usage(CAROL) == (0, 1)


def test_delete_by_the_owner_releases_the_callers_share(backend: Backend, ledger: Ledger) -> None:
    carol = CallerQuota(ledger, CAROL, max_bytes=250)
    for i in range(2):
        run(backend, carol, Op.WRITE, f"m{i}.txt", "x" * 100)
    with pytest.raises(HostCallError) as refused:
        run(backend, carol, Op.WRITE, "m2.txt", "x" * 100)
    assert refused.value.kind == "quota_exceeded"
    run(backend, CallerQuota(ledger), Op.DELETE, "m0.txt")  # bob, the owner, deletes one message
    assert ledger.usage(CAROL) == (100, 1)
    run(backend, carol, Op.WRITE, "m2.txt", "x" * 100)  # and carol may write again
    assert ledger.usage(CAROL) == (200, 2)


def test_over_quota_refuses_and_changes_nothing(backend: Backend, ledger: Ledger) -> None:
    carol = CallerQuota(ledger, CAROL, max_bytes=150, max_files=3, owner="bob")
    run(backend, carol, Op.WRITE, "a.txt", "x" * 100)
    run(backend, carol, Op.MKDIR, "d")
    before = (ledger.usage(CAROL), backend.list_dir(""), backend.read_bytes("a.txt"))
    attempts: list[tuple[Op, tuple[str, ...]]] = [
        (Op.WRITE, ("b.txt", "y" * 51)),
        (Op.APPEND, ("a.txt", "y" * 51)),
        (Op.MKDIR, ("d/e/f",)),  # two more entries: 4 > 3
    ]
    messages = []
    for op, args in attempts:
        with pytest.raises(HostCallError) as refused:
            run(backend, carol, op, *args)
        assert refused.value.kind == "quota_exceeded"
        messages.append(refused.value.message)
    assert (ledger.usage(CAROL), backend.list_dir(""), backend.read_bytes("a.txt")) == before
    assert not backend.exists("d/e")
    assert messages[0] == ("writing 'b.txt': this caller may keep at most 150 bytes in bob's storage "
                           "(its requests keep 100; this adds 51)")
    assert messages[2].endswith("at most 3 files and directories in bob's storage "
                                "(its requests keep 2; this adds 2)")


def test_a_refused_change_returns_its_reservation(backend: Backend, ledger: Ledger) -> None:
    carol = CallerQuota(ledger, CAROL, max_bytes=1000, max_files=10)
    with pytest.raises(HostCallError) as refused:
        run(backend, carol, Op.WRITE, "no/such/dir.txt", "x" * 100)  # the backend refuses
    assert refused.value.kind == "not_found"
    assert ledger.usage(CAROL) == (0, 0)


def test_concurrent_threads_never_exceed_the_cap(backend: Backend, ledger: Ledger) -> None:
    carol = CallerQuota(ledger, CAROL, max_bytes=1000)
    ok: list[str] = []
    start = threading.Barrier(20)

    def write(i: int) -> None:
        start.wait()
        try:
            run(backend, carol, Op.WRITE, f"f{i}.txt", "x" * 100)
            ok.append(f"f{i}.txt")
        except HostCallError as exc:
            assert exc.kind == "quota_exceeded"

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 0 < len(ok) <= 10
    assert sizes_on_disk(backend, [f"f{i}.txt" for i in range(20)]) == 100 * len(ok) <= 1000
    assert ledger.usage(CAROL) == (100 * len(ok), len(ok))


def _process_writer(kind: str, location: str, ledger_path: str, tag: int, ready: Any, go: Any,
                    s3: tuple[dict[str, object], dict[str, str]] | None = None) -> None:
    if s3 is None:
        backend = open_backend(kind, location)
    else:  # the same prefix of the same bucket, from another process
        backend = open_storage(s3[0], StorageSite(Path(location), "alice"), None, s3[1])
    with Ledger(ledger_path) as led:
        quota = CallerQuota(led, CAROL, max_bytes=1000)
        ready.wait()
        go.wait()
        for i in range(5):
            try:
                Dispatch(backend, quota=quota).call(int(Op.WRITE), [f"p{tag}-{i}.txt", "x" * 100])
            except HostCallError as exc:
                assert exc.kind == "quota_exceeded"
    backend.close()


@pytest.mark.slow
def test_two_processes_share_the_ledger(make_backend: MakeBackend, backend_kind: str, tmp_path: Path,
                                       request: pytest.FixtureRequest) -> None:
    first = make_backend()
    s3 = None
    if backend_kind == "s3":
        s3 = request.getfixturevalue("s3_table")("alice"), request.getfixturevalue("local_s3").environ()
    location = (tmp_path / "peers" / "alice" / ("files" if backend_kind == "fs" else "store.sqlite"))
    ledger_path = str(tmp_path / LEDGER_FILE)
    mp = multiprocessing.get_context("spawn")
    ready, go = mp.Barrier(5), mp.Event()
    procs = [mp.Process(target=_process_writer, args=(backend_kind, str(location), ledger_path, t, ready, go, s3))
             for t in range(4)]
    for p in procs:
        p.start()
    ready.wait()
    go.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = [f"p{t}-{i}.txt" for t in range(4) for i in range(5)]
    written = sizes_on_disk(first, names)
    assert 0 < written <= 1000
    with Ledger(ledger_path) as led:
        assert led.usage(CAROL) == (written, written // 100)


def test_release_only_quota_releases_without_charging(backend: Backend, ledger: Ledger) -> None:
    owner = CallerQuota(ledger)  # no caller
    capless = CallerQuota(ledger, DAVE)  # a caller, but no cap: not tracked
    assert not owner.tracked and not capless.tracked
    run(backend, owner, Op.WRITE, "big.txt", "x" * 5000)
    run(backend, capless, Op.MKDIR, "d")
    run(backend, capless, Op.APPEND, "big.txt", "y")
    assert ledger.usages() == {}
    carol = CallerQuota(ledger, CAROL, max_bytes=100)
    run(backend, carol, Op.WRITE, "c.txt", "x" * 60)
    run(backend, capless, Op.WRITE, "c.txt", "dave's now")  # replaced by someone untracked
    assert ledger.usage(CAROL) == (0, 0)


def test_ledger_failure_is_io_error_without_host_path(backend: Backend, tmp_path: Path) -> None:
    broken = tmp_path / "secret-host-dir" / LEDGER_FILE
    broken.parent.mkdir()
    broken.write_bytes(b"this is not a database" * 100)
    with Ledger(broken) as led:
        with pytest.raises(HostCallError) as failed:
            run(backend, CallerQuota(led, CAROL, max_bytes=10), Op.WRITE, "a.txt", "x")
        assert failed.value.kind == "io_error"
        assert failed.value.message.startswith("the quota ledger failed: ")
        assert str(tmp_path) not in failed.value.message and "secret-host-dir" not in failed.value.message
        assert not backend.exists("a.txt")  # nothing changed
    closed = Ledger(tmp_path / LEDGER_FILE)
    closed.close()
    with pytest.raises(HostCallError, match="closed") as after:
        closed.usage(CAROL)
    assert after.value.kind == "io_error"


def test_reset_forgets_a_callers_shares(backend: Backend, ledger: Ledger) -> None:
    carol = CallerQuota(ledger, CAROL, max_bytes=100)
    run(backend, carol, Op.WRITE, "a.txt", "x" * 100)
    ledger.reset(CAROL)
    assert ledger.usage(CAROL) == (0, 0)
    run(backend, carol, Op.WRITE, "b.txt", "x" * 100)
    assert ledger.usage(CAROL) == (100, 1)
    # the ledger is plain SQLite an operator can read
    with sqlite3.connect(ledger.path) as db:
        assert db.execute("SELECT path, caller, bytes FROM share").fetchall() == [("b.txt", CAROL, 100)]
