"""SQLite quotas hold across processes: the tally lives in the database, not in one process."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from peerbox.hostcalls import HostCallError, Quotas
from peerbox.hostcalls._sqlite import SqliteBackend

_WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from peerbox.hostcalls import HostCallError, Quotas
    from peerbox.hostcalls._sqlite import SqliteBackend

    db, tag, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    quotas = Quotas(max_total_bytes=20_000, max_files=1_000, max_file_size=4_096)
    b = SqliteBackend(db, quotas)
    (go.parent / f"ready-{tag}").touch()  # opened (tally read, for a per-process tally)
    while not go.exists():
        time.sleep(0.01)
    ok, refused, other = 0, 0, []
    for i in range(40):
        try:
            if i % 3 == 2:
                b.append_bytes(f"{tag}-0", b"a" * 300)
            else:
                b.write_bytes(f"{tag}-{i}", b"x" * 1000)
            ok += 1
        except HostCallError as exc:
            if exc.kind == "quota_exceeded":
                refused += 1
            else:
                other.append(exc.kind)
    b.close()
    print(json.dumps({"ok": ok, "refused": refused, "other": other}))
    """
)


@pytest.mark.slow
def test_two_processes_never_exceed_the_quota_together(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    SqliteBackend(db).close()  # created before the writers race
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(db), tag, str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for tag in ("a", "b")
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{tag}").exists() for tag in ("a", "b")):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()  # both have opened the database: now they race
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    for r in results:
        assert r["other"] == []
        assert r["ok"] + r["refused"] == 40
    assert sum(r["refused"] for r in results) > 0  # together they asked for far more than the quota
    with SqliteBackend(db, Quotas(max_total_bytes=20_000)) as b:
        stored = sum(b.stat(name).size for name in b.list_dir(""))
        assert stored <= 20_000
        assert b.usage() == (stored, len(b.list_dir("")))
        # what the quota still allows is what is left, as a third connection sees it
        with pytest.raises(HostCallError) as info:
            b.write_bytes("c", b"z" * (20_000 - stored + 1))
        assert info.value.kind == "quota_exceeded"


def test_two_connections_share_the_tally(tmp_path: Path) -> None:
    """Two backends on one file in one process: the same guarantee, deterministically."""
    db = tmp_path / "store.sqlite"
    q = Quotas(max_total_bytes=100)
    with SqliteBackend(db, q) as one, SqliteBackend(db, q) as two:
        one.write_bytes("a", b"a" * 60)
        with pytest.raises(HostCallError, match="over its 100-byte quota") as info:
            two.write_bytes("b", b"b" * 41)
        assert info.value.kind == "quota_exceeded"
        two.write_bytes("b", b"b" * 40)
        assert one.usage() == two.usage() == (100, 2)
        one.delete("a")
        two.mkdir("d/e")
        assert two.usage() == one.usage() == (40, 3)


def test_an_old_database_gets_its_tally_computed_once(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    with SqliteBackend(db) as b:
        b.mkdir("d")
        b.write_bytes("d/f", b"12345")
        b.write_bytes("g", b"67")
    con = sqlite3.connect(db)
    con.execute("DROP TABLE usage")  # a database from before the tally was stored
    con.commit()
    con.close()
    with SqliteBackend(db, Quotas(max_total_bytes=10)) as b:
        assert b.usage() == (7, 3)
        with pytest.raises(HostCallError) as info:
            b.write_bytes("h", b"1234")
        assert info.value.kind == "quota_exceeded"
        b.write_bytes("h", b"123")
        assert b.usage() == (10, 4)
