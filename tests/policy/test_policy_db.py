"""Policy on records: db.read/db.write/db.delete on collections, and row filters on the caller."""

from __future__ import annotations

import pytest

from peerbox.policy import (ACTION_ALIASES, CALLER, DB_ACTIONS, RESOURCE_ACTIONS, PolicyError, Request, RowFilter,
                            loads, parse_capability_grant)
from peerbox.wire import KeyPair

OWNER = KeyPair.from_seed(b"\1" * 32).did
ALICE = KeyPair.from_seed(b"\2" * 32).did
CAROL = KeyPair.from_seed(b"\3" * 32).did
NOW = 1_800_000_000.0

POLICY = f"""\
version = 2

[[rule]]
effect = "allow"
who = "owner"
actions = ["*"]

[[rule]]
effect = "allow"
who = "*"
actions = ["db.read", "db.write"]
resources = ["inbox"]
where = {{ from = "$caller" }}

[[rule]]
effect = "allow"
who = ["alice"]
actions = ["db.read"]
resources = ["inbox"]
where = {{ to = "$caller", status = "new" }}

[[rule]]
effect = "allow"
who = "*"
actions = ["db.read"]
resources = ["public_*"]

[[rule]]
effect = "deny"
who = ["{CAROL}"]
actions = ["db.*"]
"""


def req(caller: str, action: str, coll: str | None, name: str | None = None) -> Request:
    return Request(caller, name, action, coll, OWNER, NOW)


def test_the_vocabulary() -> None:
    assert DB_ACTIONS == ("db.read", "db.write", "db.delete")
    assert ACTION_ALIASES["db.*"] == DB_ACTIONS and set(DB_ACTIONS) <= set(ACTION_ALIASES["*"])
    assert set(DB_ACTIONS) <= RESOURCE_ACTIONS
    assert str(parse_capability_grant("db.read:inbox")) == "db.read:inbox"


def test_collections_are_resources() -> None:
    policy = loads(POLICY)
    assert policy.decide(req(OWNER, "db.delete", "inbox"))
    assert policy.decide(req(ALICE, "db.write", "inbox"))
    assert not policy.decide(req(ALICE, "db.delete", "inbox"))
    assert not policy.decide(req(ALICE, "db.write", "contacts"))
    assert policy.decide(req(ALICE, "db.read", "public_notes"))
    denied = policy.decide(req(CAROL, "db.read", "public_notes"))
    line = POLICY.splitlines().index('effect = "deny"')  # the line of its [[rule]] header
    assert not denied and str(denied.denial("db.read", "public_notes")) == (
        f"db.read of 'public_notes' denied by the deny rule at <policy>:{line}")


def test_row_filters_resolve_to_the_caller() -> None:
    policy = loads(POLICY)
    assert policy.row_filters(req(OWNER, "db.read", "inbox")) is None  # the owner's rule has no filter
    assert policy.row_filters(req(CAROL, "db.write", "inbox")) == ({"from": CAROL},)
    # two rules match alice's read: a record is hers to read if it matches either
    assert policy.row_filters(req(ALICE, "db.read", "inbox", name="alice")) == (
        {"from": ALICE}, {"to": ALICE, "status": "new"})
    assert policy.row_filters(req(ALICE, "db.read", "public_notes")) is None
    rule = policy.rules[1]
    assert rule.where == RowFilter((("from", CALLER),)) and str(rule.where) == "from = $caller"


def test_an_expired_filter_rule_does_not_widen_or_narrow() -> None:
    text = POLICY.replace('where = { from = "$caller" }', 'where = { from = "$caller" }\nexpires = 2000-01-01T00:00:00Z')
    policy = loads(text)
    assert not policy.decide(req(CAROL, "db.write", "inbox"))
    assert policy.row_filters(req(ALICE, "db.read", "inbox", name="alice")) == ({"to": ALICE, "status": "new"},)


@pytest.mark.parametrize(("rule", "problem"), [
    ('effect = "deny"\nwho = "*"\nactions = ["db.read"]\nwhere = { from = "$caller" }',
     "'where': a row filter narrows what a rule allows: a deny rule cannot have one"),
    ('effect = "allow"\nwho = "*"\nactions = ["db.read", "fs.read"]\nwhere = { from = "$caller" }',
     "'where': a row filter applies to records: the rule's actions must all be db.* ones"),
    ('effect = "allow"\nwho = "*"\nactions = ["db.read"]\nwhere = { from = "$me" }',
     "'where': from: unknown variable '$me' (the one there is: \"$caller\", the caller's did)"),
    ('effect = "allow"\nwho = "*"\nactions = ["db.read"]\nwhere = { from = 1.5 }',
     "'where': from: a value is a string, an integer, a boolean or \"$caller\", not float"),
    ('effect = "allow"\nwho = "*"\nactions = ["db.read"]\nwhere = {}',
     "'where': must be a table of 1 to 8 FIELD = VALUE pairs"),
    ('effect = "allow"\nwho = "*"\nactions = ["db.read"]\nwhere = { "a b" = 1 }',
     "'where': 'a b' is not a field name"),
    ('effect = "allow"\nwho = "*"\nactions = ["db.drop"]', "unknown action 'db.drop'"),
])
def test_bad_row_filters_are_refused_with_their_line(rule: str, problem: str) -> None:
    with pytest.raises(PolicyError) as info:
        loads(f"version = 2\n\n[[rule]]\n{rule}\n", "policy.toml")
    assert info.value.line == 3 and problem in info.value.problem, str(info.value)
