"""Typed records end to end: `peerbox run --peer bob` scripts using db::, on every storage kind (fs,
sqlite, s3 on SeaweedFS); callers over the network confined to their own records."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox.peer import Directory, SchemaRefused, apply_schema, verify_schema_history

from .conftest import PEERBOX, Serving

SCRIPT = """\
let k = db::insert("inbox", #{from: caller.id, text: params.text, sent: params.sent, tags: ["a", "b"],
                             author: #{name: "Bob"}});
let bad = "";
try { db::insert("inbox", #{from: caller.id, text: params.text, sent: -1}); } catch (e) { bad = `${e.kind}: ${e.message}`; }
let page = db::query("inbox", #{where: #{sent: #{ge: 10}}, order_by: "-sent", limit: 2});
#{key: k, bad: bad, got: db::get("inbox", k), n: db::count("inbox"), newest: page.items.map(|r| r.sent),
  more: page.next != (), files: fs::list("")}
"""


def run(root: Path, script: Path, *args: str) -> dict[str, Any]:
    res = subprocess.run([*PEERBOX, "run", str(script), "--peer", "bob", "--root", str(root), "--json", *args],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(res.stdout)
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("backend", ["fs", "sqlite", pytest.param("s3", marks=pytest.mark.slow)])
def test_a_peer_keeps_typed_records_on_every_backend(tmp_path: Path, schema_toml: str, backend: str,
                                                     request: pytest.FixtureRequest,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    store = peerbox.PeerStore(root)
    store.init("bob", backend="fs" if backend == "s3" else backend)
    bob = store.get("bob")
    if backend == "s3":
        table = request.getfixturevalue("s3_table")("bob")
        for name, value in request.getfixturevalue("local_s3").environ().items():
            monkeypatch.setenv(name, value)  # `peerbox run` inherits the credentials
        with bob.paths.meta.open("a") as f:
            f.write("\n[storage]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items()))
    (bob.paths.dir / "schema.toml").write_text(schema_toml)
    script = tmp_path / "records.rhai"
    script.write_text(SCRIPT)
    first = run(root, script, "--param", "text=hi", "--param", "sent=10")["value"]
    assert first["key"] == 1 and first["n"] == 1 and first["newest"] == [10] and first["more"] is False
    assert first["bad"] == "schema_violation: 'sent': min 0: -1 is smaller"
    assert first["got"] == {"_key": 1, "from": bob.did, "text": "hi", "sent": 10, "tags": ["a", "b"],
                            "author": {"name": "Bob"}}
    for sent in (20, 30):  # another process each time: the records persist
        value = run(root, script, "--param", "text=yo", "--param", f"sent={sent}")["value"]
    assert value["n"] == 3 and value["newest"] == [30, 20] and value["more"] is True
    assert "records.sqlite" not in value["files"]  # beside the storage: fs:: cannot reach it
    assert value["files"] == []  # on s3, the record objects are under a name fs:: never lists
    assert (bob.paths.dir / "records.sqlite").exists() == (backend != "s3")
    if backend == "s3":  # a changed schema: refused until applied; additive changes apply on S3
        (bob.paths.dir / "schema.toml").write_text(schema_toml + '\n[collections.archive]\ntype = "Message"\n')
        with peerbox.Contexts(root) as peers:
            ctx = peers.get("bob")
            said = ctx.run(ctx.compile('let m = ""; try { db::count("inbox") } catch (e) { m = e.message } m'))
            assert "run `peerbox schema apply bob`" in str(said.value)
        applied = apply_schema(bob)
        assert applied.applied and applied.version is not None and applied.version.version == 2
        assert verify_schema_history(bob) == []  # version 1 was recorded by the first run
        (bob.paths.dir / "schema.toml").write_text(schema_toml.replace('flag = "bool?"', ""))
        with pytest.raises(SchemaRefused, match="no transaction across objects"):
            apply_schema(bob, allow_destructive=True)
        assert not (bob.paths.dir / "records.sqlite").exists()


def test_records_need_a_schema_and_local_storage(tmp_path: Path, schema_toml: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    store = peerbox.PeerStore(root)
    store.init("bob")
    store.init("carol")
    catch = 'let m = ""; try { db::count("inbox") } catch (e) { m = `${e.kind}: ${e.message}` } m'
    with peerbox.Contexts(root) as peers:
        bob = peers.get("bob")
        assert bob.run(bob.compile(catch)).value == ("unsupported: this peer keeps no records: declare "
                                                     "collections in its schema.toml")
        (root / "peers" / "bob" / "schema.toml").write_text('[types.A]\nx = "strng"\n')
        said = bob.run(bob.compile(catch)).value
        assert said == ("unsupported: the peer's schema.toml does not check (schema.toml:2); see peerbox "
                        "schema check bob")
        assert str(tmp_path) not in said
        (root / "peers" / "bob" / "schema.toml").write_text(schema_toml)  # picked up by the next call
        assert bob.run(bob.compile('db::count("inbox")')).value == 0
    # a peer on S3: opening its storage contacts nothing; db:: with the service down is an io_error
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    carol = store.get("carol")
    with carol.paths.meta.open("a") as f:
        f.write('\n[storage]\nbackend = "s3"\nbucket = "peerbox"\nendpoint = "http://127.0.0.1:9"\n')
    (carol.paths.dir / "schema.toml").write_text(schema_toml)
    with peerbox.Contexts(root) as peers:
        ctx = peers.get("carol")
        said = ctx.run(ctx.compile(catch)).value
        assert said == "io_error: i/o error on 'records': the storage service is unavailable"


OWN_RECORDS_POLICY = """\
version = 2

[[rule]]
effect = "allow"
who = "owner"
actions = ["*"]

[[rule]]
effect = "allow"
who = "*"
actions = ["exec"]

[[rule]]
effect = "allow"
who = "*"
actions = ["db.read", "db.write", "db.delete"]
resources = ["inbox"]
where = { from = "$caller" }
"""


class World:
    def __init__(self, root: Path, tmp: Path) -> None:
        self.root, self.tmp = root, tmp
        self.store = peerbox.PeerStore(root)

    def send(self, sender: str, script: str) -> subprocess.CompletedProcess[str]:
        path = self.tmp / f"s{time.monotonic_ns()}.rhai"
        path.write_text(script, encoding="utf-8")
        return subprocess.run([*PEERBOX, "send", "--from", sender, "--to", "bob", str(path), "--json",
                               "--root", str(self.root)], capture_output=True, text=True, timeout=60)

    def value(self, sender: str, script: str) -> Any:
        res = self.send(sender, script)
        assert res.returncode == 0, res.stderr + res.stdout
        return json.loads(res.stdout)["value"]


@pytest.fixture
def world(tmp_path: Path, schema_toml: str, serving: Serving) -> Iterator[World]:
    root = tmp_path / "root"
    store = peerbox.PeerStore(root)
    for name in ("bob", "alice", "carol"):
        store.init(name)
    bob = store.get("bob")
    bob.paths.policy.write_text(OWN_RECORDS_POLICY)
    (bob.paths.dir / "schema.toml").write_text(schema_toml)
    with serving(root, "--peers", "bob") as (port, _):
        Directory(root).add("bob", bob.did, f"http://127.0.0.1:{port}", replace=True)
        yield World(root, tmp_path)


@pytest.mark.slow
def test_callers_over_the_network_see_and_change_only_their_own_records(world: World) -> None:
    alice, carol = world.store.get("alice").did, world.store.get("carol").did
    insert = 'db::insert("inbox", #{from: caller.id, text: "from " + caller.name, sent: 1})'
    assert world.value("alice", insert) == 1
    assert world.value("carol", insert) == 2
    mine = 'db::query("inbox", #{}).items.map(|r| r.text)'
    assert world.value("alice", mine) == ["from alice"]
    assert world.value("carol", mine) == ["from carol"]
    assert world.value("alice", 'db::get("inbox", 2)') is None  # carol's record is not there for alice
    forge = f'let m = ""; try {{ db::insert("inbox", #{{from: "{carol}", text: "x", sent: 1}}) }} ' \
            'catch (e) { m = `${e.kind}: ${e.message}` } m'
    said = world.value("alice", forge)
    assert said == (f"denied: db.write of 'inbox' denied: the policy lets this caller write only records with "
                    f"from = '{alice}'")
    assert world.value("alice", 'db::delete("inbox", 2)') is False
    res = world.send("alice", 'db::count("contacts")')  # a collection the policy does not open to callers
    assert res.returncode == 6 and "db.read of 'contacts' denied: no rule allowed it" in res.stderr
    assert world.value("carol", 'db::count("inbox")') == 1
