"""``PeerLogic.adopt``: a version another host of the same peer recorded, installed here.

Two roots hold bob (the same key), as two workers of one peer do: what one
records, the other adopts with the same installer statement, as its own
next version, and its history still checks out. A version the peer's key did
not seal, or whose source is not the one it names, is refused and changes
nothing; one adopted already, or older than the latest here, is skipped.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from peerbox.peer import LogicRefused, Peer, PeerLogic, PeerStore, Version, make_statement, sha256_hex
from peerbox.wire import KeyPair

NOW = 1_700_000_000
V1, V2 = 'fn hello() { "v1" }\n', 'fn hello() { "v2" }\n'


@pytest.fixture
def hosts(tmp_path: Path) -> tuple[PeerLogic, PeerLogic]:
    """bob's logic on two roots (the second a copy of the first, made before any version)."""
    bob = PeerStore(tmp_path / "a").init("bob")
    shutil.copytree(bob.paths.dir, tmp_path / "b" / "peers" / "bob")
    other: Peer = PeerStore(tmp_path / "b").get("bob")
    return PeerLogic(bob), PeerLogic(other)


def _live(logic: PeerLogic) -> str | None:
    path = logic.peer.paths.logic / "greet.rhai"
    return path.read_text() if path.exists() else None


def test_a_version_recorded_on_one_host_is_adopted_by_the_other(hosts: tuple[PeerLogic, PeerLogic]) -> None:
    a, b = hosts
    a.set("greet", V1, now=NOW)
    v2 = a.set("greet", V2, now=NOW + 10)
    adopted = b.adopt(v2, V2)  # b never saw version 1: it installs the latest
    assert adopted is not None and adopted.version == 1 and adopted.statement == v2.statement
    assert _live(b) == V2
    assert b.verify() == {"greet": []}
    assert b.adopt(v2, V2) is None  # again: already here
    assert a.adopt(v2, V2) is None  # on the host that recorded it: already here
    assert b.adopt(a.versions("greet")[0], V1) is None  # older than the latest here: no rollback
    assert _live(b) == V2 and len(b.versions("greet")) == 1


def test_a_version_another_key_sealed_is_refused(hosts: tuple[PeerLogic, PeerLogic]) -> None:
    a, b = hosts
    b.adopt(a.set("greet", V1, now=NOW), V1)
    mallory = KeyPair.generate()
    evil = 'fn hello() { "evil" }\n'
    statement = make_statement(mallory, peer=b.peer.public_key, module="greet", source=evil, now=NOW + 60)
    entry = Version(version=2, module="greet", sha256=sha256_hex(evil), size=len(evil), time=NOW + 60,
                    action="set", restores=None, by=mallory.did, statement=statement, cap=None, rule=None,
                    prev="", seal=b"")
    forged = dataclasses.replace(entry, seal=mallory.sign(entry.signed_bytes()))
    with pytest.raises(LogicRefused, match="the peer's seal does not match") as caught:
        b.adopt(forged, evil)
    assert caught.value.kind == "forged"
    assert _live(b) == V1 and len(b.versions("greet")) == 1


def test_a_genuine_version_with_another_source_is_refused(hosts: tuple[PeerLogic, PeerLogic]) -> None:
    a, b = hosts
    v1 = a.set("greet", V1, now=NOW)
    with pytest.raises(LogicRefused, match="not the one the entry names"):
        b.adopt(v1, V2)
    assert _live(b) is None and b.versions("greet") == []
