"""Unicode in policies (issue 12, finding 9): patterns are normalised as request paths are.

A deny rule written in decomposed form (NFD) must protect the file the host
calls name in composed form (NFC); ``policy explain`` must give one answer
for every spelling; ``policy check`` warns (exit 0) about such patterns.
"""

from __future__ import annotations

import argparse
import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import peerbox
from peerbox.cli._policy import EXIT_DENIED, add_parsers
from peerbox.peer import PeerStore
from peerbox.hostcalls import HostCallError, parse_path
from peerbox.policy import NORMAL_FORM, Grant, compile_grants, glob_problem, loads, parse_grant
from peerbox.policy import Request as PolicyRequest

NFC_NAME = "caf\u00e9"          # café, precomposed
NFD_NAME = "cafe\u0301"         # café, e + combining acute
OWNER, ALICE = "did:key:z6MkOwner", "did:key:z6MkAlice"

POLICY = f"""version = 1

[[rule]]
effect = "allow"
who = "alice"
actions = ["fs.read"]
resources = ["**"]

[[rule]]
effect = "deny"
who = "*"
actions = ["fs.read"]
resources = ["{NFD_NAME}/**"]
"""


def read(path: str) -> PolicyRequest:
    return PolicyRequest(ALICE, "alice", "fs.read", path, OWNER, 0)


def test_nfd_deny_pattern_protects_the_nfc_named_file() -> None:
    policy = loads(POLICY, "policy.toml")
    # the host calls hand the policy NFC paths: that is the spelling that must be refused
    (path,) = ["/".join(parse_path(NFD_NAME + "/secret.txt"))]
    assert path == NFC_NAME + "/secret.txt"
    for spelling in (path, NFD_NAME + "/secret.txt"):
        d = policy.decide(read(spelling))
        assert not d.allowed and d.rule is not None and d.rule.line == 9, spelling
    assert policy.decide(read("other.txt")).allowed
    assert policy.rules[1].resources == (NFC_NAME + "/**",)
    (warning,) = policy.warnings
    assert warning.line == 13 and "NFC" in warning.problem


def test_nfd_grant_pattern_allows_the_nfc_named_file() -> None:
    policy = loads("version = 1\n", "policy.toml")
    for grant in (parse_grant(f"fs.read:{NFD_NAME}/*"), Grant("fs.read", f"{NFD_NAME}/*")):
        assert policy.decide(read(NFC_NAME + "/a"), compile_grants([grant])).allowed
    assert parse_grant(f"fs.read:{NFD_NAME}/*").pattern == f"{NFC_NAME}/*"


names = st.text(st.sampled_from(["a", "e", "\u0301", "\u0308", "\u00e9", "\u00eb", "n", "\u0303", "\u00f1",
                                 "\u212b", "A", "\u030a", "/"]), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(names)
def test_policy_and_host_calls_normalise_alike(raw: str) -> None:
    """What hostcalls/_paths.py makes of a path is what the policy makes of the same text as a
    pattern: NORMAL_FORM is the one form both use, and a literal pattern matches its file."""
    try:
        path = "/".join(parse_path(raw))
    except HostCallError:
        return
    assert path == unicodedata.normalize(NORMAL_FORM, raw)
    if glob_problem(raw) is None:
        grants = compile_grants([Grant("fs.read", raw)])
        assert grants.match("fs.read", path) is not None
        policy = loads("version = 1\n", "policy.toml")
        for spelling in (path, unicodedata.normalize("NFD", path)):
            assert policy.decide(read(spelling), grants).allowed


# ------------------------------------------------------------------ the CLI


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
    bob.paths.policy.write_text(POLICY, encoding="utf-8")
    return tmp_path


def test_explain_gives_one_answer_for_every_spelling(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["policy", "explain", "bob", "--root", str(root), "--caller", "alice", "--action", "fs.read",
            "--json", "--path"]
    answers = []
    for spelling in (NFC_NAME + "/secret.txt", NFD_NAME + "/secret.txt"):
        assert run(base + [spelling]) == EXIT_DENIED, spelling
        out = json.loads(capsys.readouterr().out)
        answers.append((out["decision"], out["rule"]))
    assert answers[0] == answers[1] == ("deny", {"file": str(root / "peers/bob/policy.toml"), "line": 9,
                                                 "effect": "deny"})
    assert run(base + ["elsewhere.txt"]) == 0


def test_check_warns_about_patterns_normalisation_changes(root: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    policy = root / "peers/bob/policy.toml"
    assert run(["policy", "check", "bob", "--root", str(root)]) == 0
    res = capsys.readouterr()
    assert res.out.startswith(f"OK: {policy}: 2 rules")
    (line,) = res.err.splitlines()
    assert line.startswith(f"{policy}:13: warning: rule #2: 'resources': ") and "NFC" in line
    assert run(["policy", "check", "bob", "--root", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and [(w["file"], w["line"]) for w in out["warnings"]] == [(str(policy), 13)]
    policy.write_text(POLICY.replace(NFD_NAME, NFC_NAME), encoding="utf-8")
    assert run(["policy", "check", "bob", "--root", str(root)]) == 0
    assert capsys.readouterr().err == ""
