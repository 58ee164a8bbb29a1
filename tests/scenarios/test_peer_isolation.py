"""Isolation: a script in one peer's context never reaches another peer's files.

Two peers live in one process (one ``peerbox.Contexts``). Scripts run as
alice try every path we could think of toward bob's files: ``..`` climbs,
absolute host paths, names that exist relative to the process's working
directory, and symlinks and hard links planted in alice's root from outside
(a file symlink, a directory symlink, a link leading out of the root). None
of them may read, list, write, stat, delete or even reveal the existence of
bob's files, and bob's files are unchanged afterwards (content, listing,
mtimes). Every combination of backends is covered.

The last test swaps a directory in alice's root for a symlink to an outside
directory, over and over, while a script keeps reading through it: no read
ever returns the outside content.
"""

# ruff: noqa: E501

from __future__ import annotations

import ctypes
import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox import Contexts, PeerContext

BACKENDS = ("fs", "sqlite")
SECRET = "BOB SECRET 7f3a"
NOTE = "bob's other note"

ATTEMPT = 'fn attempt(f) { let r = (); try { r = f.call(); } catch (e) { r = e.kind + ": " + e.message; } r }\n'


@pytest.fixture(params=[(a, b) for a in BACKENDS for b in BACKENDS], ids=lambda p: f"alice_{p[0]}-bob_{p[1]}")
def pair(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[PeerContext, PeerContext, Path]]:
    """(alice, bob, root) in one Contexts; bob holds secret.txt and sub/note.txt.

    The working directory is the peer root, so relative names such as
    ``peers/bob/files/secret.txt`` exist from the process's point of view.
    """
    alice_kind, bob_kind = request.param
    root = tmp_path / "root"
    with Contexts(root) as cs:
        cs.store.init("alice", alice_kind)
        cs.store.init("bob", bob_kind)
        alice, bob = cs.get("alice"), cs.get("bob")
        run(bob, 'fs::write("secret.txt", params.s); fs::mkdir("sub"); fs::write("sub/note.txt", params.n)', {"s": SECRET, "n": NOTE})
        monkeypatch.chdir(root)
        yield alice, bob, root


def run(ctx: PeerContext, source: str, params: dict[str, Any] | None = None, **limits: Any) -> Any:
    lim = peerbox.Limits(**limits) if limits else None
    return ctx.run(ctx.compile(source, "attack.rhai"), params, limits=lim).value


