"""Property test: the compiled matcher agrees with a slow, obviously correct reference evaluator."""

from __future__ import annotations

from typing import Any

import fnmatch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbox.wire import KeyPair
from peerbox.policy import ACTIONS, FS_ACTIONS, Grant, Request, loads

DIDS = [KeyPair.from_seed(bytes([i]) * 32).did for i in range(1, 5)]
OWNER = DIDS[0]
NAMES = ["alice", "bob", "carol"]
GROUPS = {"g1": ["alice", DIDS[2]], "g2": [DIDS[3], "bob"]}
SEGS = ["a", "b", "x.txt", ".h"]
PAT_SEGS = ["a", "b", "*", "a*", "*.txt", "?", "**", "**", "x.txt"]
ALIASES = {"*": [a for a in ACTIONS if not a.startswith("logic.")], "fs.*": list(FS_ACTIONS),
           "logic.*": ["logic.read", "logic.write"]}


def seg_match(pat: list[str], path: list[str]) -> bool:
    """Segment-wise glob: ``**`` is zero or more segments, others fnmatch one segment."""
    if not pat:
        return not path
    if pat[0] == "**":
        return any(seg_match(pat[1:], path[i:]) for i in range(len(path) + 1))
    return bool(path) and fnmatch.fnmatchcase(path[0], pat[0]) and seg_match(pat[1:], path[1:])


def ref_matches(rule: dict[str, Any], caller: str, name: str | None, action: str, res: str | None, now: float) -> bool:
    if "expires" in rule and rule["expires"] <= now:
        return False
    who_ok = False
    for w in rule["who"]:
        if w == "*" or (w == "owner" and caller == OWNER):
            who_ok = True
        elif w.startswith("group:"):
            who_ok |= caller in GROUPS[w[6:]] or (name is not None and name in GROUPS[w[6:]])
        else:
            who_ok |= w == caller or w == name
    if not who_ok:
        return False
    acts = [x for a in rule["actions"] for x in ALIASES.get(a, [a])]
    if action not in acts:
        return False
    if "resources" not in rule:
        return True
    if res is None:
        return False
    path = res.split("/") if res else []
    return any(seg_match(p.split("/"), path) for p in rule["resources"])


def reference(rules: list[dict[str, Any]], grants: list[Grant], caller: str, name: str | None, action: str,
              res: str | None, now: float) -> tuple[bool, int | None]:
    if res is not None and (res.startswith("/") or res.endswith("/") or "//" in res
                            or any(s in (".", "..") for s in res.split("/"))):
        return False, None
    hits = [i for i, r in enumerate(rules) if ref_matches(r, caller, name, action, res, now)]
    denies = [i for i in hits if rules[i]["effect"] == "deny"]
    if denies:
        return False, denies[0]
    allows = [i for i in hits if rules[i]["effect"] == "allow"]
    if allows:
        return True, allows[0]
    for g in grants:
        if action in ALIASES.get(g.action, [g.action]) and (
                g.pattern is None or (res is not None and seg_match(g.pattern.split("/"),
                                                                    res.split("/") if res else []))):
            return True, None
    return False, None


def pattern() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(PAT_SEGS), min_size=1, max_size=4).filter(
        lambda s: not any(a == b == "**" for a, b in zip(s, s[1:]))).map("/".join)


rule_st = st.fixed_dictionaries(
    {"effect": st.sampled_from(["allow", "allow", "deny"]),
     "who": st.lists(st.sampled_from(["*", "owner", *NAMES, *DIDS, "group:g1", "group:g2"]),
                     min_size=1, max_size=3),
     "actions": st.lists(st.sampled_from([*ACTIONS, "*", "fs.*", "logic.*"]), min_size=1, max_size=3)},
    optional={"resources": st.lists(pattern(), min_size=1, max_size=3),
              "expires": st.sampled_from([100.0, 200.0, 300.0])},
)
resource_st = st.one_of(
    st.none(),
    st.lists(st.sampled_from(SEGS), max_size=3).map("/".join),
    st.sampled_from(["a/../b", "./a", "a//b", "/a", "a/", ".."]),
)
grant_st = st.lists(st.builds(Grant, st.sampled_from(["fs.read", "fs.write", "fs.*", "module.import"]),
                              st.one_of(st.none(), pattern())), max_size=2)


def to_toml(rules: list[dict[str, Any]]) -> str:
    def q(x: str) -> str:
        return '"' + x + '"'
    out = ["version = 2", "[groups]"] + [f"{k} = [{', '.join(q(m) for m in v)}]" for k, v in GROUPS.items()]
    for r in rules:
        out += ["[[rule]]", f"effect = {q(r['effect'])}", f"who = [{', '.join(map(q, r['who']))}]",
                f"actions = [{', '.join(map(q, r['actions']))}]"]
        if "resources" in r:
            out.append(f"resources = [{', '.join(map(q, r['resources']))}]")
        if "expires" in r:
            from datetime import datetime, timezone
            out.append("expires = " + datetime.fromtimestamp(r["expires"], timezone.utc).isoformat())
    return "\n".join(out) + "\n"


def valid(r: dict[str, Any]) -> bool:
    acts = {x for a in r["actions"] for x in ALIASES.get(a, [a])}
    return "resources" not in r or bool(acts - {"exec", "delegate"})


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(rules=st.lists(rule_st, max_size=8).map(lambda rs: [r for r in rs if valid(r)]),
       reqs=st.lists(st.tuples(st.sampled_from(DIDS), st.sampled_from([None, *NAMES]),
                               st.sampled_from(ACTIONS), resource_st,
                               st.sampled_from([50.0, 150.0, 250.0, 350.0])),
                     min_size=1, max_size=40),
       grants=grant_st)
def test_matcher_equals_reference(rules: list[dict[str, Any]], reqs: list[tuple[Any, ...]], grants: list[Grant]) -> None:
    policy = loads(to_toml(rules), "p.toml")
    for caller, name, action, res, now in reqs:
        d = policy.decide(Request(caller, name, action, res, OWNER, now), grants)
        allowed, index = reference(rules, grants, caller, name, action, res, now)
        assert d.allowed == allowed, (caller, name, action, res, now)
        assert (d.rule.index if d.rule is not None else None) == index
