"""Peers: layout, key file mode, names, listing, both backends, policy placeholder, root choice, CLI."""

from __future__ import annotations

import argparse
import json
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import peerbox
import peerbox.peer._peers as peers_mod
from peerbox.cli._peers import add_parsers
from peerbox.errors import UsageError
from peerbox.wire import KeyPair, public_key_from_did
from peerbox.policy import PolicyError, Request
from peerbox.peer._peers import (
    CorruptPeer,
    InsecureKeyFile,
    InvalidPeerName,
    Peer,
    PeerError,
    PeerExists,
    PeerNotFound,
    PeerStore,
    RootNotFound,
    resolve_root,
    validate_peer_name,
)


@pytest.fixture
def store(tmp_path: Path) -> PeerStore:
    return PeerStore(tmp_path / "root")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# ------------------------------------------------------------------ layout


def test_init_fs_layout(store: PeerStore) -> None:
    peer = store.init("alice")
    d = store.root / "peers" / "alice"
    assert peer.paths.dir == d
    assert sorted(os.listdir(d)) == ["files", "logic", "peer.key", "peer.toml", "policy.toml"]
    assert peer.paths.storage == d / "files" and peer.paths.storage.is_dir()
    assert peer.paths.logic == d / "logic" and peer.paths.logic.is_dir()
    assert peer.backend == "fs" and peer.name == "alice"
    assert peer.did.startswith("did:key:z6Mk")
    assert public_key_from_did(peer.did) == peer.public_key
    assert mode(d) == 0o700
    assert peer.principal() == {"id": peer.did, "name": "alice"}


def test_init_sqlite_layout(store: PeerStore) -> None:
    peer = store.init("bob", backend="sqlite")
    d = peer.paths.dir
    assert peer.backend == "sqlite"
    assert peer.paths.storage == d / "storage.sqlite"
    assert sorted(os.listdir(d)) == ["logic", "peer.key", "peer.toml", "policy.toml"]
    assert store.get("bob").backend == "sqlite"


def test_unknown_backend_is_a_usage_error(store: PeerStore) -> None:
    with pytest.raises(UsageError, match="unknown storage backend 's3'"):
        store.init("alice", backend="s3")
    assert not (store.root / "peers" / "alice").exists()


def test_get_returns_what_init_made(store: PeerStore) -> None:
    made = store.init("alice")
    got = store.get("alice")
    assert got == made
    assert got.created.endswith("Z") and got.created[:2] == "20"


def test_key_file_is_private_hex_and_matches_the_did(store: PeerStore) -> None:
    peer = store.init("alice")
    key = peer.paths.key
    assert mode(key) == 0o600
    text = key.read_bytes()
    assert len(text) == 65 and text.endswith(b"\n")
    pair = peer.signing_key()
    assert pair.did == peer.did and pair.public_key == peer.public_key
    assert pair.secret_seed().hex().encode() == text[:-1]


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277])
def test_key_mode_is_0600_whatever_the_umask(store: PeerStore, umask: int) -> None:
    old = os.umask(umask)
    try:
        peer = store.init("alice")
    finally:
        os.umask(old)
    assert mode(peer.paths.key) == 0o600
    peer.signing_key()


