"""Schema migrations end to end: a peer's scripts keep records, its owner changes schema.toml,
scripts are told to wait for `peerbox schema apply`, a refused apply loses nothing, an applied one
keeps every record, the signed history verifies, and a backup restores into a fresh peer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import peerbox

from .conftest import PEERBOX

CATCH = 'let m = ""; try {{ m = {expr}; }} catch (e) {{ m = `${{e.kind}}: ${{e.message}}` }} m'


def peerbox_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PEERBOX, *args, "--root", str(root)], capture_output=True, text=True, timeout=120)


def test_an_owner_migrates_a_live_peer_without_losing_records(tmp_path: Path, schema_toml: str) -> None:
    root = tmp_path / "root"
    store = peerbox.PeerStore(root)
    store.init("bob")
    store.init("carol")
    schema = root / "peers" / "bob" / "schema.toml"
    schema.write_text(schema_toml)
    with peerbox.Contexts(root) as peers:
        bob = peers.get("bob")
        for i in range(5):  # the first db:: call applies the first schema (version 1, signed)
            bob.run(bob.compile(f'db::insert("inbox", #{{from: caller.id, text: "m{i}", sent: {i}, '
                                f'flag: {str(i % 2 == 0).lower()}}})'))
        schema.write_text(schema_toml.replace('flag = "bool?"', ""))  # the owner drops a field
        said = bob.run(bob.compile(CATCH.format(expr='db::count("inbox")'))).value
        assert said == ("unsupported: the peer's schema.toml is not the schema its records are stored under: "
                        "run `peerbox schema apply bob` (--dry-run shows what would change)")
        res = peerbox_cli(root, "schema", "apply", "bob")
        assert res.returncode == 10 and "(5 records affected)" in res.stdout and "nothing was changed" in res.stderr
        schema.write_text(schema_toml)  # back as it was: the records are all there
        assert bob.run(bob.compile('db::count("inbox", #{flag: true})')).value == 3
        schema.write_text(schema_toml.replace('flag = "bool?"', "")
                          + '\n[collections.archive]\ntype = "Message"\n')
        res = peerbox_cli(root, "schema", "apply", "bob", "--allow-destructive")
        assert res.returncode == 0 and "schema version 2 of bob recorded and signed" in res.stdout
        texts = bob.run(bob.compile('db::query("inbox", #{order_by: "sent"}).items.map(|r| r.text)')).value
        assert texts == ["m0", "m1", "m2", "m3", "m4"]
    res = peerbox_cli(root, "schema", "history", "bob")
    assert res.returncode == 0 and res.stdout.splitlines()[-1] == "ok   2 schema versions verified"
    backup = peerbox_cli(root, "db", "export", "bob", "inbox", "--json")
    assert backup.returncode == 0 and len(backup.stdout.splitlines()) == 5
    (root / "peers" / "carol" / "schema.toml").write_text(schema.read_text())
    (tmp_path / "inbox.jsonl").write_text(backup.stdout)
    assert peerbox_cli(root, "db", "import", "carol", "inbox", str(tmp_path / "inbox.jsonl")).returncode == 0
    again = peerbox_cli(root, "db", "export", "carol", "inbox")
    assert [json.loads(x) for x in again.stdout.splitlines()] == [json.loads(x) for x in backup.stdout.splitlines()]
