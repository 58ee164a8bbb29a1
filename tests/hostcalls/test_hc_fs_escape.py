"""FsBackend: nothing outside the peer root is read, written, created or stat'ed.

The layout mimics ``peerbox init``: ``<base>/peers/alice/files`` is alice's
root, ``<base>/peers/bob/files`` is another peer's, ``<base>/outside`` is
anything else on the host. Symlinks, special files and hard links are
planted inside alice's root; every host call through them is refused and the
trees outside are byte-for-byte and mtime-for-mtime unchanged.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from peerbox.hostcalls import Dispatch, FsBackend, HostCallError, Op, Quotas
from peerbox.hostcalls import _dirfd as dirfd_module

Snapshot = Callable[[Path], dict[str, tuple[object, ...]]]


class World:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "peers" / "alice" / "files"
        self.bob = base / "peers" / "bob" / "files"
        self.outside = base / "outside"
        for d in (self.root, self.bob, self.outside / "sub"):
            d.mkdir(parents=True)
        (self.outside / "secret.txt").write_bytes(b"OUTSIDE SECRET")
        (self.outside / "sub" / "f").write_bytes(b"OUTSIDE F")
        (self.bob / "secret.txt").write_bytes(b"bob's secret")
        (self.bob / "dir").mkdir()
        (self.bob / "dir" / "f").write_bytes(b"bob's f")
        (self.root / "mine.txt").write_bytes(b"mine")
        # symlinks planted inside alice's root
        os.symlink(self.outside, self.root / "out_dir")
        os.symlink(self.outside / "secret.txt", self.root / "out_file")
        os.symlink("../../bob/files", self.root / "bob")
        os.symlink("../../bob/files/secret.txt", self.root / "bob_secret")
        os.symlink(self.outside / "missing", self.root / "dangling")
        (self.root / "d").mkdir()
        os.symlink("../../../bob/files/dir", self.root / "d" / "bobdir")


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def alice(world: World) -> Iterator[FsBackend]:
    backend = FsBackend(world.root)
    yield backend
    backend.close()


def _outside_state(world: World, snapshot: Snapshot) -> list[dict[str, tuple[object, ...]]]:
    return [snapshot(world.outside), snapshot(world.bob)]


THROUGH = ["out_dir/secret.txt", "out_dir/sub/f", "bob/secret.txt", "bob/dir/f", "d/bobdir/f"]
LINKS = ["out_file", "bob_secret", "dangling", "out_dir", "bob", "d/bobdir"]


def test_symlinks_are_never_followed(world: World, alice: FsBackend, snapshot: Snapshot) -> None:
    before = _outside_state(world, snapshot)
    d = Dispatch(alice)
    for path in THROUGH:
        calls: list[tuple[Op, list[Any]]] = [
            (Op.READ, [path]),
            (Op.READ_BYTES, [path]),
            (Op.WRITE, [path, "pwned"]),
            (Op.WRITE_BYTES, [path, b"pwned"]),
            (Op.APPEND, [path, "pwned"]),
            (Op.STAT, [path]),
            (Op.DELETE, [path]),
            (Op.MKDIR, [path]),
            (Op.LIST, [path]),
        ]
        for op, args in calls:
            with pytest.raises(HostCallError) as info:
                d.call(op, args)
            assert info.value.kind == "not_a_file", (op, path, info.value)
            assert "is a symbolic link" in info.value.message
        assert d.call(Op.EXISTS, [path]) is False
        new = path.rsplit("/", 1)[0] + "/new.txt"
        with pytest.raises(HostCallError):
            d.call(Op.WRITE, [new, "x"])
    for path in LINKS:
        for op, args in [
            (Op.READ, [path]),
            (Op.READ_BYTES, [path]),
            (Op.WRITE, [path, "pwned"]),
            (Op.APPEND, [path, "pwned"]),
            (Op.STAT, [path]),
            (Op.LIST, [path]),
        ]:
            with pytest.raises(HostCallError) as info:
                d.call(op, args)
            assert info.value.kind in ("not_a_file", "not_a_directory"), (op, path, info.value)
            assert "symbolic link" in info.value.message
        with pytest.raises(HostCallError) as info:
            d.call(Op.MKDIR, [path + "/x"])
        assert info.value.kind == "not_a_file"
    assert _outside_state(world, snapshot) == before
    # the links are still there (refusals changed nothing inside either)
    assert all(os.path.islink(world.root / p) for p in LINKS)


def test_deleting_a_planted_link_removes_the_link_only(
    world: World, alice: FsBackend, snapshot: Snapshot
) -> None:
    before = _outside_state(world, snapshot)
    for path in LINKS:
        assert alice.exists(path)
        alice.delete(path)
        assert not os.path.lexists(world.root / path)
    assert _outside_state(world, snapshot) == before


def test_listing_never_shows_another_peers_files(world: World, alice: FsBackend) -> None:
    names = alice.list_dir("")
    assert "secret.txt" not in names and "dir" not in names
    assert names == sorted(["mine.txt", "out_dir", "out_file", "bob", "bob_secret", "dangling", "d"])
    assert alice.list_dir("d") == ["bobdir"]


def test_root_given_through_a_symlink_is_trusted_configuration(world: World) -> None:
    os.symlink(world.root, world.base / "alias")
    with FsBackend(world.base / "alias") as backend:
        assert backend.read_bytes("mine.txt") == b"mine"


@pytest.mark.slow
def test_directory_swapped_for_a_symlink_while_reading(
    world: World, alice: FsBackend, snapshot: Snapshot
) -> None:
    """A thread flips ``d2`` between a real directory and a symlink to outside
    thousands of times while the main thread reads, stats and lists through it:
    nothing ever comes from outside."""
    real = world.root / "d2"
    real.mkdir()
    (real / "f").write_bytes(b"inside")  # 6 bytes; outside/sub/f is 9
    aside = world.root / "d2-aside"
    before = _outside_state(world, snapshot)
    stop = threading.Event()
    flips = 0

    def flipper() -> None:
        nonlocal flips
        while not stop.is_set():
            os.rename(real, aside)
            os.symlink(world.outside / "sub", real)
            os.unlink(real)
            os.rename(aside, real)
            flips += 1

    thread = threading.Thread(target=flipper)
    thread.start()
    inside = refused = 0
    deadline = time.monotonic() + 1.5
    try:
        while time.monotonic() < deadline or flips < 2000:
            for call in (
                lambda: alice.read_bytes("d2/f"),
                lambda: alice.stat("d2/f").size,
                lambda: alice.list_dir("d2"),
            ):
                try:
                    got: Any = call()
                except HostCallError as exc:
                    assert exc.kind in ("not_found", "not_a_file"), exc
                    refused += 1
                else:
                    assert got in (b"inside", 6, ["f"]), got
                    inside += 1
            if time.monotonic() > deadline + 10:
                break
    finally:
        stop.set()
        thread.join()
    assert flips >= 1000
    assert inside > 0 and refused > 0, (inside, refused)
    assert _outside_state(world, snapshot) == before


def test_fifo_is_refused_without_blocking(world: World, alice: FsBackend) -> None:
    os.mkfifo(world.root / "fifo")
    os.mkdir(world.root / "fd")
    os.mkfifo(world.root / "fd" / "fifo")
    results: list[object] = []

    def attempt() -> None:
        for call in (
            lambda: alice.read_bytes("fifo"),
            lambda: alice.read_bytes("fd/fifo"),
            lambda: alice.append_bytes("fifo", b"x"),
            lambda: alice.write_bytes("fifo", b"x"),
            lambda: alice.stat("fifo"),
            lambda: alice.list_dir("fifo"),
        ):
            try:
                results.append(call())
            except HostCallError as exc:
                results.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive(), "a FIFO blocked a host call"
    kinds = [r.kind if isinstance(r, HostCallError) else r for r in results]
    assert kinds == ["not_a_file"] * 5 + ["not_a_directory"]
    assert "is not a regular file (it is a FIFO)" in str(results[0])
    assert stat.S_ISFIFO(os.lstat(world.root / "fifo").st_mode)  # not replaced
    assert alice.exists("fifo") and "fifo" in alice.list_dir("")
    alice.delete("fifo")
    assert not os.path.lexists(world.root / "fifo")


def test_fifo_swapped_in_after_the_check_is_refused_on_the_descriptor(
    world: World, alice: FsBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pre-open check is only for clear messages: the fstat of the open
    descriptor is what refuses, and O_NONBLOCK is what keeps open() from blocking."""
    os.mkfifo(world.root / "fifo")
    regular = os.stat(world.root / "mine.txt")
    monkeypatch.setattr(dirfd_module, "lstat", lambda dfd, name: regular)
    done: list[HostCallError] = []

    def attempt() -> None:
        try:
            alice.read_bytes("fifo")
        except HostCallError as exc:
            done.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive(), "opening a FIFO blocked"
    assert [e.kind for e in done] == ["not_a_file"]


