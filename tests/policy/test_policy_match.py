"""Decisions: Cedar semantics, principals, globs, expiry, limits, grants, deny-all, host-call mapping."""

from __future__ import annotations

import pytest

from peerbox.wire import KeyPair
from peerbox.hostcalls import HOST_CALLS, OP_ACTIONS
from peerbox.policy import (
    DenialCause,
    ACTIONS, DB_ACTIONS, FS_ACTIONS, NOTHING_ALLOWED, Grant, Policy, PolicyError, PolicyLimits, Request, compile_grants,
    loads, parse_grant,
)

OWNER = KeyPair.from_seed(b"\1" * 32).did
ALICE = KeyPair.from_seed(b"\2" * 32).did
CAROL = KeyPair.from_seed(b"\3" * 32).did
NOW = 1_800_000_000.0


def req(action: str, resource: str | None = None, did: str = ALICE, name: str | None = "alice",
        now: float = NOW) -> Request:
    return Request(did, name, action, resource, OWNER, now)


def pol(rules: str, groups: str = "") -> Policy:
    return loads("version = 1\n" + groups + rules, "p.toml")


def rule(effect: str, who: str, actions: str, extra: str = "") -> str:
    return f'[[rule]]\neffect = "{effect}"\nwho = {who}\nactions = {actions}\n{extra}\n'


def test_default_deny_and_reason() -> None:
    d = pol("").decide(req("exec"))
    assert not d.allowed and d.rule is None and d.reason == NOTHING_ALLOWED


def test_deny_beats_allow_whatever_the_order() -> None:
    allow = rule("allow", '"*"', '["*"]')
    deny = rule("deny", '"alice"', '["fs.write"]', 'resources = ["inbox/**"]')
    for text in (allow + deny, deny + allow):
        p = pol(text)
        d = p.decide(req("fs.write", "inbox/a"))
        assert not d.allowed and d.rule is not None and d.rule.effect == "deny"
        # the header is the line before "effect"; +1 for "version = 1" prepended by pol()
        assert d.rule.line == text.count("\n", 0, text.index('effect = "deny"')) + 1
        assert p.decide(req("fs.write", "outbox/a")).allowed
        assert p.decide(req("fs.write", "inbox/a", did=CAROL, name="carol")).allowed


def test_rule_ref_points_at_header() -> None:
    p = pol(rule("allow", '"*"', '["exec"]'))
    d = p.decide(req("exec"))
    assert d.allowed and d.rule is not None
    assert (d.rule.file, d.rule.line, d.rule.effect) == ("p.toml", 2, "allow")
    assert d.reason == "allowed by the allow rule at p.toml:2" and d.cause is None


def test_principals() -> None:
    p = pol(rule("allow", '"owner"', '["fs.read"]')
            + rule("allow", f'"{ALICE}"', '["fs.write"]')
            + rule("allow", '"carol"', '["fs.list"]')
            + rule("allow", '"group:g"', '["fs.delete"]')
            + rule("allow", '"*"', '["module.import"]'),
            groups=f'[groups]\ng = ["dave", "{CAROL}"]\n')
    assert p.decide(req("fs.read", "x", did=OWNER, name=None)).allowed
    assert not p.decide(req("fs.read", "x")).allowed
    assert not p.decide(req("fs.read", "x", name="owner")).allowed  # "owner" is not a name
    assert p.decide(req("fs.write", "x", name=None)).allowed        # by did
    assert p.decide(req("fs.list", "x", did=CAROL, name="carol")).allowed   # by local name
    assert not p.decide(req("fs.list", "x", did=CAROL, name=None)).allowed
    assert p.decide(req("fs.delete", "x", did=CAROL, name=None)).allowed    # group member by did
    assert p.decide(req("fs.delete", "x", did=ALICE, name="dave")).allowed  # group member by name
    assert not p.decide(req("fs.delete", "x")).allowed
    for did in (OWNER, ALICE, CAROL):
        assert p.decide(req("module.import", "m", did=did, name=None)).allowed


def test_exec_implies_no_file_access() -> None:
    p = pol(rule("allow", '"*"', '["exec"]'))
    assert p.decide(req("exec")).allowed
    for action in ("fs.read", "fs.write", "fs.delete", "fs.list", "module.import"):
        assert not p.decide(req(action, "a")).allowed


