"""A peer's audit log (peerbox.peer.AuditLog): whole lines, rotation that keeps K files, reading them
oldest first, filters, and several processes appending to one file at once."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from peerbox.peer import AuditLog, AuditRecord, Decision, PeerError, Rotation, parse_since


def _record(i: int, caller: str = "did:key:zA", name: str | None = "alice", t: float = 1_700_000_000.0,
            decision: Decision = Decision.ALLOWED) -> AuditRecord:
    return AuditRecord(time=t + i, caller=caller, caller_name=name, type="exec", action="exec",
                       resource=f"sha256:{i:064x}", decision=decision, rule="policy.toml:3", outcome="ok",
                       nonce=f"{i:032x}")


def test_records_round_trip_in_order(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    log.append(_record(1))
    log.append(_record(2, decision=Decision.DENIED))
    log.close()
    got = list(log.records())
    assert [r.nonce for r in got] == [f"{1:032x}", f"{2:032x}"]
    assert got[1].decision is Decision.DENIED and got[0] == _record(1)
    assert oct((tmp_path / "audit.log").stat().st_mode & 0o777) == "0o600"  # the owner's record only


def test_rotation_keeps_k_files_and_reading_spans_them(tmp_path: Path) -> None:
    size = len(_record(0).to_line())
    log = AuditLog(tmp_path / "audit.log", Rotation(max_bytes=size * 3, keep=2))
    for i in range(20):
        log.append(_record(i))
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("audit.log") and "lock" not in p.name)
    assert names == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all(p.stat().st_size <= size * 3 for p in tmp_path.glob("audit.log*"))
    got = [int(r.nonce, 16) for r in log.records()]
    # the newest lines, oldest first, across the three files: nothing older than what they hold
    assert got == list(range(20 - len(got), 20)) and len(got) >= 7


def test_keep_zero_drops_old_lines(tmp_path: Path) -> None:
    size = len(_record(0).to_line())
    log = AuditLog(tmp_path / "audit.log", Rotation(max_bytes=size * 2, keep=0))
    for i in range(5):
        log.append(_record(i))
    assert [int(r.nonce, 16) for r in log.records()] == [4]
    assert not (tmp_path / "audit.log.1").exists()


def test_filters_and_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.append(_record(1, caller="did:key:zA", name="alice"))
    log.append(_record(2, caller="did:key:zB", name=None))
    with open(path, "ab") as f:
        f.write(b'{"time": "2023-11-1')  # a line torn by a crash: skipped, the next one still read
        f.write(b"\n")
    log.append(_record(3, caller="did:key:zA", name="alice"))
    assert [r.nonce[-1] for r in log.records(callers={"alice"})] == ["1", "3"]
    assert [r.nonce[-1] for r in log.records(callers={"did:key:zB"})] == ["2"]
    assert [r.nonce[-1] for r in log.records(since=1_700_000_002.0)] == ["2", "3"]


def test_parse_since() -> None:
    assert parse_since("90s", 1000.0) == 910.0
    assert parse_since("2h", 10_000.0) == 10_000.0 - 7200
    assert parse_since("2023-11-14T22:13:20Z", 0) == 1_700_000_000.0
    with pytest.raises(PeerError, match="--since"):
        parse_since("yesterday", 0)


def _writer(path: str, who: int, count: int, max_bytes: int) -> None:
    log = AuditLog(path, Rotation(max_bytes=max_bytes, keep=50))
    for i in range(count):
        log.append(_record(i, caller=f"did:key:z{who}", name=f"p{who}" + "x" * (who * 37 % 200)))
    log.close()


@pytest.mark.slow
def test_processes_appending_never_interleave_and_rotate_safely(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(os.fspath(path), who, 300, 16 << 10)) for who in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = b"".join(f.read_bytes() for f in tmp_path.glob("audit.log*") if "lock" not in f.name).splitlines()
    assert len(lines) == 4 * 300  # nothing lost (keep is large enough), nothing torn
    docs = [json.loads(line) for line in lines]
    for who in range(4):
        mine = [d for d in docs if d["caller"] == f"did:key:z{who}"]
        assert len(mine) == 300
    assert len(list(AuditLog(path).records())) == 4 * 300
    assert (tmp_path / "audit.log.1").exists()
