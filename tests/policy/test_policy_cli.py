"""``peerbox policy check`` / ``explain``: output and exit codes (through the module's add_parsers)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import peerbox
from peerbox.cli._policy import EXIT_DENIED, add_parsers
from peerbox.peer import PeerStore


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="peerbox")
    add_parsers(parser.add_subparsers())
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except peerbox.Error as exc:
        return exc.exit_code


@pytest.fixture
def root(tmp_path: Path) -> Path:
    store = PeerStore(tmp_path)
    bob = store.init("bob")
    store.init("alice")
    bob.paths.policy.write_text(
        'version = 1\n\n[[rule]]\neffect = "allow"\nwho = "owner"\nactions = ["*"]\n\n'
        '[[rule]]\neffect = "allow"\nwho = "alice"\nactions = ["exec", "fs.read"]\n'
        'limits = { fuel = 5000 }\n\n'
        '[[rule]]\neffect = "deny"\nwho = "*"\nactions = ["fs.*"]\nresources = ["secret/**"]\n'
    )
    return tmp_path


def test_check_ok_and_default_policy(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["policy", "check", "bob", "--root", str(root)]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {root}/peers/bob/policy.toml: 3 rules")
    assert run(["policy", "check", "alice", "--root", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["rules"] == 1


def test_check_errors(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = root / "peers/bob/policy.toml"
    policy.write_text('version = 1\n[[rule]]\neffect = "allow"\nwho = "group:x"\nactions = ["fs.exec"]\n')
    assert run(["policy", "check", "bob", "--root", str(root)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{policy}:2: rule #1: 'who': unknown group 'x' (define it under [groups])",
                   f"{policy}:2: rule #1: 'actions': unknown action 'fs.exec' (expected one of exec, "
                   "call, fs.read, fs.write, fs.append, fs.mkdir, fs.delete, fs.list, module.import, delegate, logic.read, "
                   "logic.write, \"fs.*\", \"logic.*\" or \"*\")"]
    assert run(["policy", "check", "bob", "--root", str(root), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and [p["line"] for p in out["problems"]] == [2, 2]
    assert run(["policy", "check", "nobody", "--root", str(root)]) == 2


def test_explain(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["policy", "explain", "bob", "--root", str(root)]
    policy = root / "peers/bob/policy.toml"
    assert run(base + ["--caller", "alice", "--action", "exec"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ALLOW: alice (did:key:") and f"allow rule at {policy}:8" in out
    assert "limits: fuel=5000" in out
    assert run(base + ["--caller", "alice", "--action", "fs.read", "--path", "secret/k"]) == EXIT_DENIED
    assert f"deny rule at {policy}:14" in capsys.readouterr().out
    assert run(base + ["--caller", "alice", "--action", "fs.write", "--path", "x"]) == EXIT_DENIED
    assert "nothing allowed it" in capsys.readouterr().out
    alice_did = PeerStore(root).get("alice").did
    assert run(base + ["--caller", alice_did, "--action", "fs.read", "--path", "x", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["allowed"] and out["rule"] == {"file": str(policy), "line": 8, "effect": "allow"}
    assert out["caller"] == {"did": alice_did, "name": "alice"}
    assert run(base + ["--caller", "owner", "--action", "module.import", "--module", "m"]) == 0
    capsys.readouterr()


def test_explain_usage_errors_and_broken_policy(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["policy", "explain", "bob", "--root", str(root)]
    assert run(base + ["--caller", "nobody", "--action", "exec"]) == 2
    assert run(base + ["--caller", "did:key:zBAD", "--action", "exec"]) == 2
    assert run(base + ["--caller", "alice", "--action", "fs.read"]) == 2          # needs --path
    assert run(base + ["--caller", "alice", "--action", "exec", "--path", "x"]) == 2
    assert run(base + ["--caller", "alice", "--action", "exec", "--at", "yesterday"]) == 2
    (root / "peers/bob/policy.toml").write_text("version = 3\n")
    capsys.readouterr()
    assert run(base + ["--caller", "owner", "--action", "exec"]) == 2
    captured = capsys.readouterr()
    assert "unsupported policy version 3" in captured.err and captured.out.startswith("DENY")
    assert run(["policy"]) == 2


def test_explain_at_time(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "peers/bob/policy.toml").write_text(
        'version = 1\n[[rule]]\neffect = "allow"\nwho = "*"\nactions = ["exec"]\n'
        'expires = 2030-01-01T00:00:00Z\n')
    base = ["policy", "explain", "bob", "--root", str(root), "--caller", "alice", "--action", "exec"]
    assert run(base + ["--at", "2029-12-31T23:59:59Z"]) == 0
    assert run(base + ["--at", "2030-01-01T00:00:00Z"]) == EXIT_DENIED