@pytest.mark.parametrize("pattern, yes, no", [
    ("inbox/**", ["inbox", "inbox/a", "inbox/a/b/c"], ["inboxx", "outbox/inbox", "", "inbox2/a"]),
    ("notes/*.txt", ["notes/a.txt", "notes/.txt"], ["notes/a/b.txt", "notes/a.md", "a.txt"]),
    ("**", ["", "a", "a/b/c"], []),
    ("*", ["a", "b.c"], ["", "a/b"]),
    ("**/*.log", ["x.log", "a/b/x.log"], ["x.log/y", "a/x.txt"]),
    ("a/**/z", ["a/z", "a/b/z", "a/b/c/z"], ["a", "a/b", "z", "b/a/z"]),
    ("a?c", ["abc", "a.c"], ["ac", "abbc", "a/c"]),
    ("a.b", ["a.b"], ["axb"]),
    ("x+(y)", ["x+(y)"], ["xx(y)"]),
])
def test_globs(pattern: str, yes: list[str], no: list[str]) -> None:
    p = pol(rule("allow", '"*"', '["fs.read"]', f'resources = ["{pattern}"]'))
    for path in yes:
        assert p.decide(req("fs.read", path)).allowed, path
    for path in no:
        assert not p.decide(req("fs.read", path)).allowed, path


@pytest.mark.parametrize("path", ["inbox/../secret", "inbox/./a", "inbox//a", "/inbox/a", "inbox/a/",
                                  "inbox/.."])
def test_no_escape_with_dots(path: str) -> None:
    p = pol(rule("allow", '"*"', '["fs.*"]', 'resources = ["inbox/**"]') + rule("allow", '"owner"', '["*"]'))
    d = p.decide(req("fs.read", path))
    assert not d.allowed and "not a canonical" in d.reason
    assert not p.decide(req("fs.read", path, did=OWNER)).allowed


def test_rule_with_resources_needs_a_resource() -> None:
    p = pol(rule("allow", '"*"', '["*"]', 'resources = ["pub/**"]'))
    assert not p.decide(req("exec")).allowed
    assert not p.decide(req("fs.read", None)).allowed
    assert p.decide(req("fs.read", "pub/x")).allowed
    assert p.decide(req("module.import", "pub")).allowed


def test_module_import() -> None:
    p = pol(rule("allow", '"*"', '["module.import"]', 'resources = ["notes", "lib/*"]'))
    assert p.decide(req("module.import", "notes")).allowed
    assert p.decide(req("module.import", "lib/strings")).allowed
    assert not p.decide(req("module.import", "secrets")).allowed


def test_expiry() -> None:
    p = pol(rule("allow", '"*"', '["exec"]', 'expires = 2027-01-15T08:00:00Z')
            + rule("deny", '"alice"', '["exec"]', 'expires = "2026-01-01T00:00:00Z"'))
    t_deny_end = 1767225600.0
    t_allow_end = 1800000000.0
    assert not p.decide(req("exec", now=t_deny_end - 1)).allowed
    assert p.decide(req("exec", now=t_deny_end)).allowed          # the deny expired
    assert p.decide(req("exec", now=t_allow_end - 1)).allowed
    d = p.decide(req("exec", now=t_allow_end))
    assert not d.allowed and d.reason == NOTHING_ALLOWED           # the allow expired too
    old = pol(rule("allow", '"*"', '["exec"]', 'expires = 2000-01-01T00:00:00Z'))
    assert not old.decide(Request(ALICE, None, "exec", None, OWNER)).allowed  # now=None: the clock


def test_limits_tightest_of_matching_allow_rules() -> None:
    p = pol(rule("allow", '"*"', '["exec"]', "limits = { fuel = 1000, timeout = 5 }")
            + rule("allow", '"alice"', '["*"]', "limits = { timeout = 2, memory = 65536 }")
            + rule("allow", '"owner"', '["exec"]')
            + rule("allow", '"alice"', '["exec"]', "limits = { fuel = 1 }\nexpires = 2000-01-01T00:00:00Z"))
    assert p.limits_for(req("exec")) == PolicyLimits(fuel=1000, timeout=2.0, memory=65536)
    assert p.limits_for(req("exec", did=CAROL, name=None)) == PolicyLimits(fuel=1000, timeout=5.0)
    assert p.limits_for(req("exec", did=OWNER, name=None)) == PolicyLimits(fuel=1000, timeout=5.0)
    assert pol(rule("allow", '"owner"', '["exec"]')).limits_for(req("exec", did=OWNER)) == PolicyLimits()
    assert pol("").limits_for(req("exec")) is None


