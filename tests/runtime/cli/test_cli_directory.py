"""`peerbox peers show`, `peers list` and `directory add NAME URL|remove`: identity and the directory."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from peerbox import Directory, PeerStore

from ..conftest import CliResult

Cli = Callable[..., CliResult]


def test_peers_show_prints_the_public_facts_and_did_prints_only_the_did(tmp_path: Path, cli: Cli) -> None:
    bob = PeerStore(tmp_path).init("bob", "sqlite")
    root = ("--root", str(tmp_path))
    r = cli("peers", "show", "bob", "--did", *root)
    assert (r.code, r.out) == (0, bob.did + "\n")
    r = cli("peers", "show", "bob", *root)
    assert r.code == 0
    assert f"did:        {bob.did}" in r.out and bob.public_key.hex() in r.out
    assert f"storage:    sqlite ({bob.paths.storage})" in r.out and "not in peers.toml" in r.out
    assert "peer.key" not in r.out  # never the secret key (nor where it is)
    cli("directory", "add", "bob", "http://127.0.0.1:7700", *root)
    doc = json.loads(cli("peers", "show", "bob", "--json", *root).out)
    assert doc["did"] == bob.did and doc["public_key"] == bob.public_key.hex()
    assert doc["directory"] == {"did": bob.did, "url": "http://127.0.0.1:7700"} and doc["modules"] == []
    r = cli("peers", "show", "nobody", *root)
    assert r.code == 2 and "nobody" in r.err and "Traceback" not in r.err


def test_peers_list_is_the_bare_peers_command(tmp_path: Path, cli: Cli) -> None:
    PeerStore(tmp_path).init("alice")
    bare = cli("peers", "--root", str(tmp_path))
    listed = cli("peers", "list", "--root", str(tmp_path))
    assert bare.code == listed.code == 0 and bare.out == listed.out and "alice" in bare.out


def test_directory_add_name_url_finds_a_local_peer_s_did(tmp_path: Path, cli: Cli) -> None:
    bob = PeerStore(tmp_path).init("bob")
    r = cli("directory", "add", "bob", "http://127.0.0.1:7700", "--root", str(tmp_path))
    assert r.code == 0, r.err
    entry = Directory(tmp_path).get("bob")
    assert (entry.did, entry.url) == (bob.did, "http://127.0.0.1:7700")
    r = cli("peers", "add", "bob", "http://127.0.0.1:7701", "--replace", "--root", str(tmp_path))
    assert r.code == 0 and Directory(tmp_path).get("bob").url == "http://127.0.0.1:7701"


def test_directory_add_name_url_of_a_remote_peer_says_the_did_is_missing(tmp_path: Path, cli: Cli) -> None:
    PeerStore(tmp_path).init("alice")
    r = cli("directory", "add", "eve", "http://127.0.0.1:7700", "--root", str(tmp_path))
    assert r.code == 2
    assert "'eve' is not a peer under" in r.err and "peerbox directory add eve DID http://127.0.0.1:7700" in r.err
    r = cli("directory", "add", "alice", "--root", str(tmp_path))
    assert r.code == 2 and "give the URL" in r.err
    assert not (tmp_path / "peers.toml").exists()


def test_directory_remove_then_list(tmp_path: Path, cli: Cli) -> None:
    did = PeerStore(tmp_path / "elsewhere").init("carol").did
    root = ("--root", str(tmp_path))
    assert cli("directory", "add", "carol", did, *root).code == 0
    r = cli("directory", "remove", "carol", *root)
    assert r.code == 0 and f"removed carol = {did}" in r.err
    assert cli("directory", "list", *root).out == ""
    r = cli("directory", "remove", "carol", *root)
    assert r.code == 2 and "no peer named 'carol'" in r.err