def test_socket_is_refused(world: World, alice: FsBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(world.root)  # AF_UNIX paths are short: bind a relative name
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind("sock")
        sock.listen(1)
        for call in (lambda: alice.read_bytes("sock"), lambda: alice.stat("sock")):
            with pytest.raises(HostCallError, match="it is a socket") as info:
                call()
            assert info.value.kind == "not_a_file"


def test_device_is_refused(world: World, alice: FsBackend) -> None:
    try:
        os.mknod(world.root / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here: {exc}")
    with pytest.raises(HostCallError, match="character device") as info:
        alice.read_bytes("null")
    assert info.value.kind == "not_a_file"


def test_hard_link_to_an_outside_file_is_refused(world: World, alice: FsBackend, snapshot: Snapshot) -> None:
    os.link(world.outside / "secret.txt", world.root / "hl")
    os.link(world.bob / "secret.txt", world.root / "hl_bob")
    before = _outside_state(world, snapshot)
    d = Dispatch(alice)
    for path in ("hl", "hl_bob"):
        for op, args in [
            (Op.READ, [path]),
            (Op.READ_BYTES, [path]),
            (Op.STAT, [path]),
            (Op.APPEND, [path, "pwned"]),
            (Op.WRITE, [path, "pwned"]),
        ]:
            with pytest.raises(HostCallError, match="more than one hard link") as info:
                d.call(op, args)
            assert info.value.kind == "not_a_file"
    assert _outside_state(world, snapshot) == before
    alice.delete("hl")  # removes alice's name only
    assert (world.outside / "secret.txt").read_bytes() == b"OUTSIDE SECRET"
    assert _outside_state(world, snapshot)[1] == before[1]


def test_temp_files_are_swept_at_start_and_hidden(tmp_path: Path) -> None:
    root = tmp_path / "files"
    (root / "d").mkdir(parents=True)
    (root / ".peerbox-tmp-deadbeef").write_bytes(b"torn")
    (root / "d" / ".peerbox-tmp-0123").write_bytes(b"torn too")
    (root / "d" / "keep.txt").write_bytes(b"keep")
    with FsBackend(root) as backend:
        assert sorted(os.listdir(root)) == ["d"]
        assert sorted(os.listdir(root / "d")) == ["keep.txt"]
        assert backend.usage() == (4, 2)
        # one appearing later (another writer mid-write) is invisible and unnamable
        (root / "d" / ".peerbox-tmp-live").write_bytes(b"in flight")
        (root / ".peerbox-tmp-dir").mkdir()
        assert backend.list_dir("d") == ["keep.txt"]
        assert backend.list_dir("") == ["d"]
        for path in ("d/.peerbox-tmp-live", ".peerbox-tmp-dir"):
            with pytest.raises(HostCallError) as info:
                backend.read_bytes(path)
            assert info.value.kind == "invalid_path"
            assert backend.exists(path.replace(".peerbox-tmp-", "x")) is False


def test_names_a_script_could_not_use_are_hidden(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    for name in ("ok.txt", "bad\nname", "cafe\u0301", "esc\x1b[31m", "x" * 10):
        (root / name).write_bytes(b"")
    os.close(os.open(os.fsencode(root) + b"/undecodable-\xff", os.O_CREAT | os.O_WRONLY, 0o600))
    with FsBackend(root) as backend:
        assert backend.list_dir("") == ["ok.txt", "x" * 10]
        assert backend.usage() == (0, 6)


def test_usage_is_counted_at_open_without_following_links(world: World) -> None:
    (world.root / "d" / "a").write_bytes(b"12345")
    with FsBackend(world.root) as backend:
        # mine.txt (4) + d/a (5); entries: mine.txt, 5 links, d, d/bobdir, d/a
        assert backend.usage() == (9, 9)


def test_root_is_created_0700_and_closed_backend_refuses(tmp_path: Path) -> None:
    root = tmp_path / "new" / "files"
    backend = FsBackend(root, Quotas())
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    backend.write_bytes("f", b"x")
    assert stat.S_IMODE(os.stat(root / "f").st_mode) == 0o600
    backend.mkdir("sub")
    assert stat.S_IMODE(os.stat(root / "sub").st_mode) == 0o700
    backend.close()
    backend.close()
    with pytest.raises(HostCallError) as info:
        backend.read_bytes("f")
    assert info.value.kind == "io_error"


def test_concurrent_readers_and_writers_on_one_backend(tmp_path: Path) -> None:
    with FsBackend(tmp_path / "files") as backend:
        backend.mkdir("d")
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                for j in range(20):
                    backend.write_bytes(f"d/f{i}", b"x" * j)
                    assert backend.read_bytes(f"d/f{i}") == b"x" * j
                    assert f"f{i}" in backend.list_dir("d")
                    assert backend.list_dir("") == ["d"]
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert backend.usage() == (4 * 19, 5)
