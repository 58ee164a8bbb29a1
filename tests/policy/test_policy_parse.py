"""policy.toml parsing and validation: every error names the file and the rule's header line."""

from __future__ import annotations

from pathlib import Path

import pytest

import peerbox
from peerbox.peer import PeerStore
from peerbox.wire import KeyPair
from peerbox.policy import PolicyError, PolicyLimits, load, loads

DID = KeyPair.from_seed(b"\1" * 32).did


def _err(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        loads(text, "p.toml")
    return info.value


def test_default_policy_written_by_init_loads(tmp_path: Path) -> None:
    peer = PeerStore(tmp_path).init("bob")
    policy = load(peer.paths.policy)
    assert len(policy.rules) == 1
    rule = policy.rules[0]
    assert rule.effect == "allow" and rule.who.owner and rule.resources is None
    assert rule.line is not None and peer.paths.policy.read_text().splitlines()[rule.line - 1] == "[[rule]]"


def test_full_format() -> None:
    policy = loads(f"""version = 1

[groups]
friends = ["alice", "{DID}"]

[[rule]]
effect = "allow"
who = ["owner", "group:friends"]
actions = ["exec", "fs.*"]
resources = ["inbox/**", "notes/*.txt"]
limits = {{ fuel = 1000, timeout = 2.5, memory = 1048576 }}
expires = 2030-01-01T00:00:00Z
description = "friends"

[[rule]]
effect = "deny"
who = "*"
actions = ["module.import"]
resources = ["secret"]
expires = "2031-01-01T00:00:00+01:00"
""", "p.toml")
    a, b = policy.rules
    assert a.line == 6 and b.line == 15
    assert a.who.ids == frozenset({"alice", DID}) and a.who.owner and not a.who.any
    assert a.actions == frozenset({"exec", "fs.read", "fs.write", "fs.append", "fs.mkdir", "fs.delete",
                                   "fs.list"})
    assert a.limits == PolicyLimits(fuel=1000, timeout=2.5, memory=1048576)
    assert a.expires == 1893456000.0
    assert b.who.any and b.expires == 1924988400.0
    assert policy.groups == {"friends": ("alice", DID)}


RULE = 'version = 1\n\n[[rule]]\neffect = "allow"\nwho = "*"\n'


@pytest.mark.parametrize("body, message", [
    ('actions = ["fs.exec"]', "unknown action 'fs.exec'"),
    ('actions = "exec"', "'actions': must be a non-empty array"),
    ('actions = []', "'actions': must be a non-empty array"),
    ('actions = ["fs.read"]\nresources = ["***"]', "'**' must be a whole segment"),
    ('actions = ["fs.read"]\nresources = ["a/../b"]', "'..' segment"),
    ('actions = ["fs.read"]\nresources = ["/etc/**"]', "is absolute"),
    ('actions = ["fs.read"]\nresources = ["a//b"]', "empty segment"),
    ('actions = ["fs.read"]\nresources = ["a/"]', "empty segment"),
    ('actions = ["fs.read"]\nresources = [""]', "empty pattern"),
    ('actions = ["fs.read"]\nresources = ["[ab]"]', "character classes"),
    ('actions = ["fs.read"]\nresources = []', "'resources': must be a non-empty array"),
    ('actions = ["exec"]\nresources = ["a"]', "exec and delegate have none"),
    ('actions = ["exec"]\nlimits = { fuel = 0 }', "fuel must be a positive integer"),
    ('actions = ["exec"]\nlimits = { fuel = true }', "fuel must be a positive integer"),
    ('actions = ["exec"]\nlimits = { timeout = "1s" }', "timeout must be a positive number"),
    ('actions = ["exec"]\nlimits = { cpu = 1 }', "unknown limit 'cpu'"),
    ('actions = ["exec"]\nlimits = 5', "'limits': must be a table"),
    ('actions = ["fs.read"]\nlimits = { fuel = 5 }', "the rule must allow exec"),
    ('actions = ["exec"]\nexpires = 2030-01-01T00:00:00', "no time zone"),
    ('actions = ["exec"]\nexpires = 2030-01-01', "not a full date-time"),
    ('actions = ["exec"]\nexpires = "tomorrow"', "not an RFC 3339 date-time"),
    ('actions = ["exec"]\nexpires = 5', "'expires': must be a date-time"),
    ('actions = ["exec"]\ncolour = "red"', "'colour': unknown key"),
    ('actions = ["exec"]\ndescription = 5', "'description': must be a string"),
])
def test_rule_errors_name_file_line_and_key(body: str, message: str) -> None:
    err = _err(RULE + body + "\n")
    assert err.file == "p.toml" and err.line == 3, str(err)
    assert message in err.problem and "rule #1" in err.problem
    assert str(err).startswith("p.toml:3: rule #1")
    assert isinstance(err, peerbox.Error) and err.exit_code == 2


@pytest.mark.parametrize("who, message", [
    ('"group:nope"', "unknown group 'nope'"),
    ('"did:key:zNOTAKEY"', "malformed did"),
    ('"did:web:example.com"', "malformed did"),
    ('"Alice!"', "neither a did:key nor a peer name"),
    ('[]', "must be a string or a non-empty array"),
    ('5', "must be a string or a non-empty array"),
])
def test_who_errors(who: str, message: str) -> None:
    err = _err(f'version = 1\n# comment\n\n[[rule]]\neffect = "allow"\nwho = {who}\nactions = ["exec"]\n')
    assert err.line == 4 and "'who'" in err.problem and message in err.problem


def test_effect_and_missing_keys() -> None:
    err = _err('version = 1\n[[rule]]\neffect = "maybe"\n')
    problems = [p.problem for p in err.problems]
    assert any("'effect': must be \"allow\" or \"deny\"" in p for p in problems)
    assert any("'who': missing" in p for p in problems)
    assert any("'actions': missing" in p for p in problems)
    assert all(p.line == 2 for p in err.problems)


def test_every_problem_is_reported_with_its_own_rule_line() -> None:
    text = (
        'version = 1\n\n[[rule]]\neffect = "allow"\nwho = "*"\nactions = ["nope"]\n\n'
        '[[rule]]\neffect = "allow"\nwho = "*"\nactions = ["exec"]\n\n'
        '[[ rule ]]\neffect = "deny"\nwho = "group:x"\nactions = ["exec"]\n'
    )
    err = _err(text)
    assert [(p.line, "rule #1" in p.problem or "rule #3" in p.problem) for p in err.problems] == [
        (3, True), (13, True)]
    assert str(err).splitlines()[1].startswith("p.toml:13: rule #3: 'who': unknown group 'x'")


def test_top_level_errors() -> None:
    assert "missing 'version = 2'" in _err('[[rule]]\neffect="allow"\nwho="*"\nactions=["exec"]\n').problem
    err = _err("version = 3\n")
    assert err.line == 1 and "unsupported policy version 3 (expected 1 or 2)" in err.problem
    err = _err('version = 1\nextra = 1\n')
    assert err.line == 2 and "unknown top-level key 'extra'" in err.problem
    err = _err('version = 1\nrule = 5\n')
    assert "'rule' must be an array of tables" in err.problem


def test_group_errors_point_at_the_member_line() -> None:
    err = _err('version = 1\n\n[groups]\nok = ["alice"]\nbad = ["did:key:z6Mk"]\n')
    assert err.line == 5 and "group 'bad': malformed did" in err.problem
    err = _err('version = 1\n[groups]\ng = ["owner"]\n')
    assert "cannot be a group member" in err.problem
    err = _err('version = 1\n[groups]\ng = "alice"\n')
    assert "must be an array of strings" in err.problem
    err = _err('version = 1\ngroups = 5\n')
    assert "'groups' must be a table" in err.problem


def test_toml_syntax_error_has_line() -> None:
    err = _err('version = 1\n[[rule]]\neffect = \n')
    assert err.line == 3 and "invalid TOML" in err.problem


def test_load_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(PolicyError, match="policy file is missing"):
        load(missing)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"version = 1\n# \xff\n")
    with pytest.raises(PolicyError) as info:
        load(bad)
    assert info.value.line == 2 and "not UTF-8" in info.value.problem
    link = tmp_path / "link.toml"
    link.symlink_to(bad)
    with pytest.raises(PolicyError, match="cannot read it"):
        load(link)
    big = tmp_path / "big.toml"
    big.write_text("#" * (2 << 20))
    with pytest.raises(PolicyError, match="larger than"):
        load(big)
    ok = tmp_path / "ok.toml"
    ok.write_text('version = 1\n[[rule]]\neffect = "deny"\nwho = "*"\nactions = ["*"]\n')
    assert load(ok).file == str(ok)
