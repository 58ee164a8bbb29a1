"""Storage failures a script can catch never name host paths (issue 12).

An ``io_error`` reaches the script as ``e.message`` and, uncaught, the
caller's reply: it must name the script's own relative path and what went
wrong (the system's error text), never the worker's absolute paths or any
part of the peer root. Each failure here is provoked for real, in real runs:

* a file and a directory made unreadable with ``chmod 000``, read in a real
  run (skipped as root, who reads them anyway) or, as root, through the
  host-call dispatcher in a forked child that dropped to uid 65534;
* a directory and a file made immutable (``chattr +i``, which stops root
  too; skipped where the file system or the process cannot set the flag);
* a SQLite database whose file-content pages were overwritten between two
  processes' sessions (SQLite: "database disk image is malformed").

The last tests pin the wording helpers that every backend uses, on the
reasons the standard library really produces (``str()`` of an ``OSError``
names its file).
"""

from __future__ import annotations

import array
import errno
import fcntl
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox.hostcalls import Backend, Dispatch, FsBackend, HostCallError, Op
from peerbox.hostcalls._errors import db_reason, io_error, os_reason

_FS_IOC_GETFLAGS = 0x80086601
_FS_IOC_SETFLAGS = 0x40086602
_FS_IMMUTABLE_FL = 0x10
_ABSOLUTE = re.compile(r"(?<![\w.~-])/[\w.-]")

# Every host call on ``paths``, each failure caught: [path, op, kind, message] or [path, op, "ok"].
PROBE = """
fn attempt(out, p, op, f) {
    try { f.call(); out.push([p, op, "ok"]); } catch (e) { out.push([p, op, e.kind, e.message]); }
    out
}
let out = [];
for p in params.paths {
    out = attempt(out, p, "read", || fs::read(p));
    out = attempt(out, p, "write", || fs::write(p, "x"));
    out = attempt(out, p, "append", || fs::append(p, "y"));
    out = attempt(out, p, "list", || fs::list(p));
    out = attempt(out, p, "mkdir", || fs::mkdir(p + "/sub"));
    out = attempt(out, p, "delete", || fs::delete(p));
}
out
"""


def assert_no_host_path(message: str, root: Path) -> None:
    """``message`` names no absolute path and no component of ``root`` (the peer root's host path)."""
    assert _ABSOLUTE.search(message) is None, message
    assert str(root) not in message
    for part in root.parts:
        if part not in ("/", "peers", "files", "alice", "bob"):
            assert part not in message, (part, message)


def probe(ctx: peerbox.PeerContext, paths: list[str]) -> list[list[Any]]:
    result: list[list[Any]] = ctx.run(ctx.compile(PROBE, filename="probe.rhai"), {"paths": paths}).value
    return result


def io_errors(results: list[list[Any]]) -> list[list[Any]]:
    return [r for r in results if r[2] == "io_error"]


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[tuple[Path, peerbox.Contexts]]:
    root = tmp_path / "pbroot"
    store = peerbox.PeerStore(root)
    store.init("alice")
    store.init("bob", backend="sqlite")
    with peerbox.Contexts(root=root) as contexts:
        yield root, contexts


# ------------------------------------------------------------------ unreadable (chmod 000)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files and directories whatever their mode")
def test_unreadable_file_and_directory_give_io_errors_without_host_paths(
    peers: tuple[Path, peerbox.Contexts],
) -> None:
    root, contexts = peers
    alice = contexts.get("alice")
    files = alice.peer.paths.storage
    (files / "locked.txt").write_text("secret")
    (files / "locked").mkdir()
    (files / "locked" / "inner.txt").write_text("inner")
    os.chmod(files / "locked.txt", 0)
    os.chmod(files / "locked", 0)
    try:
        results = probe(alice, ["locked.txt", "locked", "locked/inner.txt"])
    finally:
        os.chmod(files / "locked", 0o700)
        os.chmod(files / "locked.txt", 0o600)
    failed = io_errors(results)
    assert {(r[0], r[1]) for r in failed} >= {("locked.txt", "read"), ("locked", "list"),
                                              ("locked/inner.txt", "read")}
    for path, op, _kind, message in failed:
        shown = f"{path}/sub" if op == "mkdir" else path
        assert message.startswith(f"i/o error on {shown!r}: ")
        assert os.strerror(errno.EACCES) in message
        assert_no_host_path(message, files)


