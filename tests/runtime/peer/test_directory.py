"""The directory (peers.toml): entries by name or did, validation, a corrupt file
reported and never overwritten, concurrent adds, and ``peerbox directory``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from peerbox.peer._directory import (
    CorruptDirectory,
    Directory,
    EntryExists,
    InvalidEntry,
    UnknownPeer,
    validate_url,
)
from peerbox.wire import KeyPair

from ..conftest import CliResult

Cli = Callable[..., CliResult]


def test_directory_round_trip(tmp_path: Path) -> None:
    d = Directory(tmp_path)
    assert d.list() == []
    bob, carol = KeyPair.generate(), KeyPair.generate()
    e = d.add("bob", bob.did, "http://127.0.0.1:7700/")
    assert e.url == "http://127.0.0.1:7700" and e.public_key == bob.public_key
    d.add("carol", carol.did, "https://[::1]:8443")
    again = Directory(tmp_path)
    assert [x.name for x in again.list()] == ["bob", "carol"]
    assert again.resolve("bob") == e
    assert again.resolve(bob.did) == e
    assert again.resolve(carol.did).url == "https://[::1]:8443"
    assert (tmp_path / "peers.toml").read_text().startswith("# peerbox directory")
    d.add("bob", bob.did, "http://127.0.0.1:7700")  # the same entry again is fine
    with pytest.raises(EntryExists, match="--replace"):
        d.add("bob", bob.did, "http://127.0.0.1:7701")
    assert d.add("bob", bob.did, "http://127.0.0.1:7701", replace=True).url == "http://127.0.0.1:7701"
    assert d.remove("carol").name == "carol"
    assert [x.name for x in d.list()] == ["bob"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_entry_without_url_round_trips(tmp_path: Path) -> None:
    d = Directory(tmp_path)
    carol = KeyPair.generate()
    e = d.add("carol", carol.did)
    assert e.url is None and e.public_key == carol.public_key
    text = (tmp_path / "peers.toml").read_text()
    assert f'[peers.carol]\ndid = "{carol.did}"\n' in text and "url" not in text.split("[peers.carol]")[1]
    again = Directory(tmp_path)
    assert again.resolve("carol") == e and again.resolve(carol.did) == e
    with pytest.raises(EntryExists, match=r"\(did:key:\w+\); use --replace"):
        d.add("carol", carol.did, "http://127.0.0.1:7702")
    assert d.add("carol", carol.did, "http://127.0.0.1:7702", replace=True).url == "http://127.0.0.1:7702"
    assert d.add("carol", carol.did, replace=True).url is None


def test_old_files_with_url_still_parse(tmp_path: Path) -> None:
    bob, carol = KeyPair.generate(), KeyPair.generate()
    (tmp_path / "peers.toml").write_text(
        "# peerbox directory: where peers are reachable (peerbox directory add NAME DID URL)\n"
        f'\n[peers.bob]\ndid = "{bob.did}"\nurl = "http://127.0.0.1:7700"\n'
        f'\n[peers.carol]\ndid = "{carol.did}"\n')
    entries = Directory(tmp_path).list()
    assert [(e.name, e.url) for e in entries] == [("bob", "http://127.0.0.1:7700"), ("carol", None)]


def test_an_entry_with_unknown_keys_or_no_did_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "peers.toml"
    did = KeyPair.generate().did
    for text in (f'[peers.bob]\ndid = "{did}"\nport = 7\n', '[peers.bob]\nurl = "http://h:1"\n'):
        path.write_text(text)
        with pytest.raises(CorruptDirectory, match="must have 'did' and may have 'url', nothing else"):
            Directory(tmp_path).list()


def test_entries_is_the_same_tuple_until_the_file_changes(tmp_path: Path) -> None:
    d = Directory(tmp_path)
    assert d.entries() == ()
    d.add("bob", KeyPair.generate().did)
    first = d.entries()
    assert d.entries() is first
    d.add("carol", KeyPair.generate().did)
    assert d.entries() is not first and [e.name for e in d.entries()] == ["bob", "carol"]


def test_directory_unknown_and_invalid(tmp_path: Path) -> None:
    d = Directory(tmp_path)
    did = KeyPair.generate().did
    with pytest.raises(UnknownPeer, match="directory add"):
        d.resolve("nobody")
    with pytest.raises(UnknownPeer):
        d.resolve(did)
    with pytest.raises(InvalidEntry, match="invalid did"):
        d.add("bob", "did:key:zNOPE", "http://h:1")
    with pytest.raises(InvalidEntry):
        d.resolve("did:web:example.com")
    with pytest.raises(InvalidEntry, match="peer name"):
        d.add("Bob!", did, "http://h:1")
    for bad in ("ftp://h:1", "http://", "http://h:1/path", "http://u:p@h:1", "http://h:1?q=1",
                "http://h:99999", 'http://h"x:1', "http://h :1", "http://h:0"):
        with pytest.raises(InvalidEntry):
            validate_url(bad)
    assert validate_url("https://example.com") == "https://example.com"
    assert not (tmp_path / "peers.toml").exists()


def test_directory_corrupt_file_is_reported_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "peers.toml"
    path.write_text("[peers.bob]\ndid = 3\n")
    d = Directory(tmp_path)
    with pytest.raises(CorruptDirectory, match=r"peers\.bob"):
        d.list()
    with pytest.raises(CorruptDirectory):
        d.add("carol", KeyPair.generate().did, "http://h:1")
    assert path.read_text() == "[peers.bob]\ndid = 3\n"
    path.write_text("[peers\n")
    with pytest.raises(CorruptDirectory, match="peers.toml"):
        d.list()


def test_directory_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    keys = [KeyPair.generate() for _ in range(8)]

    def add(i: int) -> None:
        Directory(tmp_path).add(f"p{i}", keys[i].did, f"http://127.0.0.1:{7000 + i}")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(Directory(tmp_path).list()) == 8


def test_cli_directory_add_and_list(tmp_path: Path, cli: Cli) -> None:
    did = KeyPair.generate().did
    root = str(tmp_path)
    code, out, _ = cli("directory", "add", "bob", did, "http://127.0.0.1:7700", "--root", root)
    assert code == 0
    code, out, _ = cli("directory", "list", "--root", root)
    assert code == 0 and "bob" in out and did in out and "http://127.0.0.1:7700" in out
    code, _, err = cli("directory", "add", "bob", did, "ftp://x", "--root", root)
    assert code == 2 and "scheme" in err
    code, out, _ = cli("directory", "list", "--root", root, "--json")
    assert code == 0 and '"url": "http://127.0.0.1:7700"' in out
