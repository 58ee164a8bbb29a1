"""Policy version 2: the ``call`` action, ``fs.write`` split into write/append/mkdir (version 1 keeps
its old meaning), per-caller limits (rate and quota keys), ``rates_for`` and ``rules_for``."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerbox.peer import PeerStore
from peerbox.policy import (
    ACTIONS, FS_ACTIONS, LEGACY_WRITE, POLICY_VERSIONS, Grant, Policy, PolicyError, PolicyLimits, RateLimit,
    Request, expand_legacy, load, loads,
)
from peerbox.wire import KeyPair

OWNER = KeyPair.from_seed(b"\1" * 32).did
CAROL = KeyPair.from_seed(b"\3" * 32).did
DAVE = KeyPair.from_seed(b"\4" * 32).did
NOW = 1_800_000_000.0


def req(action: str, resource: str | None = None, did: str = CAROL, name: str | None = "carol") -> Request:
    return Request(did, name, action, resource, OWNER, NOW)


def pol(rules: str, version: int = 2) -> Policy:
    return loads(f"version = {version}\n\n" + rules, "policy.toml")


def rule(effect: str, who: str, actions: str, extra: str = "") -> str:
    return f'[[rule]]\neffect = "{effect}"\nwho = {who}\nactions = {actions}\n{extra}\n'


def _err(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        loads(text, "policy.toml")
    return info.value


def test_v1_fs_write_allows_append_and_mkdir_and_warns() -> None:
    p = pol(rule("allow", '"carol"', '["fs.write"]', 'resources = ["inbox/**"]'), version=1)
    assert p.version == 1
    for action in LEGACY_WRITE:
        assert p.decide(req(action, "inbox/a.txt")).allowed, action
    assert not p.decide(req("fs.delete", "inbox/a.txt")).allowed
    (warning,) = p.warnings
    assert warning.line == 6 and "rule #1" in warning.problem and "version = 2" in warning.problem
    assert "fs.append and fs.mkdir" in warning.problem
    # a v1 deny of fs.write still denies appending and creating directories
    p = pol(rule("allow", '"carol"', '["fs.*"]') + rule("deny", '"carol"', '["fs.write"]',
                                                         'resources = ["private/**"]'), version=1)
    assert not p.decide(req("fs.append", "private/x")).allowed
    assert not p.decide(req("fs.mkdir", "private/d")).allowed
    assert p.decide(req("fs.append", "inbox/x")).allowed


def test_v2_fs_write_is_create_or_replace_only() -> None:
    p = pol(rule("allow", '"carol"', '["fs.write"]', 'resources = ["inbox/**"]')
            + rule("allow", '"carol"', '["fs.append"]', 'resources = ["inbox/carol.log"]'))
    assert p.version == 2 and p.warnings == ()
    assert p.decide(req("fs.write", "inbox/a.txt")).allowed
    assert not p.decide(req("fs.append", "inbox/a.txt")).allowed
    assert not p.decide(req("fs.mkdir", "inbox/d")).allowed
    assert p.decide(req("fs.append", "inbox/carol.log")).allowed
    assert not pol(rule("allow", '"carol"', '["fs.append"]')).decide(req("fs.write", "a.txt")).allowed


@pytest.mark.parametrize("version", POLICY_VERSIONS)
def test_fs_star_and_star_include_the_new_actions_in_both_versions(version: int) -> None:
    assert set(FS_ACTIONS) == {"fs.read", "fs.write", "fs.append", "fs.mkdir", "fs.delete", "fs.list"}
    fs_star = pol(rule("allow", '"carol"', '["fs.*"]'), version)
    star = pol(rule("allow", '"carol"', '["*"]'), version)
    for action in ("fs.append", "fs.mkdir"):
        assert fs_star.decide(req(action, "x")).allowed and star.decide(req(action, "x")).allowed
    assert star.decide(req("call", "inbox::deliver")).allowed
    assert not fs_star.decide(req("call", "inbox::deliver")).allowed
    assert fs_star.warnings == () and star.warnings == ()  # no fs.write named: nothing to warn about


def test_star_includes_call_but_not_logic() -> None:
    assert "call" in ACTIONS
    p = pol(rule("allow", '"carol"', '["*"]'))
    assert p.decide(req("call", "inbox::deliver")).allowed
    assert not p.decide(req("logic.read", "inbox")).allowed
    assert not p.decide(req("logic.write", "inbox")).allowed


def test_call_resources_and_globs() -> None:
    p = pol(rule("allow", '"carol"', '["call"]', 'resources = ["inbox::deliver", "stats::*"]')
            + rule("deny", '"*"', '["call"]', 'resources = ["stats::secret"]'))
    assert p.decide(req("call", "inbox::deliver")).allowed
    assert not p.decide(req("call", "inbox::purge")).allowed
    assert p.decide(req("call", "stats::count")).allowed
    d = p.decide(req("call", "stats::secret"))
    assert not d.allowed and d.rule is not None and d.rule.line == 8
    assert not p.decide(req("call", "stats/sub::count")).allowed  # * never crosses '/'
    assert not p.decide(req("call", "inbox::deliver", did=DAVE, name="dave")).allowed
    assert not p.decide(req("call")).allowed  # a call always names its function
    # a rule without resources allows every function; exec is not call
    assert pol(rule("allow", '"carol"', '["call"]')).decide(req("call", "a::b")).allowed
    assert not pol(rule("allow", '"carol"', '["exec"]')).decide(req("call", "a::b")).allowed


def test_unsupported_version_3() -> None:
    err = _err("version = 3\n")
    assert err.line == 1 and "unsupported policy version 3 (expected 1 or 2)" in err.problem
    assert "unsupported policy version" in _err('version = "2"\n').problem
    assert "missing 'version = 2'" in _err('[[rule]]\neffect="allow"\nwho="*"\nactions=["exec"]\n').problem


@pytest.mark.parametrize(("limits", "actions", "effect", "needle"), [
    ("{ burst = 5 }", '["exec"]', "allow", "burst needs calls_per_minute"),
    ("{ calls_per_minute = 0 }", '["exec"]', "allow", "calls_per_minute must be a number > 0"),
    ("{ calls_per_minute = -1 }", '["call"]', "allow", "calls_per_minute must be a number > 0"),
    ("{ calls_per_minute = true }", '["call"]', "allow", "calls_per_minute must be a number > 0"),
    ("{ calls_per_minute = 2e6 }", '["call"]', "allow", "calls_per_minute must be a number > 0"),
    ("{ calls_per_minute = 5, burst = 0 }", '["call"]', "allow", "burst must be a positive integer"),
    ("{ calls_per_minute = 5, burst = 1.5 }", '["call"]', "allow", "burst must be a positive integer"),
    ("{ max_bytes = -1 }", '["call"]', "allow", "max_bytes must be an integer >= 0"),
    ("{ max_files = true }", '["call"]', "allow", "max_files must be an integer >= 0"),
    ("{ max_files = 1.0 }", '["exec"]', "allow", "max_files must be an integer >= 0"),
    ("{ calls = 5 }", '["exec"]', "allow", "unknown limit 'calls'"),
    ("{ calls_per_minute = 5 }", '["call"]', "deny", "a deny rule cannot have them"),
    ("{ max_bytes = 10 }", '["fs.read"]', "allow", "the rule must allow exec or call"),
])
def test_limit_keys_validated(limits: str, actions: str, effect: str, needle: str) -> None:
    err = _err("version = 2\n\n" + rule(effect, '"carol"', actions, f"limits = {limits}"))
    assert err.line == 3 and "rule #1: 'limits'" in err.problem and needle in err.problem, err.problem


def test_limit_keys_parse_with_defaults() -> None:
    p = pol(rule("allow", '"carol"', '["call"]', "limits = { calls_per_minute = 2.5, max_bytes = 0 }")
            + rule("allow", '"carol"', '["exec"]', "limits = { calls_per_minute = 30, burst = 5, max_files = 7 }"))
    a, b = p.rules
    assert a.limits == PolicyLimits(calls_per_minute=2.5, burst=3, max_bytes=0)  # burst: one minute's worth
    assert b.limits == PolicyLimits(calls_per_minute=30.0, burst=5, max_files=7)
    assert not PolicyLimits(max_bytes=0).is_empty() and PolicyLimits().is_empty()
    assert a.limits.tighten(b.limits) == PolicyLimits(calls_per_minute=2.5, burst=3, max_bytes=0, max_files=7)


def test_limits_for_call_uses_the_resource() -> None:
    p = pol(rule("allow", '"carol"', '["call"]', 'resources = ["inbox::*"]\n'
                 "limits = { timeout = 2.0, max_bytes = 65536, max_files = 100 }")
            + rule("allow", '"carol"', '["call"]', 'resources = ["inbox::deliver"]\nlimits = { fuel = 1000 }')
            + rule("allow", '"carol"', '["exec"]', "limits = { timeout = 9.0 }"))
    assert p.limits_for(req("call", "inbox::deliver")) == PolicyLimits(
        fuel=1000, timeout=2.0, max_bytes=65536, max_files=100)
    assert p.limits_for(req("call", "inbox::count")) == PolicyLimits(timeout=2.0, max_bytes=65536, max_files=100)
    assert p.limits_for(req("call", "other::f")) is None
    # any other action is a run, as before
    assert p.limits_for(req("exec")) == PolicyLimits(timeout=9.0)
    assert p.limits_for(req("fs.read", "x")) == PolicyLimits(timeout=9.0)


def test_rates_for_returns_one_limit_per_matching_rule_with_stable_keys() -> None:
    text = (rule("allow", '"carol"', '["call"]', 'resources = ["inbox::*"]\n'
                 "limits = { calls_per_minute = 30, burst = 5 }")
            + rule("allow", '"*"', '["call", "exec"]', "limits = { calls_per_minute = 600 }")
            + rule("allow", '"carol"', '["call"]', "limits = { timeout = 1.0 }")
            + rule("allow", '"dave"', '["call"]', "limits = { calls_per_minute = 1 }"))
    p = pol(text)
    rates = p.rates_for(req("call", "inbox::deliver"))
    assert [(r.key, r.per_minute, r.burst, str(r.rule)) for r in rates] == [
        ("0@3", 30.0, 5, "policy.toml:3"), ("1@9", 600.0, 600, "policy.toml:9")]
    assert all(isinstance(r, RateLimit) for r in rates)
    assert rates[0].describe() == "30 calls per minute, burst 5"
    assert [r.key for r in p.rates_for(req("call", "other::f"))] == ["1@9"]
    assert [r.key for r in p.rates_for(req("exec"))] == ["1@9"]
    assert [r.key for r in p.rates_for(req("call", "x::y", did=DAVE, name="dave"))] == ["1@9", "3@19"]
    assert [r.key for r in pol(text).rates_for(req("call", "inbox::deliver"))] == ["0@3", "1@9"]  # stable
    assert pol(rule("allow", '"carol"', '["call"]')).rates_for(req("call", "a::b")) == ()
    assert Policy.deny_all("broken").rates_for(req("call", "a::b")) == ()


def test_rules_for_ignores_who_and_expired_rules() -> None:
    p = pol(rule("allow", '"owner"', '["*", "logic.*"]')
            + rule("allow", '"carol"', '["call"]', 'resources = ["inbox::deliver"]')
            + rule("deny", '"dave"', '["call"]', 'resources = ["inbox::*"]')
            + rule("allow", '"eve"', '["call"]', 'resources = ["inbox::deliver"]\nexpires = 2000-01-01T00:00:00Z')
            + rule("allow", '"frank"', '["call"]', 'resources = ["other::*"]')
            + rule("allow", '"gina"', '["exec"]'))
    found = p.rules_for("call", "inbox::deliver", now=NOW)
    assert [(r.effect, r.who_text) for r in found] == [
        ("allow", ("owner",)), ("allow", ("carol",)), ("deny", ("dave",))]
    assert [r.who_text for r in p.rules_for("call", "other::x", now=NOW)] == [("owner",), ("frank",)]
    assert p.rules_for("nope", "a::b") == [] and Policy.deny_all("x").rules_for("call", "a::b") == []


def test_call_pattern_without_colons_warns() -> None:
    p = pol(rule("allow", '"carol"', '["call"]', 'resources = ["inbox", "inbox::deliver", "stats*"]'))
    (warning,) = p.warnings
    assert "'inbox' matches no function" in warning.problem and "MODULE::FUNCTION" in warning.problem
    # not for a rule whose resources are paths for other actions too
    assert pol(rule("allow", '"carol"', '["call", "fs.read"]', 'resources = ["inbox"]')).warnings == ()


def test_expand_legacy() -> None:
    grants = (Grant("fs.write", "a/**"), Grant("exec"), Grant("fs.append", "a/**"), Grant("fs.read", "b"))
    assert expand_legacy(grants) == (Grant("fs.write", "a/**"), Grant("fs.append", "a/**"),
                                     Grant("fs.mkdir", "a/**"), Grant("exec"), Grant("fs.read", "b"))
    assert expand_legacy(()) == ()


def test_init_template_is_version_2(tmp_path: Path) -> None:
    peer = PeerStore(tmp_path).init("bob")
    text = peer.paths.policy.read_text()
    assert "\nversion = 2\n" in text and '"fs.append"' in text and "calls_per_minute" in text
    policy = load(peer.paths.policy)
    assert policy.version == 2 and policy.warnings == ()
    owner = Request(peer.did, "bob", "call", "inbox::deliver", peer.did, NOW)
    assert policy.decide(owner).allowed
    for action in ("fs.append", "fs.mkdir", "logic.write"):
        owner.action = action
        owner.resource = "x"
        assert policy.decide(owner).allowed, action
    assert not policy.decide(Request(CAROL, "carol", "call", "inbox::deliver", peer.did, NOW)).allowed
