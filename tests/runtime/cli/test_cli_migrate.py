"""``peerbox schema apply|history`` and ``peerbox db export|import``: output and exit codes."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox.hostcalls import LocalS3, StorageSite, check_schema, open_storage
from peerbox.hostcalls._s3 import S3Backend

Cli = Callable[..., Any]
ALICE = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
LINES = [
    {"from": ALICE, "text": "hello", "sent": 1, "flag": True, "blob": "AAEC", "tags": ["a"],
     "meta": {"k": 1}, "author": {"name": "al", "pubkey": "/w=="}, "score": 0.5},
    {"from": ALICE, "text": "again", "sent": 2},
]


@pytest.fixture
def bob(tmp_path: Path, cli: Cli, schema_toml: str) -> Path:
    """A root whose peer bob has the shared schema applied and two messages (the path of the root)."""
    root = tmp_path / "root"
    assert cli("init", "bob", "--root", str(root)).code == 0
    (root / "peers" / "bob" / "schema.toml").write_text(schema_toml)
    assert cli("schema", "apply", "bob", "--root", str(root)).code == 0
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in LINES))
    res = cli("db", "import", "bob", "inbox", str(tmp_path / "in.jsonl"), "--root", str(root))
    assert (res.code, res.err) == (0, "2 records imported into 'inbox'\n")
    return root


def test_apply_additive_destructive_and_dry_run(bob: Path, cli: Cli, schema_toml: str) -> None:
    path = bob / "peers" / "bob" / "schema.toml"
    res = cli("schema", "apply", "bob", "--root", str(bob))
    assert (res.code, res.out) == (0, "no changes: schema.toml is the applied schema\n")
    path.write_text(schema_toml.replace('flag = "bool?"', 'flag = "bool?"\nnote = "string?"'))
    res = cli("schema", "apply", "bob", "--root", str(bob))
    assert res.code == 0 and "additive    add_field          inbox.note" in res.out
    assert "applied: schema version 2 of bob recorded and signed (1 changes)" in res.out
    path.write_text(schema_toml.replace('flag = "bool?"', ""))
    res = cli("db", "export", "bob", "inbox", "--root", str(bob))  # not applied yet: refused
    assert res.code == 2 and "run `peerbox schema apply bob`" in res.err
    res = cli("schema", "apply", "bob", "--root", str(bob), "--dry-run", "--json")
    doc = json.loads(res.out)
    assert res.code == 0 and doc["applied"] is False
    assert {(c["change"], c["field"], c["class"], c["affected"]) for c in doc["changes"]} == {
        ("remove_field", "flag", "destructive", 1), ("remove_field", "note", "destructive", 0)}
    res = cli("schema", "apply", "bob", "--root", str(bob))
    assert res.code == 10 and "2 destructive changes: refused without --allow-destructive" in res.err
    assert "destructive remove_field       inbox.flag" in res.out and "(1 records affected)" in res.out
    res = cli("schema", "apply", "bob", "--root", str(bob), "--allow-destructive")
    assert res.code == 0 and "schema version 3" in res.out
    res = cli("db", "export", "bob", "inbox", "--root", str(bob))
    assert res.code == 0 and [json.loads(x) for x in res.out.splitlines()] == [
        {"_key": 1, **{k: v for k, v in LINES[0].items() if k != "flag"}}, {"_key": 2, **LINES[1]}]
    path.write_text("[types.A]\nx = \"strng\"\n")
    assert cli("schema", "apply", "bob", "--root", str(bob)).code == 2


def test_history_verifies_and_detects_tampering(bob: Path, cli: Cli, schema_toml: str) -> None:
    (bob / "peers" / "bob" / "schema.toml").write_text(schema_toml + '\n[collections.archive]\ntype = "Message"\n')
    assert cli("schema", "apply", "bob", "--root", str(bob)).code == 0
    res = cli("schema", "history", "bob", "--root", str(bob))
    assert res.code == 0 and res.out.splitlines()[-1] == "ok   2 schema versions verified"
    doc = json.loads(cli("schema", "history", "bob", "--root", str(bob), "--json").out)
    assert doc["ok"] is True and [v["version"] for v in doc["versions"]] == [1, 2]
    log = bob / "peers" / "bob" / "schema-history" / "log" / "schema.jsonl"
    lines = log.read_text().splitlines()
    entry = json.loads(lines[0])
    entry["time"] += 1  # a hand edit of the first version
    log.write_text("\n".join([json.dumps(entry, sort_keys=True), *lines[1:]]) + "\n")
    res = cli("schema", "history", "bob", "--root", str(bob))
    assert res.code == 8 and "FAIL schema: version 1: the peer's seal does not match the entry" in res.out


def test_db_export_import_round_trip_into_a_fresh_peer(bob: Path, cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "inbox.jsonl"
    res = cli("db", "export", "bob", "inbox", "--json", "--out", str(out), "--root", str(bob))
    assert res.code == 0 and res.err == "2 records of 'inbox' exported\n"
    assert cli("init", "carol", "--root", str(bob)).code == 0
    (bob / "peers" / "carol" / "schema.toml").write_text((bob / "peers" / "bob" / "schema.toml").read_text())
    assert cli("db", "import", "carol", "inbox", str(out), "--root", str(bob)).code == 0
    res = cli("db", "export", "carol", "inbox", "--root", str(bob))
    assert res.out == out.read_text()
    res = cli("db", "import", "carol", "inbox", str(out), "--root", str(bob))  # the keys are taken
    assert res.code == 2 and "nothing was imported" in res.err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(LINES[1]) + "\n" + json.dumps({**LINES[1], "sent": "noon"}) + "\n")
    res = cli("db", "import", "carol", "inbox", str(bad), "--root", str(bob))
    assert res.code == 2 and "line 2: 'sent': type: expected timestamp" in res.err
    assert cli("db", "export", "carol", "nope", "--root", str(bob)).code == 2
    assert len(cli("db", "export", "carol", "inbox", "--root", str(bob)).out.splitlines()) == 2


@pytest.mark.slow
def test_a_peer_on_s3_applies_additive_changes_keeps_history_and_backs_up(
        tmp_path: Path, cli: Cli, schema_toml: str, s3_table: Callable[..., dict[str, object]],
        local_s3: LocalS3, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    for name, value in local_s3.environ().items():
        monkeypatch.setenv(name, value)
    for peer in ("bob", "carol"):
        assert cli("init", peer, "--root", str(root)).code == 0
        with (root / "peers" / peer / "peer.toml").open("a") as f:
            f.write("\n[storage]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in s3_table(peer).items()))
        (root / "peers" / peer / "schema.toml").write_text(schema_toml)
    path = root / "peers" / "bob" / "schema.toml"
    assert cli("schema", "apply", "bob", "--root", str(root)).code == 0  # version 1, signed
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in LINES))
    res = cli("db", "import", "bob", "inbox", str(tmp_path / "in.jsonl"), "--root", str(root))
    assert (res.code, res.err) == (0, "2 records imported into 'inbox'\n")
    indexed = schema_toml.replace('"status"]', '"status", "text"]') + '\n[collections.archive]\ntype = "Message"\n'
    path.write_text(indexed)
    res = cli("schema", "apply", "bob", "--root", str(root))
    assert res.code == 0 and "additive    add_index          inbox.text" in res.out
    assert "applied: schema version 2 of bob recorded and signed (2 changes)" in res.out
    with peerbox.Contexts(root) as peers:  # the backfilled index finds the records stored before it
        ctx = peers.get("bob")
        found = ctx.run(ctx.compile('db::query("inbox", #{where: #{text: "again"}}).items.map(|r| r.sent)'))
        assert found.value == [2]
    path.write_text(indexed.replace('flag = "bool?"', ""))
    for extra in ((), ("--allow-destructive",)):
        res = cli("schema", "apply", "bob", "--root", str(root), *extra)
        assert res.code == 10 and "no transaction across objects" in res.err and "nothing was changed" in res.err
        assert "destructive remove_field       inbox.flag" in res.out and "(1 records affected)" in res.out
    path.write_text(indexed)
    res = cli("schema", "history", "bob", "--root", str(root))
    assert res.code == 0 and res.out.splitlines()[-1] == "ok   2 schema versions verified"
    out = tmp_path / "inbox.jsonl"
    assert cli("db", "export", "bob", "inbox", "--out", str(out), "--root", str(root)).code == 0
    assert [json.loads(x) for x in out.read_text().splitlines()] == [{"_key": 1, **LINES[0]}, {"_key": 2, **LINES[1]}]
    assert cli("db", "import", "carol", "inbox", str(out), "--root", str(root)).code == 0
    assert cli("db", "export", "carol", "inbox", "--root", str(root)).out == out.read_text()
    res = cli("db", "import", "carol", "inbox", str(out), "--root", str(root))  # the keys are taken
    assert res.code == 2 and "nothing was imported" in res.err
    assert len(cli("db", "export", "carol", "inbox", "--root", str(root)).out.splitlines()) == 2
    # the applied schema object replaced behind the history's back: the history no longer verifies
    b = open_storage(s3_table("bob"), StorageSite(tmp_path / "unused", "bob"), None, local_s3.environ())
    assert isinstance(b, S3Backend)
    other = indexed + '\n[collections.drafts]\ntype = "Message"\n'
    b.schemas().apply(check_schema(tomllib.loads(other), other), other)
    res = cli("schema", "history", "bob", "--root", str(root))
    assert res.code == 8 and "FAIL schema" in res.out


def test_an_import_file_past_the_cap_is_refused_whole(bob: Path, cli: Cli, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A file larger than ``db import`` reads is refused with exit 2, never imported cut short
    (the cap is lowered here so the file stays small; what is checked is the same)."""
    from peerbox.cli import _db
    line = json.dumps({"from": ALICE, "text": "late", "sent": 3}) + "\n"
    big = tmp_path / "big.jsonl"
    big.write_text(line * 10)
    monkeypatch.setattr(_db, "MAX_IMPORT", len(line) * 10 - 1)
    res = cli("db", "import", "bob", "inbox", str(big), "--root", str(bob))
    assert res.code == 2 and "is larger than" in res.err, res.err
    monkeypatch.setattr(_db, "MAX_IMPORT", len(line) * 10)
    res = cli("db", "import", "bob", "inbox", str(big), "--root", str(bob))
    assert (res.code, res.err) == (0, "10 records imported into 'inbox'\n")
