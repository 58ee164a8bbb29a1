"""``peerbox schema check|show`` and ``peerbox policy explain`` on collections."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest



Cli = Callable[..., Any]


@pytest.fixture
def root(tmp_path: Path, cli: Cli) -> Path:
    """A root with peer bob (and alice), bob's schema not written yet."""
    r = tmp_path / "root"
    assert cli("init", "bob", "--root", str(r)).code == 0
    assert cli("init", "alice", "--root", str(r)).code == 0
    return r


def test_check_and_show(root: Path, cli: Cli, schema_toml: str) -> None:
    path = root / "peers" / "bob" / "schema.toml"
    path.write_text(schema_toml)
    res = cli("schema", "check", "bob", "--root", str(root))
    assert (res.code, res.out.strip()) == (0, f"OK: {path}: 3 types, 2 collections")
    res = cli("schema", "check", "bob", "--root", str(root), "--json")
    doc = json.loads(res.out)
    assert res.code == 0 and doc["ok"] is True and len(doc["digest"]) == 64
    res = cli("schema", "show", "bob", "--root", str(root))
    assert res.code == 0
    assert 'text = { type = "string", max_len = 200 }' in res.out and "[collections.contacts]" in res.out
    assert 'indexes = [["from", "sent"], ["status"]]' in res.out
    res = cli("schema", "show", "bob", "--root", str(root), "--json-schema")
    doc = json.loads(res.out)
    assert res.code == 0 and doc["$defs"]["Contact"]["required"] == ["handle", "did"]
    assert doc["title"] == "records of peer bob"


def test_problems_are_file_line_and_exit_2(root: Path, cli: Cli) -> None:
    path = root / "peers" / "bob" / "schema.toml"
    path.write_text('[types.Message]\nfrom = "did"\ntext = "strng"\n\n[collections.inbox]\ntype = "Mesage"\n')
    res = cli("schema", "check", "bob", "--root", str(root))
    assert res.code == 2 and res.out == ""
    assert res.err.splitlines() == [f"{path}:3: field Message.text: unknown type 'strng'",
                                    f"{path}:6: collection 'inbox': unknown type 'Mesage'"]
    res = cli("schema", "check", "bob", "--root", str(root), "--json")
    assert res.code == 2 and [p["line"] for p in json.loads(res.out)["problems"]] == [3, 6]
    assert cli("schema", "show", "bob", "--root", str(root)).code == 2
    path.write_text("[types.A]\nx = \n")
    res = cli("schema", "check", "bob", "--root", str(root))
    assert res.code == 2 and res.err.startswith(f"{path}:2: invalid TOML: ")
    path.write_text("a = " + "[" * 40 + "]" * 40 + "\n")
    res = cli("schema", "check", "bob", "--root", str(root))
    assert res.code == 2 and "nest deeper than" in res.err
    path.write_bytes(b"x = '\xff'\n")
    assert cli("schema", "check", "bob", "--root", str(root)).err.startswith(f"{path}:1: not UTF-8 text")
    path.unlink()
    res = cli("schema", "check", "bob", "--root", str(root))
    assert (res.code, res.err.strip()) == (2, f"{path}: no schema.toml: the peer declares no collections")
    assert cli("schema", "check", "nobody", "--root", str(root)).code == 2  # no such peer: a usage error


def test_policy_explain_shows_the_rows(root: Path, cli: Cli) -> None:
    (root / "peers" / "bob" / "policy.toml").write_text(
        'version = 2\n[[rule]]\neffect = "allow"\nwho = "owner"\nactions = ["*"]\n'
        '[[rule]]\neffect = "allow"\nwho = "*"\nactions = ["db.read"]\nresources = ["inbox"]\n'
        'where = { from = "$caller" }\n')
    alice_did = cli("peers", "show", "alice", "--did", "--root", str(root)).out.strip()
    res = cli("policy", "explain", "bob", "--caller", "alice", "--action", "db.read", "--resource", "inbox",
              "--root", str(root))
    assert res.code == 0
    assert f"  rows: only records with from = '{alice_did}'" in res.out.splitlines()
    res = cli("policy", "explain", "bob", "--caller", "owner", "--action", "db.delete", "--resource", "inbox",
              "--root", str(root), "--json")
    assert res.code == 0 and json.loads(res.out)["rows"] is None
    res = cli("policy", "explain", "bob", "--caller", "alice", "--action", "db.write", "--resource", "inbox",
              "--root", str(root))
    assert res.code == 6 and "db.write of 'inbox' denied: no rule allowed it" in res.out
    res = cli("policy", "explain", "bob", "--caller", "alice", "--action", "db.read", "--root", str(root))
    assert res.code == 2 and "db.read needs --resource COLLECTION" in res.err
