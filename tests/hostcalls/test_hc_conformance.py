"""One conformance suite for every storage backend: same operations, same results.

``SCRIPT`` is a sequence of host calls with the exact result each must give
(value, or error kind *and* message); it runs once per backend through
:class:`Dispatch`. Then random operation sequences run against both backends
side by side and must agree step by step, and a peer's storage must never
show another peer's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from peerbox.hostcalls import Backend, Dispatch, HostCallError, Op, Quotas, open_backend

MakeBackend = Callable[..., Backend]
T = "<now>"  # stands for a `modified` time, checked to be "now"


def err(kind: str, message: str) -> tuple[str, str, str]:
    return ("err", kind, message)


SCRIPT: list[tuple[Op, list[Any], Any]] = [
    (Op.LIST, [""], []),
    (Op.STAT, [""], {"size": 0, "is_dir": True, "modified": T}),
    (Op.EXISTS, [""], True),
    (Op.READ, ["a.txt"], err("not_found", "no such file: 'a.txt'")),
    (Op.STAT, ["a.txt"], err("not_found", "no such file or directory: 'a.txt'")),
    (Op.DELETE, ["a.txt"], err("not_found", "no such file or directory: 'a.txt'")),
    (Op.LIST, ["a"], err("not_found", "no such directory: 'a'")),
    (Op.WRITE, ["a/b.txt", "x"], err("not_found", "no such directory: 'a'")),
    (Op.APPEND, ["a/b/c.txt", "x"], err("not_found", "no such directory: 'a'")),
    (Op.EXISTS, ["a/b.txt"], False),
    (Op.WRITE, ["a.txt", "hello"], None),
    (Op.READ, ["a.txt"], "hello"),
    (Op.STAT, ["a.txt"], {"size": 5, "is_dir": False, "modified": T}),
    (Op.APPEND, ["a.txt", ", world"], None),
    (Op.READ, ["a.txt"], "hello, world"),
    (Op.APPEND, ["new.txt", "created"], None),
    (Op.READ, ["new.txt"], "created"),
    (Op.WRITE, ["a.txt", ""], None),
    (Op.READ, ["a.txt"], ""),
    (Op.STAT, ["a.txt"], {"size": 0, "is_dir": False, "modified": T}),
    (Op.WRITE, ["a.txt/x", "x"], err("not_a_directory", "not a directory: 'a.txt'")),
    (Op.READ, ["a.txt/x"], err("not_a_directory", "not a directory: 'a.txt'")),
    (Op.LIST, ["a.txt"], err("not_a_directory", "not a directory: 'a.txt'")),
    (Op.MKDIR, ["a.txt"], err("not_a_directory", "not a directory: 'a.txt'")),
    (Op.MKDIR, ["a.txt/sub"], err("not_a_directory", "not a directory: 'a.txt'")),
    (Op.STAT, ["a.txt/x"], err("not_a_directory", "not a directory: 'a.txt'")),
    (Op.DELETE, ["a.txt/x"], err("not_a_directory", "not a directory: 'a.txt'")),
    (Op.EXISTS, ["a.txt/x"], False),
    (Op.MKDIR, ["d/e/f"], None),
    (Op.MKDIR, ["d/e/f"], None),
    (Op.MKDIR, ["d"], None),
    (Op.MKDIR, [""], None),
    (Op.LIST, [""], ["a.txt", "d", "new.txt"]),
    (Op.LIST, ["d"], ["e"]),
    (Op.LIST, ["d/e/f"], []),
    (Op.STAT, ["d/e"], {"size": 0, "is_dir": True, "modified": T}),
    (Op.READ, ["d"], err("is_a_directory", "is a directory: 'd'")),
    (Op.READ, [""], err("is_a_directory", "is a directory: ''")),
    (Op.WRITE, ["d/e", "x"], err("is_a_directory", "is a directory: 'd/e'")),
    (Op.WRITE, ["", "x"], err("is_a_directory", "is a directory: ''")),
    (Op.APPEND, ["d", "x"], err("is_a_directory", "is a directory: 'd'")),
    (Op.READ_BYTES, ["d/e/f"], err("is_a_directory", "is a directory: 'd/e/f'")),
    (Op.WRITE_BYTES, ["d/e/f/blob", b"\x00\x01\xff"], None),
    (Op.READ_BYTES, ["d/e/f/blob"], b"\x00\x01\xff"),
    (Op.READ, ["d/e/f/blob"], err("invalid_argument", "file is not valid UTF-8: d/e/f/blob")),
    (Op.DELETE, ["d/e"], err("invalid_argument", "cannot delete 'd/e': the directory is not empty")),
    (Op.DELETE, [""], err("invalid_path", "cannot delete the peer root")),
    (Op.DELETE, ["d/e/f/blob"], None),
    (Op.DELETE, ["d/e/f"], None),
    (Op.EXISTS, ["d/e/f"], False),
    (Op.EXISTS, ["d/e"], True),
    (Op.LIST, ["d/e"], []),
    (Op.WRITE, ["d/e/f/x", "x"], err("not_found", "no such directory: 'd/e/f'")),
    (Op.WRITE, ["ünï\u0301code.txt", "ok"], None),
    (Op.READ, ["ünḯcode.txt"], "ok"),
    (Op.LIST, [""], ["a.txt", "d", "new.txt", "ünḯcode.txt"]),
    (Op.WRITE, ["sp ace & 'quote'.txt", "q"], None),
    (Op.READ, ["sp ace & 'quote'.txt"], "q"),
    (Op.READ, ["../a.txt"], err("invalid_path", "path escapes the peer root: ../a.txt")),
    (
        Op.READ,
        ["/a.txt"],
        err("invalid_path", "path escapes the peer root: /a.txt (absolute paths are not allowed)"),
    ),
    (Op.READ, ["d//e"], err("invalid_path", "invalid path 'd//e': empty component")),
    (Op.LIST, ["d/"], err("invalid_path", "invalid path 'd/': empty component")),
    (Op.DELETE, ["a.txt"], None),
    (Op.DELETE, ["new.txt"], None),
    (Op.DELETE, ["ünḯcode.txt"], None),
    (Op.DELETE, ["sp ace & 'quote'.txt"], None),
    (Op.DELETE, ["d/e"], None),
    (Op.DELETE, ["d"], None),
    (Op.LIST, [""], []),
]


def _run(dispatch: Dispatch, op: Op, args: list[Any]) -> Any:
    try:
        return dispatch.call(op, args)
    except HostCallError as exc:
        return err(exc.kind, exc.message)


def test_conformance_script(backend: Backend) -> None:
    t0 = int(time.time())
    dispatch = Dispatch(backend)
    for i, (op, args, expected) in enumerate(SCRIPT):
        got = _run(dispatch, op, args)
        if isinstance(expected, dict) and isinstance(got, dict) and expected.get("modified") == T:
            assert t0 - 1 <= got["modified"] <= int(time.time()) + 1, (i, got)
            got = {**got, "modified": T}
        assert got == expected, f"step {i}: {op.name} {args!r}"
    assert backend.usage() == (0, 0)


@pytest.mark.slow
def test_directory_modified_time_follows_its_entries(backend: Backend) -> None:
    backend.mkdir("d")
    before = backend.stat("d").modified
    time.sleep(1.05)
    backend.write_bytes("d/f", b"x")
    after = backend.stat("d").modified
    assert after > before
    assert backend.stat("d/f").modified == after


# -- differential: both backends side by side ----------------------------------------------

NAMES = ["a", "b", "é", "a.txt"]


def _random_call(rng: random.Random) -> tuple[Op, list[Any]]:
    depth = rng.choice([0, 1, 1, 2, 2, 3])
    path = "/".join(rng.choice(NAMES) for _ in range(depth))
    op = rng.choice(list(Op))
    if rng.random() < 0.03:
        path = rng.choice(["../x", "a//b", "/a", "a/./b", "\x00"])
    text = rng.choice(["", "x", "hello", "é" * 3, "y" * 40])
    if op in (Op.WRITE, Op.APPEND):
        return op, [path, text]
    if op == Op.WRITE_BYTES:
        return op, [path, bytes(rng.randrange(256) for _ in range(rng.randrange(5)))]
    return op, [path]


def _strip(result: Any) -> Any:
    if isinstance(result, dict):
        return {k: v for k, v in result.items() if k != "modified"}
    return result


@pytest.mark.parametrize("seed", range(6))
def test_backends_agree_on_random_sequences(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    # odd seeds run with small quotas, so quota refusals are compared too
    quotas = Quotas(max_total_bytes=60, max_files=6, max_file_size=30) if seed % 2 else None
    fs = open_backend("fs", tmp_path / "fs", quotas)
    db = open_backend("sqlite", tmp_path / "db.sqlite", quotas)
    try:
        d_fs, d_db = Dispatch(fs), Dispatch(db)
        for step in range(400):
            op, args = _random_call(rng)
            got_fs, got_db = _strip(_run(d_fs, op, args)), _strip(_run(d_db, op, args))
            assert got_fs == got_db, f"seed {seed} step {step}: {op.name} {args!r}"
            assert fs.usage() == db.usage(), f"seed {seed} step {step}"
        fs.close()
        db.close()
        fs = open_backend("fs", tmp_path / "fs", quotas)
        db = open_backend("sqlite", tmp_path / "db.sqlite", quotas)
        assert fs.usage() == db.usage()
    finally:
        fs.close()
        db.close()


# -- isolation between peers -----------------------------------------------------------------


def test_a_peer_cannot_reach_another_peers_files(make_backend: MakeBackend, tmp_path: Path) -> None:
    alice, bob = make_backend(peer="alice"), make_backend(peer="bob")
    bob.mkdir("private")
    bob.write_bytes("private/secret.txt", b"bob only")
    d = Dispatch(alice)
    assert d.call(Op.LIST, [""]) == []
    bob_root = str(tmp_path / "peers" / "bob")
    attempts = [
        "private/secret.txt",
        "../bob/files/private/secret.txt",
        "../../bob/files/private/secret.txt",
        "../bob/store.sqlite",
        "../../peers/bob/files/private/secret.txt",
        bob_root + "/files/private/secret.txt",
        bob_root + "/store.sqlite",
        "..",
        "private/../../bob",
    ]
    for path in attempts:
        for op, args in [
            (Op.READ, [path]),
            (Op.LIST, [path]),
            (Op.STAT, [path]),
            (Op.DELETE, [path]),
            (Op.WRITE, [path, "x"]),
        ]:
            with pytest.raises(HostCallError) as info:
                d.call(op, args)
            assert info.value.kind in ("not_found", "invalid_path"), (op, path, info.value)
            assert "bob only" not in info.value.message
        try:
            assert d.call(Op.EXISTS, [path]) is False
        except HostCallError as exc:
            assert exc.kind == "invalid_path"
    assert bob.read_bytes("private/secret.txt") == b"bob only"
    assert bob.usage() == (8, 2) and alice.usage() == (0, 0)
