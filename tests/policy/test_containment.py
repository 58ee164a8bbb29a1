"""Containment (attenuation) decided by peerbox.policy on its own glob semantics."""

from __future__ import annotations

import pytest

from peerbox.policy import (
    CONTAINMENT_WORK, FS_ACTIONS, Grant, PolicyError, WorkBudget, compile_grants, grants_within, loads,
    parse_capability_grant, parse_grant, pattern_within,
)
from peerbox.policy import Request as PolicyRequest

CONTAINMENT = [
    ("inbox/carol/**", "inbox/**", True),
    ("inbox/**", "inbox/carol/**", False),
    ("inbox/*.txt", "inbox/*", True),
    ("inbox/*", "inbox/*.txt", False),
    ("inbox/a.txt", "inbox/*.txt", True),
    ("inbox/a.txt", "inbox/**", True),
    ("inbox", "inbox/**", True),  # a trailing /** names the directory itself (as enforced)
    ("inbox/**", "inbox", False),
    ("inbox/**", "**", True),
    ("**", "inbox/**", False),
    ("**", "**", True),
    ("**", "*/**", False),  # "**" also names the root ""
    ("**", "**/*", False),  # issue 12, finding 5
    ("**/*", "**", True),
    ("*/**", "**/*", True),
    ("**/*", "*/**", True),
    ("a/**/b", "a/**", True),
    ("a/b", "a/**/b", True),
    ("a/*/b", "a/**/b", True),
    ("a/**/b", "a/*/b", False),
    ("**/x", "**", True),
    ("**/x", "x", False),
    ("a*b*c", "a*c", True),
    ("a*c", "a*b*c", False),
    ("*a*b*", "*b*", True),
    ("*b*", "*a*b*", False),
    ("*", "*", True),
    ("*/*", "**", True),
    ("*", "*/**", True),
    ("*", "**/*", True),
    ("notes", "notes", True),
    ("notes", "note*", True),
    ("notes2", "notes", False),
    ("inbox/*", "inbox/*/**", True),
    ("?", "*", True),
    ("*", "?", False),
    ("a?", "a*", True),
    ("a*", "a?", False),
    ("a", "?", True),
    ("??", "?*", True),
    ("?*", "??", False),
    (".x", ".?", True),
    ("*", ".*", False),
    ("cafe\u0301/x", "caf\u00e9/*", True),  # compared in NFC, as requests are
    ("caf\u00e9/x", "cafe\u0301/*", True),
]


@pytest.mark.parametrize(("child", "parent", "expected"), CONTAINMENT)
def test_containment_table(child: str, parent: str, expected: bool) -> None:
    assert pattern_within(child, parent) is expected


def test_finding_5_at_the_decision() -> None:
    """The parent grant cannot list the root; a delegated "**" could: so it is not within."""
    owner = "did:key:z6MkOwner"
    policy = loads('version = 1\n', "policy.toml")
    root_listing = PolicyRequest("did:key:z6MkCarol", None, "fs.list", "", owner, 0)
    assert not policy.decide(root_listing, compile_grants([parse_grant("fs.list:**/*")])).allowed
    assert policy.decide(root_listing, compile_grants([parse_grant("fs.list:**")])).allowed
    assert not pattern_within("**", "**/*")
    assert grants_within([Grant("fs.list", "**")], [Grant("fs.list", "**/*")]) == Grant("fs.list", "**")


def test_grants_within_actions_and_wildcards() -> None:
    assert grants_within([Grant("exec")], [Grant("exec")]) is None
    assert grants_within([Grant("exec")], [Grant("fs.read", "**")]) == Grant("exec")
    assert grants_within([Grant("fs.read", "a/**")], [Grant("fs.*", "**")]) is None
    assert grants_within([Grant("fs.*", "a/**")], [Grant("fs.read", "**")]) == Grant("fs.*", "a/**")
    parents = [Grant(a, "**") for a in FS_ACTIONS]
    assert grants_within([Grant("fs.*", "a/**")], parents) is None
    assert grants_within([Grant("fs.read", "x")], [Grant("fs.read")]) is None   # no pattern: all
    assert grants_within([Grant("fs.read")], [Grant("fs.read", "**")]) == Grant("fs.read")


def test_invalid_patterns_raise() -> None:
    for bad in ("", "/abs", "a//b", "a**", "**/**", "a/[b]", "x" * 1025, "a\x00"):
        with pytest.raises(ValueError):
            pattern_within(bad, "**")
        with pytest.raises(ValueError):
            pattern_within("a", bad)


def test_the_work_bound_fails_closed() -> None:
    child, parent = "*a*b*a*b*a*b*a*b*", "*b*a*b*a*b*a*b*a*"
    assert not pattern_within(child, parent, work=10)
    budget = WorkBudget(10)
    assert grants_within([Grant("fs.read", child)], [Grant("fs.read", parent)], budget=budget) is not None
    assert CONTAINMENT_WORK >= 100_000


def test_capability_grant_grammar() -> None:
    assert parse_capability_grant("exec") == Grant("exec")
    assert parse_capability_grant("fs.write:inbox/?.txt") == Grant("fs.write", "inbox/?.txt")
    assert parse_capability_grant("fs.read:cafe\u0301") == Grant("fs.read", "caf\u00e9")
    assert parse_capability_grant("logic.write:notes") == Grant("logic.write", "notes")
    for bad in ("fs.write", "exec:x", "fs.*:a", "*", "delegate", "nope:a", "fs.read:a//b", "fs.read:**/**",
                "fs.read:", 7, None):
        with pytest.raises(PolicyError):
            parse_capability_grant(bad)