def snapshot(top: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``top`` (links not followed): kind, size, mtime_ns, content."""
    result: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in [".", *dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = os.path.relpath(path, top)
            if path.is_symlink():
                result[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                result[rel] = ("dir", st.st_mtime_ns, tuple(sorted(os.listdir(path))))
            else:
                result[rel] = ("file", st.st_size, st.st_mtime_ns, path.read_bytes())
    return result


def bob_view(bob: PeerContext) -> Any:
    """What bob's own scripts see of his files (content, listing, sizes, mtimes)."""
    return run(bob, '[fs::list(""), fs::list("sub"), fs::read("secret.txt"), fs::read("sub/note.txt"), fs::stat("secret.txt"), fs::stat("sub/note.txt"), fs::stat("sub")]')


def host_paths_of_bob(bob: PeerContext, root: Path) -> tuple[list[str], list[str]]:
    """Host paths that lead to bob's data: (absolute, relative to the cwd, which is the root)."""
    storage = bob.peer.paths.storage
    absolute = [str(storage), str(bob.peer.paths.dir), str(root)]
    relative = [os.path.relpath(storage, root), "peers/bob", "peers"]
    if bob.peer.backend == "fs":
        absolute += [str(storage / "secret.txt"), str(storage / "sub")]
        relative += [os.path.relpath(storage / "secret.txt", root)]
    return absolute, relative


def plant_links(alice: PeerContext, bob: PeerContext, outside: Path) -> list[str]:
    """Symlinks and hard links inside alice's fs root, pointing at bob's data and outside.

    Returns the names planted.
    """
    files = alice.peer.paths.storage
    target = bob.peer.paths.storage
    bob_file = target / "secret.txt" if bob.peer.backend == "fs" else target  # sqlite: the database file
    os.symlink(bob_file, files / "flink")
    os.symlink(bob.peer.paths.dir, files / "dlink")
    os.symlink(target / "sub" if bob.peer.backend == "fs" else bob.peer.paths.dir, files / "sublink")
    os.symlink(outside, files / "outlink")
    os.symlink("../../bob", files / "rellink")  # relative: alice/files/../../bob is peers/bob
    os.symlink("/nonexistent-peerbox-target", files / "dangling")
    os.link(outside / "hard.txt", files / "hlink")
    names = ["flink", "dlink", "sublink", "outlink", "rellink", "dangling", "hlink"]
    if bob.peer.backend == "fs":
        os.link(target / "linked.txt", files / "bhlink")  # a hard link to one of bob's own files
        names.append("bhlink")
    return names


ESCAPES = [
    "../bob/files/secret.txt", "../../bob/files/secret.txt", "../../../peers/bob/files/secret.txt",
    "../bob/storage.sqlite", "../../bob/storage.sqlite", "../bob", "..", "x/../../bob/files/secret.txt",
]


def _probe_script(paths: list[str]) -> str:
    """A script trying every fs:: call on every path; returns [path, call, outcome] triples."""
    return ATTEMPT + r'''
let out = [];
for p in params.paths {
  out.push([p, "read", attempt(|| fs::read(p))]);
  out.push([p, "read_bytes", attempt(|| fs::read_bytes(p))]);
  out.push([p, "list", attempt(|| fs::list(p))]);
  out.push([p, "exists", attempt(|| fs::exists(p))]);
  out.push([p, "stat", attempt(|| fs::stat(p))]);
  out.push([p + "/secret.txt", "read", attempt(|| fs::read(p + "/secret.txt"))]);
  out.push([p + "/secret.txt", "exists", attempt(|| fs::exists(p + "/secret.txt"))]);
  out.push([p + "/secret.txt", "stat", attempt(|| fs::stat(p + "/secret.txt"))]);
  out.push([p + "/sub/note.txt", "exists", attempt(|| fs::exists(p + "/sub/note.txt"))]);
  out.push([p + "/files", "list", attempt(|| fs::list(p + "/files"))]);
  out.push([p + "/files/secret.txt", "read", attempt(|| fs::read(p + "/files/secret.txt"))]);
  out.push([p + "/files/secret.txt", "exists", attempt(|| fs::exists(p + "/files/secret.txt"))]);
}
out
'''


WRITE_SCRIPT = ATTEMPT + r'''
let out = [];
for p in params.paths {
  out.push([p, "write", attempt(|| fs::write(p, "pwned"))]);
  out.push([p, "append", attempt(|| fs::append(p, "pwned"))]);
  out.push([p, "write_bytes", attempt(|| fs::write_bytes(p, params.blob))]);
  out.push([p + "/secret.txt", "write", attempt(|| fs::write(p + "/secret.txt", "pwned"))]);
  out.push([p + "/secret.txt", "append", attempt(|| fs::append(p + "/secret.txt", "pwned"))]);
  out.push([p + "/sub/note.txt", "write", attempt(|| fs::write(p + "/sub/note.txt", "pwned"))]);
  out.push([p + "/files/secret.txt", "write", attempt(|| fs::write(p + "/files/secret.txt", "pwned"))]);
  out.push([p + "/new", "mkdir", attempt(|| fs::mkdir(p + "/new"))]);
  out.push([p + "/secret.txt", "delete", attempt(|| fs::delete(p + "/secret.txt"))]);
  out.push([p + "/sub/note.txt", "delete", attempt(|| fs::delete(p + "/sub/note.txt"))]);
  out.push([p + "/files/secret.txt", "delete", attempt(|| fs::delete(p + "/files/secret.txt"))]);
}
out
'''


def _leaks(outcomes: list[list[Any]], root: Path, own: frozenset[tuple[str, str]] = frozenset()) -> list[list[Any]]:
    """Outcomes that show anything of bob's (or the outside's): content, names, host paths.

    A refusal may quote the path the script wrote (that is no leak): it is
    cut out first, and host paths are looked for only in the answers to
    relative paths (an absolute one may be quoted shortened).
    """
    bad = []
    for path, call, outcome in outcomes:
        if (path, call) in own:
            continue
        text = repr(outcome).replace(path, "<path>")
        needles = [SECRET, NOTE, "OUTSIDE", "only-outside", "linked.txt"]
        if not path.startswith("/"):
            needles += [str(root), "storage.sqlite", "peer.toml"]
        if any(n in text for n in needles) or outcome is True or isinstance(outcome, (list, dict, bytes)):
            bad.append([path, call, outcome])
    return bad


REFUSED_KINDS = {"invalid_path", "not_found", "not_a_file", "not_a_directory", "is_a_directory"}


def _assert_refused(outcomes: list[list[Any]], own: frozenset[tuple[str, str]] = frozenset()) -> None:
    """Every outcome is a refusal ("kind: message"), or False for exists()."""
    for path, call, outcome in outcomes:
        if (path, call) in own:
            continue
        if call == "exists":
            assert outcome is False or str(outcome).startswith("invalid_path: "), (path, outcome)
        else:
            assert isinstance(outcome, str) and outcome.split(":")[0] in REFUSED_KINDS, (path, call, outcome)


def test_relative_and_absolute_paths_never_reach_another_peer(pair: tuple[PeerContext, PeerContext, Path]) -> None:
    alice, bob, root = pair
    run(alice, 'fs::write("mine.txt", "alice")')
    seen_before = bob_view(bob)
    before = snapshot(root / "peers" / "bob")
    absolute, relative = host_paths_of_bob(bob, root)
    paths = ESCAPES + absolute + relative
    outcomes = run(alice, _probe_script(paths), {"paths": paths})
    assert _leaks(outcomes, root) == []
    _assert_refused(outcomes)
    escapes = [o for o in outcomes if o[0] in ESCAPES and o[1] == "read"]
    assert all(o[2] == f"invalid_path: path escapes the peer root: {o[0]}" for o in escapes)
    assert all(o[2].endswith("(absolute paths are not allowed)") for o in outcomes if o[0].startswith("/"))
    # names that exist relative to the process's cwd mean nothing inside a peer's root
    assert all(o[2] is False or o[2].startswith("not_found: ") for o in outcomes if o[0] in relative)
    writes = run(alice, WRITE_SCRIPT, {"paths": ESCAPES + absolute, "blob": b"pwned"})
    assert all(str(w[2]).startswith("invalid_path: path escapes the peer root: ") for w in writes), writes
    assert run(alice, 'fs::list("")') == ["mine.txt"]
    # the same relative names, created by alice, are alice's own files
    rel = os.path.relpath(bob.peer.paths.dir, root)
    assert run(alice, 'fs::mkdir(params.d); fs::write(params.d + "/secret.txt", "mine"); fs::read(params.d + "/secret.txt")', {"d": rel}) == "mine"
    assert snapshot(root / "peers" / "bob") == before
    assert bob_view(bob) == seen_before


def test_existence_of_another_peers_files_is_not_revealed(pair: tuple[PeerContext, PeerContext, Path]) -> None:
    """The answers for bob's real files and for names bob does not have are the same."""
    alice, bob, root = pair
    prefixes = ["../bob/files", "../../bob/files", "../bob", str(bob.peer.paths.storage), os.path.relpath(bob.peer.paths.storage, root)]
    real = [f"{p}/secret.txt" for p in prefixes]
    fake = [f"{p}/absent.txt" for p in prefixes]
    source = ATTEMPT + 'params.paths.map(|p| [attempt(|| fs::exists(p)), attempt(|| fs::stat(p)), attempt(|| fs::read(p)), attempt(|| fs::delete(p)), attempt(|| fs::write(p, "x"))])'
    got_real = run(alice, source, {"paths": real})
    got_fake = run(alice, source, {"paths": fake})
    for r, f, rp, fp in zip(got_real, got_fake, real, fake):
        assert [str(x).replace(rp, "P") for x in r] == [str(x).replace(fp, "P") for x in f]


@pytest.mark.parametrize("bob_kind", BACKENDS)
def test_planted_symlinks_and_hard_links_are_never_followed(tmp_path: Path, bob_kind: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("OUTSIDE " + SECRET)
    (outside / "only-outside.txt").write_text("o")
    (outside / "hard.txt").write_text("OUTSIDE hard link")
    with Contexts(tmp_path / "root") as cs:
        cs.store.init("alice", "fs")
        cs.store.init("bob", bob_kind)
        alice, bob = cs.get("alice"), cs.get("bob")
        run(bob, 'fs::write("secret.txt", params.s); fs::mkdir("sub"); fs::write("sub/note.txt", params.n); fs::write("linked.txt", params.s)',
            {"s": SECRET, "n": NOTE})
        run(alice, 'fs::write("mine.txt", "alice")')
        links = plant_links(alice, bob, outside)
        seen_before = bob_view(bob)
        bob_before, outside_before = snapshot(bob.peer.paths.dir), snapshot(outside)

        via = links + ["dlink/files", "rellink/files", "dlink/files/sub", "sublink/note.txt", "outlink/only-outside.txt"]
        outcomes = run(alice, _probe_script(via), {"paths": via})
        # the link names themselves are alice's entries: exists() says so, nothing else works
        own = frozenset((link, "exists") for link in links)
        assert all(o[2] is True for o in outcomes if (o[0], o[1]) in own)
        assert _leaks(outcomes, tmp_path, own) == []
        _assert_refused(outcomes, own)
        reads = {o[0]: o[2] for o in outcomes if o[1] == "read"}
        assert reads["flink"] == "not_a_file: 'flink' is a symbolic link"
        assert reads["dlink/secret.txt"] == "not_a_file: 'dlink' is a symbolic link"
        assert reads["outlink/secret.txt"] == "not_a_file: 'outlink' is a symbolic link"
        assert reads["hlink"].startswith("not_a_file: 'hlink' has more than one hard link")
        assert run(alice, 'fs::list("")') == sorted(links + ["mine.txt"])

        writes = run(alice, WRITE_SCRIPT, {"paths": via, "blob": b"pwned"})
        _assert_refused(writes)
        assert _leaks(writes, tmp_path) == []

        # deleting a planted link removes the link, never what it points to
        gone = ["flink", "dlink", "outlink", "hlink"]
        assert run(alice, 'for n in params.gone { fs::delete(n); } fs::list("")', {"gone": gone}) == \
            sorted(set(links + ["mine.txt"]) - set(gone))
        assert snapshot(bob.peer.paths.dir) == bob_before
        assert snapshot(outside) == outside_before
        assert bob_view(bob) == seen_before


def test_peers_in_one_process_have_separate_storage(pair: tuple[PeerContext, PeerContext, Path]) -> None:
    """The same relative name is a different file in each context."""
    alice, bob, _ = pair
    prog_source = 'let had = fs::exists("secret.txt"); fs::write("shared-name.txt", target.name); [had, fs::read("shared-name.txt"), fs::list("")]'
    got_alice = run(alice, prog_source)
    got_bob = run(bob, prog_source)
    assert got_alice == [False, "alice", ["shared-name.txt"]]
    assert got_bob == [True, "bob", ["secret.txt", "shared-name.txt", "sub"]]
    assert run(alice, 'fs::read("shared-name.txt")') == "alice"
    # one compiled program, run in each context, lands in each one's storage
    prog = alice.compile('fs::append("log.txt", target.name + ";"); fs::read("log.txt")', "both.rhai")
    assert [alice.run(prog).value, bob.run(prog).value, alice.run(prog).value] == ["alice;", "bob;", "alice;alice;"]


# -- a symlink swapped in while a script reads ----------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchanger() -> Any:
    """``renameat2(..., RENAME_EXCHANGE)`` (atomic swap of two names), or None if unavailable."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def exchange(a: str, b: str) -> None:
        if fn(_AT_FDCWD, a.encode(), _AT_FDCWD, b.encode(), _RENAME_EXCHANGE) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))

    return exchange


SWAP_READER = r'''
let out = #{};
for i in 0..params.n {
  let r = "";
  try { r = "read:" + fs::read("d/f"); } catch (e) { r = e.kind; }
  if out.contains(r) { out[r] += 1; } else { out[r] = 1; }
  let l = "";
  try { l = "list:" + to_debug(fs::list("d")); } catch (e) { l = e.kind; }
  if out.contains(l) { out[l] += 1; } else { out[l] = 1; }
}
out
'''


def test_symlink_swapped_in_while_reading(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("OUTSIDE CONTENT")
    (outside / "only-outside").write_text("x")
    with Contexts(tmp_path / "root") as cs:
        cs.store.init("alice", "fs")
        alice = cs.get("alice")
        run(alice, 'fs::mkdir("d"); fs::write("d/f", "inside")')
        files = alice.peer.paths.storage
        d, other = str(files / "d"), str(files / "swap")
        os.symlink(outside, other)
        exchange = _exchanger()
        try:
            if exchange is not None:
                exchange(d, other)
                exchange(d, other)
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EINVAL):
                raise
            exchange = None

        def flip_by_renames() -> None:  # not atomic: "d" is briefly missing
            if os.path.islink(d):
                os.rename(d, other + ".l")
                os.rename(other, d)
                os.rename(other + ".l", other)
            else:
                os.rename(d, other + ".d")
                os.rename(other, d)
                os.rename(other + ".d", other)

        flips = 0
        stop = threading.Event()

        def flipper() -> None:
            nonlocal flips
            while not stop.is_set():
                if exchange is not None:
                    exchange(d, other)
                else:
                    flip_by_renames()
                flips += 1

        prog = alice.compile(SWAP_READER, "swap.rhai")
        totals: dict[str, int] = {}
        thread = threading.Thread(target=flipper, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        try:
            runs = 0
            while (flips < 1500 or runs < 2) and time.monotonic() < deadline:
                got = alice.run(prog, {"n": 1500}, limits=peerbox.Limits(host_calls=10_000)).value
                for key, count in got.items():
                    totals[key] = totals.get(key, 0) + count
                runs += 1
        finally:
            stop.set()
            thread.join(10)
        assert flips >= 1000, flips
        assert not [k for k in totals if "OUTSIDE" in k or "only-outside" in k], totals
        assert set(totals) <= {"read:inside", 'list:["f"]', "not_a_file", "not_found", "io_error"}, totals
        # the race was really exercised: both states were seen by the script
        assert totals.get("read:inside", 0) > 0 and totals.get("not_a_file", 0) > 0, totals
        assert (outside / "f").read_text() == "OUTSIDE CONTENT"