def _calls_as_nobody(backend: Backend, calls: list[tuple[Op, list[Any]]]) -> list[list[Any]]:
    """Each host call through ``Dispatch(backend)`` in a forked child that dropped to uid and gid
    65534 first (the backend's root descriptor was opened by this process): [op, kind, message]."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(rfd)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            out: list[list[Any]] = []
            for op, args in calls:
                try:
                    Dispatch(backend).call(op, args)
                    out.append([op.name, "ok", ""])
                except HostCallError as exc:
                    out.append([op.name, exc.kind, exc.message])
            os.write(wfd, json.dumps(out).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result: list[list[Any]] = json.loads(data)
    return result


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_unreadable_file_and_directory_as_another_user(tmp_path: Path) -> None:
    files = tmp_path / "pbroot" / "peers" / "alice" / "files"
    with FsBackend(files) as backend:
        os.chmod(files, 0o755)
        (files / "open.txt").write_text("o")
        os.chmod(files / "open.txt", 0o644)
        (files / "locked.txt").write_text("secret")
        (files / "locked").mkdir()
        (files / "locked" / "inner.txt").write_text("inner")
        os.chmod(files / "locked.txt", 0)
        os.chmod(files / "locked", 0)
        results = _calls_as_nobody(backend, [
            (Op.READ, ["open.txt"]), (Op.READ, ["locked.txt"]), (Op.LIST, ["locked"]),
            (Op.READ, ["locked/inner.txt"]), (Op.WRITE, ["new.txt", "x"]),
        ])
    assert [r[:2] for r in results] == [["READ", "ok"], ["READ", "io_error"], ["LIST", "io_error"],
                                        ["READ", "io_error"], ["WRITE", "io_error"]]
    for (_, _, message), path in zip(results[1:], ["locked.txt", "locked", "locked", "new.txt"]):
        assert message == f"i/o error on {path!r}: {os.strerror(errno.EACCES)}"
        assert_no_host_path(message, files)


# ------------------------------------------------------------------ immutable (chattr +i)


def _set_immutable(path: Path, on: bool) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        flags[0] = flags[0] | _FS_IMMUTABLE_FL if on else flags[0] & ~_FS_IMMUTABLE_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
    finally:
        os.close(fd)


@pytest.fixture
def immutable() -> Iterator[Any]:
    """``immutable(path)`` sets the immutable flag (skips the test if it cannot); cleared afterwards."""
    marked: list[Path] = []

    def mark(path: Path) -> None:
        try:
            _set_immutable(path, True)
        except OSError as exc:
            pytest.skip(f"cannot make files immutable here: {exc.strerror}")
        marked.append(path)

    yield mark
    for path in reversed(marked):
        _set_immutable(path, False)


def test_immutable_directory_and_file_give_io_errors_without_host_paths(
    peers: tuple[Path, peerbox.Contexts], immutable: Any,
) -> None:
    root, contexts = peers
    alice = contexts.get("alice")
    files = alice.peer.paths.storage
    (files / "frozen").mkdir()
    (files / "frozen" / "f.txt").write_text("f")
    (files / "still.txt").write_text("s")
    immutable(files / "frozen")
    immutable(files / "still.txt")
    results = probe(alice, ["frozen/f.txt", "frozen/new.txt", "still.txt", "frozen"])
    failed = io_errors(results)
    expected = {("frozen/f.txt", "write"), ("frozen/f.txt", "delete"), ("frozen/new.txt", "write"),
                ("still.txt", "write"), ("still.txt", "delete"), ("frozen/sub", "mkdir")}
    assert expected <= {(r[3].split("'")[1], r[1]) for r in failed}
    for _path, _op, _kind, message in failed:
        assert os.strerror(errno.EPERM) in message
        assert_no_host_path(message, files)
    assert (files / "frozen" / "f.txt").read_text() == "f"  # nothing was changed

    # uncaught, the same message ends the run (and would be the caller's reply)
    with pytest.raises(peerbox.ScriptError) as info:
        alice.run(alice.compile('fs::write("frozen/new.txt", "x")', filename="job.rhai"))
    assert "i/o error on 'frozen/new.txt'" in str(info.value)
    assert_no_host_path(str(info.value), files)


# ------------------------------------------------------------------ a damaged SQLite database


def _damage_content_pages(db: Path, marker: bytes) -> int:
    """Overwrite the next-page pointer of every overflow page holding ``marker`` bytes."""
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    page = 65536 if page == 1 else page
    damaged = 0
    for off in range(page, len(data), page):
        if data[off + 4 : off + 100] == marker * 96:
            data[off : off + 4] = b"\xff\xff\xff\xff"
            damaged += 1
    db.write_bytes(bytes(data))
    return damaged


def test_damaged_sqlite_database_gives_io_errors_without_host_paths(tmp_path: Path) -> None:
    root = tmp_path / "sqroot"
    peerbox.PeerStore(root).init("bob", backend="sqlite")
    fill = 'let t = ""; for i in 0..8000 { t += "QQQQQQQQQQQQQQQQ"; } fs::write("big.txt", t); ' \
           'fs::mkdir("d"); fs::write("d/ok.txt", "fine");'
    with peerbox.Contexts(root=root) as contexts:
        bob = contexts.get("bob")
        bob.run(bob.compile(fill))
        db = bob.peer.paths.storage
    assert not Path(str(db) + "-wal").exists()  # closed: everything is in the main file
    assert _damage_content_pages(db, b"Q") > 10
    with peerbox.Contexts(root=root) as contexts:  # a new process's session, as after a restart
        bob = contexts.get("bob")
        results = probe(bob, ["big.txt", "d/ok.txt"])
        failed = io_errors(results)
        assert {(r[0], r[1]) for r in failed} >= {("big.txt", "read"), ("big.txt", "append")}
        assert ["d/ok.txt", "read", "ok"] in results  # the rest of the database still works
        for path, op, _kind, message in failed:
            shown = f"{path}/sub" if op == "mkdir" else path
            assert message == f"i/o error on {shown!r}: database disk image is malformed"
            assert_no_host_path(message, db.parent)


# ------------------------------------------------------------------ the wording helpers


def test_io_error_replaces_absolute_paths_in_any_reason(tmp_path: Path) -> None:
    host = str(tmp_path / "peers" / "alice" / "files" / "x.txt")
    reasons = [
        str(PermissionError(errno.EACCES, "Permission denied", host)),
        f"unable to open database file {host}",
        f"cannot open={host}",
        "C:\\peers\\alice\\files\\x.txt is locked",
    ]
    for reason in reasons:
        message = io_error("a/x.txt", reason).message
        assert message.startswith("i/o error on 'a/x.txt': ")
        assert "<host path>" in message
        assert_no_host_path(message, tmp_path)
    assert io_error("a", "x" * 10_000).message.endswith("…")
    assert len(io_error("a", "x" * 10_000).message) < 300


def test_reasons_keep_the_error_text_and_drop_the_file_name(tmp_path: Path) -> None:
    host = str(tmp_path / "peers" / "alice" / "files")
    try:
        os.open(os.path.join(host, "missing", "x"), os.O_RDONLY)
    except OSError as exc:
        assert host in str(exc)  # what a careless str(exc) would have shown
        assert os_reason(exc) == os.strerror(errno.ENOENT)
    assert os_reason(OSError(errno.EIO, None)) == "EIO"
    try:
        sqlite3.connect(os.path.join(host, "missing", "db.sqlite"))
    except sqlite3.Error as exc:
        assert db_reason(exc) == "unable to open database file"
    assert host not in db_reason(sqlite3.OperationalError(f"cannot attach {host}/db.sqlite"))
    assert db_reason(sqlite3.OperationalError("database is locked")) == "database is locked"
