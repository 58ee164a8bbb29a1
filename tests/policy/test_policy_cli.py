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
                   "logic.write, db.read, db.write, db.delete, \"fs.*\", \"logic.*\", \"db.*\" or \"*\")"]
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
    assert f"  fs.read of 'secret/k' denied by the deny rule at {policy}:14\n" in capsys.readouterr().out
    assert run(base + ["--caller", "alice", "--action", "fs.write", "--path", "x"]) == EXIT_DENIED
    assert "  fs.write of 'x' denied: no rule allowed it\n" in capsys.readouterr().out
    alice_did = PeerStore(root).get("alice").did
    assert run(base + ["--caller", alice_did, "--action", "fs.read", "--path", "x", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["allowed"] and out["rule"] == {"file": str(policy), "line": 8, "effect": "allow"}
    assert out["caller"] == {"did": alice_did, "name": "alice", "source": "local"}
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


def _remote_root(tmp_path: Path, name: str) -> tuple[Path, str]:
    """A peer ``name`` under its own root (another machine): its root and did."""
    other = tmp_path / f"{name}-root"
    return other, PeerStore(other).init(name).did


def test_policy_check_warns_about_unresolved_conflicting_and_shadowed_names(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, carol = _remote_root(tmp_path, "carol")
    _, other = _remote_root(tmp_path, "alice")                 # a different did than the local alice
    directory = peerbox.Directory(root)
    directory.add("carol", carol)
    directory.add("carol2", carol)                             # carol's second name: shadowed
    directory.add("alice", other)                              # conflicts with the local alice
    policy = root / "peers/bob/policy.toml"
    policy.write_text(
        'version = 2\n[groups]\nfriends = ["carol2", "alice"]\n\n'
        '[[rule]]\neffect = "allow"\nwho = ["carol", "dave"]\nactions = ["call"]\nresources = ["inbox::*"]\n\n'
        '[[rule]]\neffect = "allow"\nwho = "group:friends"\nactions = ["exec"]\n')
    assert run(["policy", "check", "bob", "--root", str(root)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("OK:")
    err = captured.err.splitlines()
    assert err == [
        f'{policy}:5: warning: rule #1: \'who\': "dave" names no local peer and no peers.toml entry: the rule '
        "matches no caller (peerbox directory add dave DID)",
        f'{policy}:11: warning: rule #2: \'who\': "carol2" is peers.toml\'s second name for a did known as '
        '"carol": callers with that did are named "carol", so a rule naming "carol2" never matches',
        f'{policy}:11: warning: rule #2: \'who\': "alice" is the local peer alice '
        f"({PeerStore(root).get('alice').did}) and peers.toml names {other} for it: only the local peer matches",
    ]
    assert run(["policy", "check", "bob", "--root", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and [w["line"] for w in out["warnings"]] == [5, 11, 11]


def test_explain_call_resource_json_has_rate_and_quota(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = root / "peers/bob/policy.toml"
    policy.write_text(
        'version = 2\n[[rule]]\neffect = "allow"\nwho = "alice"\nactions = ["call"]\n'
        'resources = ["inbox::deliver"]\n'
        'limits = { timeout = 2.0, calls_per_minute = 30, burst = 5, max_bytes = 65536, max_files = 100 }\n')
    base = ["policy", "explain", "bob", "--root", str(root), "--caller", "alice", "--action", "call"]
    assert run(base + ["--resource", "inbox::deliver"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ALLOW: alice (did:key:") and "call 'inbox::deliver'" in out
    assert "  limits: timeout=2.0; rate: 30/min, burst 5 (policy.toml:2); quota: 65536 bytes, 100 files" in out
    assert run(base + ["--resource", "inbox::deliver", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["resource"] == "inbox::deliver" and doc["allowed"] is True
    assert {k: doc["limits"][k] for k in ("timeout", "calls_per_minute", "burst", "max_bytes", "max_files")} \
        == {"timeout": 2.0, "calls_per_minute": 30, "burst": 5, "max_bytes": 65536, "max_files": 100}
    assert doc["limits"]["rates"] == [{"calls_per_minute": 30, "burst": 5, "rule": "policy.toml:2"}]
    assert run(base + ["--resource", "inbox::count"]) == EXIT_DENIED      # not that function
    assert "call of 'inbox::count' denied: no rule allowed it" in capsys.readouterr().out
    assert run(base) == 2                                                 # call needs --resource
    with pytest.raises(SystemExit):                                       # one of them (argparse)
        run(base + ["--resource", "inbox::deliver", "--path", "x"])
    assert run(["policy", "explain", "bob", "--root", str(root), "--caller", "alice", "--action", "exec",
                "--resource", "x"]) == 2                                  # exec names no resource
    assert run(["policy", "explain", "bob", "--root", str(root), "--caller", "alice", "--action", "fs.read",
                "--resource", "notes/a"]) == EXIT_DENIED                 # --resource works for fs.* too


def test_explain_caller_from_peers_toml(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, carol = _remote_root(tmp_path, "carol")
    base = ["policy", "explain", "bob", "--root", str(root), "--action", "exec"]
    assert run(base + ["--caller", "carol"]) == 2                         # not known yet: a usage error
    capsys.readouterr()
    peerbox.Directory(root).add("carol", carol)                           # no URL: a caller only
    (root / "peers/bob/policy.toml").write_text(
        'version = 2\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["exec"]\n')
    assert run(base + ["--caller", "carol"]) == 0
    out = capsys.readouterr().out
    assert f"  caller: carol = {carol} (peers.toml)" in out
    assert run(base + ["--caller", carol, "--json"]) == 0                 # by did: named from peers.toml
    doc = json.loads(capsys.readouterr().out)
    assert doc["caller"] == {"did": carol, "name": "carol", "source": "directory"} and doc["allowed"]
