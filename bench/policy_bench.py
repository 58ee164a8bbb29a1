"""Policy decision cost (issue 5): µs per ``Policy.decide`` for a realistic 20-rule policy.

``bench_policy(quick)`` returns ``[(label, µs per decision), ...]`` for the
allow and deny paths (an owner request, a friend's allowed write, a deny
rule that beats an allow, a default deny after scanning every rule, a
capability grant); ``bench/run.py`` shows it in ``make bench``. The target
is 5 µs per decision. Run alone: ``python bench/policy_bench.py [--quick]``.
"""

from __future__ import annotations

import sys
import time

from peerbox.wire._identity import KeyPair
from peerbox.policy import Request, compile_grants, loads, parse_grant

__all__ = ["bench_policy", "POLICY_TEXT"]

_DIDS = [KeyPair.from_seed(bytes([i]) * 32).did for i in range(1, 8)]
OWNER, ALICE, CAROL, DAVE, EVE, MALLORY, STRANGER = _DIDS


def _policy_text() -> str:
    rules = [
        ('allow', '"owner"', '["*"]', ''),
        ('deny', f'"{MALLORY}"', '["*"]', ''),
        ('deny', '"*"', '["fs.*"]', 'resources = ["secret/**", "keys/*.pem"]'),
        ('allow', '"group:friends"', '["exec"]', 'limits = { fuel = 50000000, timeout = 5 }'),
        ('allow', '"group:friends"', '["fs.read", "fs.list"]', 'resources = ["shared/**", "public/**"]'),
        ('allow', '"group:friends"', '["fs.write"]', 'resources = ["inbox/**"]'),
        ('allow', '"alice"', '["fs.write", "fs.delete"]', 'resources = ["alice/**"]'),
        ('allow', f'"{CAROL}"', '["fs.write"]', 'resources = ["carol/**", "drop/*.txt"]'),
        ('allow', '"*"', '["fs.read"]', 'resources = ["public/**"]'),
        ('allow', '"group:ops"', '["exec", "fs.*"]', 'resources = ["logs/**"]'),
        ('allow', '"group:ops"', '["exec"]', 'limits = { memory = 67108864 }'),
        ('allow', '"*"', '["module.import"]', 'resources = ["std/*", "notes"]'),
        ('deny', '"*"', '["module.import"]', 'resources = ["std/unsafe"]'),
        ('allow', f'"{DAVE}"', '["fs.read"]', 'resources = ["reports/**/*.csv"]'),
        ('allow', '"group:ops"', '["fs.list"]', 'resources = ["**"]'),
        ('deny', '"group:ops"', '["fs.delete"]', 'resources = ["logs/archive/**"]'),
        ('allow', f'"{EVE}"', '["exec"]', 'expires = 2020-01-01T00:00:00Z'),
        ('allow', '"bob"', '["fs.read"]', 'resources = ["bob/**"]'),
        ('allow', '"group:friends"', '["module.import"]', 'resources = ["friends/**"]'),
        ('deny', '"*"', '["fs.write"]', 'resources = ["public/**"]'),
    ]
    out = ["version = 1", "[groups]",
           f'friends = ["alice", "bob", "{CAROL}", "{DAVE}"]', f'ops = ["{DAVE}", "{EVE}"]']
    for effect, who, actions, extra in rules:
        out += ["[[rule]]", f'effect = "{effect}"', f"who = {who}", f"actions = {actions}", extra]
    return "\n".join(out) + "\n"


POLICY_TEXT = _policy_text()


def bench_policy(quick: bool) -> list[tuple[str, float]]:
    """µs per decision (best of a few rounds) for each request kind; ``quick`` runs far fewer."""
    policy = loads(POLICY_TEXT, "bench-policy.toml")
    now = time.time()
    grants = compile_grants([parse_grant("fs.write:outbox/**")])
    cases = [
        ("allow: owner fs.write",
         Request(OWNER, None, "fs.write", "notes/a.txt", OWNER, now), None, True),
        ("allow: friend fs.write inbox/**",
         Request(ALICE, "alice", "fs.write", "inbox/2024/m.txt", OWNER, now), None, True),
        ("allow: friend exec", Request(ALICE, "alice", "exec", None, OWNER, now), None, True),
        ("allow: capability grant",
         Request(STRANGER, None, "fs.write", "outbox/x", OWNER, now), grants, True),
        ("deny: rule beats allow (secret/**)", Request(ALICE, "alice", "fs.read", "secret/k", OWNER, now),
         None, False),
        ("deny: nothing allowed it",
         Request(STRANGER, None, "fs.delete", "inbox/a/b/c", OWNER, now), None, False),
        ("deny: non-canonical path", Request(ALICE, "alice", "fs.read", "shared/../secret", OWNER, now),
         None, False),
    ]
    n = 2_000 if quick else 100_000
    rounds = 1 if quick else 5
    out: list[tuple[str, float]] = []
    decide = policy.decide
    for label, req, g, want in cases:
        if decide(req, g).allowed is not want:
            raise AssertionError(f"{label}: wrong decision {decide(req, g)}")
        best = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(n):
                decide(req, g)
            best = min(best, time.perf_counter() - t0)
        out.append((label, best / n * 1e6))
    return out


if __name__ == "__main__":
    rows = bench_policy("--quick" in sys.argv[1:])
    width = max(len(label) for label, _ in rows)
    print(f"policy decisions, 20-rule policy (target ≤ 5 µs)\n{'request':<{width}}  µs/decision")
    for label, us in rows:
        print(f"{label:<{width}}  {us:11.2f}")
