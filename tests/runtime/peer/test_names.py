"""Who a did is, here: local peers first, then the root's directory (``peers.toml``).

A worker names each caller with :class:`PeerNames`: the name is ``caller.name``
in a script and what ``who = "carol"`` matches in a policy. These tests use a
real root (real peers, a real ``peers.toml``) and keys generated elsewhere,
as a caller on another machine has.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from peerbox.peer import Directory, Known, PeerNames, PeerStore
from peerbox.wire import KeyPair


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> PeerStore:
    store = PeerStore(tmp_path / "root")
    store.init("bob")
    return store


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def names(store: PeerStore, clock: Clock) -> PeerNames:
    return PeerNames(store, clock=clock)


def test_local_peer_name(store: PeerStore, names: PeerNames) -> None:
    bob = store.get("bob")
    assert names.of_did(bob.did) == Known(bob.did, "bob", "local")
    res = names.resolve("bob")
    assert (res.did, res.source, res.note) == (bob.did, "local", None)


def test_directory_name_for_a_remote_did(store: PeerStore, names: PeerNames) -> None:
    carol = KeyPair.generate()  # her key lives on her machine
    Directory(store.root).add("carol", carol.did)
    assert names.of_did(carol.did) == Known(carol.did, "carol", "directory")
    res = names.resolve("carol")
    assert (res.did, res.source, res.note) == (carol.did, "directory", None)


def test_a_local_peer_listed_in_the_directory_too(store: PeerStore, names: PeerNames) -> None:
    bob = store.get("bob")
    Directory(store.root).add("bob", bob.did, "http://127.0.0.1:7700")
    assert names.of_did(bob.did).source == "local"
    assert names.resolve("bob").source == "local+directory"


def test_local_wins_over_a_conflicting_directory_entry(store: PeerStore, names: PeerNames) -> None:
    bob = store.get("bob")
    impostor = KeyPair.generate()
    Directory(store.root).add("bob", impostor.did)
    assert names.of_did(bob.did).name == "bob"
    assert names.of_did(impostor.did) == Known(impostor.did, None, "none")
    res = names.resolve("bob")
    assert (res.did, res.source) == (bob.did, "conflict")
    assert res.note == (f'"bob" is the local peer bob ({bob.did}) and peers.toml names {impostor.did} '
                        "for it: only the local peer matches")


def test_a_conflicting_entry_does_not_hide_the_dids_next_name(store: PeerStore, names: PeerNames) -> None:
    other = KeyPair.generate()
    d = Directory(store.root)
    d.add("bob", other.did)
    d.add("zed", other.did)
    assert names.of_did(other.did) == Known(other.did, "zed", "directory")


def test_first_directory_name_wins_and_others_are_shadowed(store: PeerStore, names: PeerNames) -> None:
    carol = KeyPair.generate()
    d = Directory(store.root)
    d.add("carol2", carol.did)
    d.add("carol", carol.did)
    assert names.of_did(carol.did).name == "carol"  # by name: "carol" < "carol2"
    assert names.resolve("carol").source == "directory"
    res = names.resolve("carol2")
    assert (res.did, res.source) == (carol.did, "shadowed")
    assert res.note == ('"carol2" is peers.toml\'s second name for a did known as "carol": callers with that '
                        'did are named "carol", so a rule naming "carol2" never matches')


def test_a_directory_alias_of_a_local_peer_is_shadowed(store: PeerStore, names: PeerNames) -> None:
    Directory(store.root).add("robert", store.get("bob").did)
    res = names.resolve("robert")
    assert res.source == "shadowed" and 'known as "bob"' in (res.note or "")


def test_unknown_did_has_no_name(names: PeerNames) -> None:
    did = KeyPair.generate().did
    assert names.of_did(did) == Known(did, None, "none")
    res = names.resolve("dave")
    assert (res.did, res.source) == (None, "none")
    assert res.note == ('"dave" names no local peer and no peers.toml entry: the rule matches no caller '
                        "(peerbox directory add dave DID)")


def test_a_new_directory_entry_is_seen_at_once(store: PeerStore, names: PeerNames) -> None:
    carol = KeyPair.generate()
    assert names.of_did(carol.did).name is None
    Directory(store.root).add("carol", carol.did)  # no time passes: a miss re-reads
    assert names.of_did(carol.did).name == "carol"
    alice = store.init("alice")
    assert names.of_did(alice.did) == Known(alice.did, "alice", "local")


def test_a_renamed_entry_is_seen_after_the_ttl(store: PeerStore, names: PeerNames, clock: Clock) -> None:
    carol = KeyPair.generate()
    d = Directory(store.root)
    d.add("carol", carol.did)
    assert names.of_did(carol.did).name == "carol"
    d.remove("carol")
    d.add("karol", carol.did)
    assert names.of_did(carol.did).name == "carol"  # a known did is served from the cache for up to ttl
    clock.now += 1.0
    assert names.of_did(carol.did).name == "karol"


def test_a_broken_peers_toml_falls_back_to_local_names(store: PeerStore, names: PeerNames, clock: Clock,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    carol = KeyPair.generate()
    Directory(store.root).add("carol", carol.did)
    assert names.of_did(carol.did).name == "carol"
    (store.root / "peers.toml").write_text("[peers\n")
    clock.now += 1.0
    with caplog.at_level(logging.WARNING, logger="peerbox.peer._names"):
        assert names.of_did(carol.did).name is None  # never an error: the request goes on, unnamed
        names.of_did(KeyPair.generate().did)
        names.of_did(KeyPair.generate().did)
    assert names.of_did(store.get("bob").did).name == "bob"
    assert names.resolve("carol").source == "none"
    warnings = [r for r in caplog.records if "ignoring the directory" in r.getMessage()]
    assert len(warnings) == 1 and "peers.toml" in warnings[0].getMessage()