def test_key_file_is_created_exclusively_with_mode_0600(
    store: PeerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mode is given to open(2) itself: the file never exists with wider permissions."""
    calls: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy(path: Any, flags: int, mode: int = 0o777, *a: Any, **k: Any) -> int:
        calls.append((os.fspath(path), flags, mode))
        return real_open(path, flags, mode, *a, **k)

    monkeypatch.setattr(os, "open", spy)
    store.init("alice")
    key_calls = [c for c in calls if c[0].endswith("peer.key")]
    assert len(key_calls) == 1
    _, flags, m = key_calls[0]
    assert flags & os.O_CREAT and flags & os.O_EXCL and flags & os.O_NOFOLLOW
    assert m == 0o600


def test_secret_never_in_reprs(store: PeerStore) -> None:
    peer = store.init("alice")
    secret = peer.signing_key().secret_seed()
    for text in (repr(peer), str(peer), repr(peer.signing_key()), repr(store), repr(peer.paths)):
        assert secret.hex() not in text and repr(secret) not in text


def test_init_with_a_given_key(store: PeerStore) -> None:
    pair = KeyPair.from_seed(bytes(32))
    peer = store.init("alice", key_pair=pair)
    assert peer.did == "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
    assert peer.signing_key() == pair


def test_failed_init_leaves_nothing(store: PeerStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real = peers_mod._write_new

    def failing(path: Path, data: bytes, *, mode: int) -> None:
        if path.name == "policy.toml":
            raise OSError(28, "No space left on device")
        real(path, data, mode=mode)

    monkeypatch.setattr(peers_mod, "_write_new", failing)
    with pytest.raises(PeerError, match="No space left on device"):
        store.init("alice")
    assert os.listdir(store.root / "peers") == []
    monkeypatch.setattr(peers_mod, "_write_new", real)
    store.init("alice")  # the name is free again


# ------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["a", "alice", "0", "a-b_c", "peer-01", "x" * 63, "9lives"])
def test_valid_names(store: PeerStore, name: str) -> None:
    assert validate_peer_name(name) == name
    assert store.init(name).name == name


@pytest.mark.parametrize(
    "name",
    ["", "Alice", "-a", "_a", ".", "..", ".hidden", "a/b", "a\\b", "a b", "a\n", "a\x00", "é",
     "x" * 64, "a.b", "peer:1", "ａ"],
)
def test_invalid_names_are_refused(store: PeerStore, name: str) -> None:
    with pytest.raises(InvalidPeerName, match="invalid peer name"):
        store.init(name)
    with pytest.raises(InvalidPeerName):
        store.get(name)
    assert not (store.root / "peers").exists() or os.listdir(store.root / "peers") == []


def test_non_string_name_is_refused() -> None:
    with pytest.raises(InvalidPeerName):
        validate_peer_name(3)


def test_existing_peer_is_refused(store: PeerStore) -> None:
    first = store.init("alice")
    with pytest.raises(PeerExists, match="already exists"):
        store.init("alice")
    assert store.get("alice").did == first.did  # untouched


def test_existing_file_of_that_name_is_refused(store: PeerStore) -> None:
    (store.root / "peers").mkdir(parents=True)
    (store.root / "peers" / "alice").write_text("not a peer")
    with pytest.raises(PeerExists):
        store.init("alice")


def test_concurrent_inits_of_one_name_make_one_peer(store: PeerStore) -> None:
    results: list[object] = []

    def go() -> None:
        try:
            results.append(PeerStore(store.root).init("alice"))
        except PeerExists as exc:
            results.append(exc)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = [r for r in results if isinstance(r, Peer)]
    assert len(made) == 1 and len(results) == 8
    assert store.get("alice").did == made[0].did


# ----------------------------------------------------------------- listing


def test_list_sorted_with_backends(store: PeerStore) -> None:
    store.init("carol")
    store.init("alice", backend="sqlite")
    store.init("bob")
    listed = store.list()
    assert [(p.name, p.backend) for p in listed] == [("alice", "sqlite"), ("bob", "fs"), ("carol", "fs")]
    assert len({p.did for p in listed}) == 3
    assert store.by_did(listed[1].did) == listed[1]
    assert store.by_did("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp") is None


def test_list_ignores_non_peer_entries_and_reports_broken_peers(store: PeerStore) -> None:
    store.init("alice")
    peers_dir = store.root / "peers"
    (peers_dir / ".tmp-x").mkdir()
    (peers_dir / "README.txt").write_text("hi")
    (peers_dir / "half").mkdir()  # an interrupted init: no peer.toml
    peers, errors = store.scan()
    assert [p.name for p in peers] == ["alice"]
    assert len(errors) == 1 and isinstance(errors[0], CorruptPeer) and errors[0].peer == "half"
    assert "incomplete" in str(errors[0])
    assert [p.name for p in store.list()] == ["alice"]


def test_missing_root(tmp_path: Path) -> None:
    store = PeerStore(tmp_path / "nowhere")
    with pytest.raises(RootNotFound, match="no peer root at"):
        store.list()
    with pytest.raises(RootNotFound):
        store.get("alice")
    assert not (tmp_path / "nowhere").exists()  # reading never creates


def test_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(RootNotFound):
        PeerStore(tmp_path / "f").init("alice")
    with pytest.raises(RootNotFound):
        PeerStore(tmp_path / "f").list()


def test_root_without_peers_dir_is_empty(tmp_path: Path) -> None:
    assert PeerStore(tmp_path).list() == []


def test_unknown_peer(store: PeerStore) -> None:
    store.init("alice")
    with pytest.raises(PeerNotFound, match="no peer named 'bob'"):
        store.get("bob")


def test_symlinked_peer_dir_is_not_followed(store: PeerStore, tmp_path: Path) -> None:
    store.init("alice")
    os.symlink(store.root / "peers" / "alice", store.root / "peers" / "mallory")
    with pytest.raises(CorruptPeer, match="not a directory"):
        store.get("mallory")


@pytest.mark.parametrize(
    "content, match",
    [
        ("format = 1\nbackend = 'fs'\n", "'did' is missing"),
        ("format = 1\ndid = 'did:key:zabc'\nbackend = 'fs'\n", "invalid did"),
        ("format = 2\n", "unsupported format"),
        ("format = true\n", "unsupported format"),
        ("format = 1\ndid = '{did}'\nbackend = 's3'\n", "'backend' must be one of"),
        ("format = 1\ndid = \n", r"peer\.toml:2:7: invalid TOML"),
    ],
)
def test_corrupt_metadata(store: PeerStore, content: str, match: str) -> None:
    peer = store.init("alice")
    peer.paths.meta.write_text(content.format(did=peer.did))
    with pytest.raises(CorruptPeer, match=match):
        store.get("alice")


# -------------------------------------------------------------- key checks


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o660, 0o602, 0o620])
def test_key_readable_by_others_is_refused(store: PeerStore, bad_mode: int) -> None:
    peer = store.init("alice")
    os.chmod(peer.paths.key, bad_mode)
    with pytest.raises(InsecureKeyFile, match=f"mode {bad_mode:04o}.*chmod 600") as info:
        peer.signing_key()
    assert str(peer.paths.key) in str(info.value)


def test_key_owner_only_modes_are_fine(store: PeerStore) -> None:
    peer = store.init("alice")
    os.chmod(peer.paths.key, 0o400)
    assert peer.signing_key().did == peer.did


def test_symlinked_key_is_refused(store: PeerStore, tmp_path: Path) -> None:
    peer = store.init("alice")
    target = tmp_path / "elsewhere.key"
    os.rename(peer.paths.key, target)
    os.symlink(target, peer.paths.key)
    with pytest.raises(CorruptPeer, match="symlink"):
        peer.signing_key()


@pytest.mark.parametrize("content", [b"", b"zz" * 32 + b"\n", b"AB" * 32, b"00" * 31 + b"\n", b"00" * 33])
def test_malformed_key_is_refused_without_showing_it(store: PeerStore, content: bytes) -> None:
    peer = store.init("alice")
    peer.paths.key.write_bytes(content)
    with pytest.raises(CorruptPeer, match="malformed") as info:
        peer.signing_key()
    if content:
        assert content.decode().strip() not in str(info.value)


def test_key_not_matching_the_did_is_refused(store: PeerStore) -> None:
    alice, bob = store.init("alice"), store.init("bob")
    os.replace(bob.paths.key, alice.paths.key)
    with pytest.raises(CorruptPeer, match="does not match the did"):
        alice.signing_key()


def test_missing_key(store: PeerStore) -> None:
    peer = store.init("alice")
    peer.paths.key.unlink()
    with pytest.raises(CorruptPeer, match="no key file"):
        peer.signing_key()


# ------------------------------------------------------------------ policy


def test_default_policy_lets_the_owner_do_everything(store: PeerStore) -> None:
    peer = store.init("alice")
    other = store.init("bob")
    text = peer.paths.policy.read_text()
    assert peer.did in text and "deny by default" in text.lower()
    policy = peer.load_policy()
    for action, resource in (("exec", None), ("fs.write", "a/b.txt"), ("module.import", "notes")):
        assert policy.decide(Request(peer.did, "alice", action, resource, peer.did, None))
        assert not policy.decide(Request(other.did, "bob", action, resource, peer.did, None))


def test_broken_policy_names_file_and_line(store: PeerStore) -> None:
    peer = store.init("alice")
    peer.paths.policy.write_text(
        'version = 1\n\n[[rule]]\nwho = "owner"\nactions = ["fs.exec"]\neffect = "allow"\n'
    )
    with pytest.raises(PolicyError) as info:
        peer.load_policy()
    assert info.value.line == 3 and "fs.exec" in str(info.value)
    assert str(info.value).startswith(str(peer.paths.policy))


# -------------------------------------------------------------------- root


def test_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PEERBOX_ROOT", raising=False)
    assert resolve_root() == tmp_path / "peerbox-data"
    monkeypatch.setenv("PEERBOX_ROOT", "")
    assert resolve_root() == tmp_path / "peerbox-data"
    monkeypatch.setenv("PEERBOX_ROOT", "from-env")
    assert resolve_root() == tmp_path / "from-env"
    assert resolve_root("explicit") == tmp_path / "explicit"
    assert resolve_root(tmp_path / "abs") == tmp_path / "abs"
    with pytest.raises(UsageError):
        resolve_root("")


def test_peerbox_root_env_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEERBOX_ROOT", str(tmp_path / "envroot"))
    PeerStore().init("alice")
    assert (tmp_path / "envroot" / "peers" / "alice" / "peer.toml").is_file()
    assert [p.name for p in PeerStore(tmp_path / "envroot").list()] == ["alice"]


def test_errors_are_usage_errors() -> None:
    for cls in (PeerError, InvalidPeerName, PeerExists, PeerNotFound, RootNotFound, CorruptPeer,
                InsecureKeyFile):
        assert issubclass(cls, UsageError) and cls.exit_code == 2
    assert issubclass(PolicyError, peerbox.Error) and PolicyError.exit_code == 2


# --------------------------------------------------------------------- CLI


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="peerbox")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = parse(*argv)
    code = args.handler(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_init_and_peers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path / "r")
    code, out, _ = run(capsys, "init", "alice", "--root", root)
    alice = PeerStore(root).get("alice")
    assert code == 0 and "created peer alice" in out and alice.did in out and "fs" in out
    code, out, _ = run(capsys, "init", "bob", "--root", root, "--backend", "sqlite", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["name"] == "bob" and doc["backend"] == "sqlite"
    assert doc["did"] == PeerStore(root).get("bob").did
    code, out, _ = run(capsys, "peers", "--root", root)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["NAME", "DID", "BACKEND"]
    assert lines[1].split() == ["alice", alice.did, "fs"]
    assert lines[2].split()[::2] == ["bob", "sqlite"]
    code, out, _ = run(capsys, "peers", "--root", root, "--json")
    assert [(p["name"], p["backend"]) for p in json.loads(out)] == [("alice", "fs"), ("bob", "sqlite")]
    for name in ("alice", "bob"):
        secret = PeerStore(root).get(name).signing_key().secret_seed().hex()
        assert secret not in out


def test_cli_peers_empty_and_broken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "peers", "--root", str(tmp_path))
    assert code == 0 and out == "" and "no peers" in err
    (tmp_path / "peers" / "half").mkdir(parents=True)
    code, out, err = run(capsys, "peers", "--root", str(tmp_path), "--json")
    assert code == 0 and json.loads(out) == [] and "warning:" in err and "incomplete" in err


def test_cli_errors_are_raised_for_the_boundary(tmp_path: Path) -> None:
    args = parse("init", "Bad Name", "--root", str(tmp_path))
    with pytest.raises(InvalidPeerName):
        args.handler(args)
    args = parse("peers", "--root", str(tmp_path / "missing"))
    with pytest.raises(RootNotFound):
        args.handler(args)


def test_cli_env_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PEERBOX_ROOT", str(tmp_path / "e"))
    assert run(capsys, "init", "alice")[0] == 0
    assert "alice" in run(capsys, "peers")[1]


def test_wired_cli_exit_codes(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """Through the real `peerbox` entry point."""
    res = cli("peers", "--root", str(tmp_path / "missing"))
    assert res.code == 2 and "no peer root" in res.err and "Traceback" not in res.err
    res = cli("init", "Alice", "--root", str(tmp_path))
    assert res.code == 2 and "invalid peer name" in res.err
    res = cli("init", "alice", "--root", str(tmp_path))
    assert res.code == 0 and "did:key:z6Mk" in res.out
    res = cli("init", "alice", "--root", str(tmp_path))
    assert res.code == 2 and "already exists" in res.err
    res = cli("peers", "--root", str(tmp_path), "--json")
    assert res.code == 0 and json.loads(res.out)[0]["name"] == "alice"