def test_grants_allow_but_never_beat_deny() -> None:
    p = pol(rule("deny", '"*"', '["fs.write"]', 'resources = ["inbox/private/**"]'))
    grants = [parse_grant("fs.write:inbox/**"), Grant("exec")]
    d = p.decide(req("fs.write", "inbox/a"), grants)
    assert d.allowed and d.rule is None and "fs.write:inbox/**" in d.reason
    assert p.decide(req("exec"), compile_grants(grants)).allowed
    assert not p.decide(req("fs.write", "inbox/private/a"), grants).allowed
    assert not p.decide(req("fs.read", "inbox/a"), grants).allowed
    assert not p.decide(req("fs.write", "outbox/a"), grants).allowed
    assert p.decide(req("fs.delete", "x"), [parse_grant("fs.*")]).allowed
    assert parse_grant("module.import:notes") == Grant("module.import", "notes")
    for bad in ("fs.exec:x", "fs.write:../x", "exec:x", "fs.write:/abs", "fs.read:***"):
        with pytest.raises(PolicyError):
            parse_grant(bad)
    with pytest.raises(PolicyError):
        compile_grants([Grant("nope")])


def test_deny_all_and_unknown_action() -> None:
    p = Policy.deny_all("p.toml:3: broken")
    d = p.decide(req("exec", did=OWNER))
    assert not d.allowed and d.reason == "p.toml:3: broken" and p.error == "p.toml:3: broken"
    assert d.cause is DenialCause.POLICY_UNAVAILABLE and str(d.denial("exec", None)) == "exec denied: p.toml:3: broken"
    assert p.limits_for(req("exec")) is None
    d = pol(rule("allow", '"*"', '["*"]')).decide(req("fs.chmod", "x"))
    assert not d.allowed and d.cause is DenialCause.UNKNOWN_ACTION
    assert str(d.denial("fs.chmod", "x")) == "fs.chmod of 'x' denied: unknown action"


def test_matching_rules_for_explain() -> None:
    p = pol(rule("allow", '"*"', '["*"]') + rule("deny", '"alice"', '["exec"]'))
    assert [r.index for r in p.matching_rules(req("exec"))] == [0, 1]


#: What each host call needs, written out once more here on purpose: a change to the table's
#: action column is a change of security semantics and must show up as a test change.
HOSTCALL_ACTIONS: dict[int, str] = {
    1: "fs.read",     # fs::read
    2: "fs.write",    # fs::write
    3: "fs.append",   # fs::append
    4: "fs.list",     # fs::list
    5: "fs.read",     # fs::exists
    6: "fs.delete",   # fs::delete
    7: "fs.mkdir",    # fs::mkdir
    8: "fs.read",     # fs::stat
    9: "fs.read",     # fs::read_bytes
    10: "fs.write",   # fs::write_bytes
    11: "db.write",   # db::insert
    12: "db.read",    # db::get
    13: "db.write",   # db::update
    14: "db.delete",  # db::delete
    15: "db.read",    # db::query
    16: "db.read",    # db::count
    17: "db.read",    # db::count (with a filter)
}


def test_hostcall_mapping_matches_dispatch() -> None:
    table_ops = {int(c.op): c.action for c in HOST_CALLS}
    op_names = {c.name: c.action for c in HOST_CALLS}
    assert {int(op): a for op, a in OP_ACTIONS.items()} == HOSTCALL_ACTIONS == table_ops
    assert sorted(set(HOSTCALL_ACTIONS.values())) == ["db.delete", "db.read", "db.write", "fs.append", "fs.delete",
                                                      "fs.list", "fs.mkdir", "fs.read", "fs.write"]
    assert op_names["fs::stat"] == "fs.read" and op_names["fs::mkdir"] == "fs.mkdir"
    assert len(HOST_CALLS) == len(HOSTCALL_ACTIONS)
    assert set(HOSTCALL_ACTIONS.values()) <= set(ACTIONS)
    assert set(FS_ACTIONS) | set(DB_ACTIONS) == set(HOSTCALL_ACTIONS.values())
