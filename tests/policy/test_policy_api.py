"""peerbox.policy's public surface: exactly the documented names, each importable."""

from __future__ import annotations

import peerbox.policy

EXPECTED = {
    "load", "loads", "Policy", "PolicyCache", "PolicyError", "Problem", "Request", "Decision", "RuleRef",
    "RuleSpec", "Grant", "GrantSet", "parse_grant", "compile_grants", "PolicyLimits", "ACTIONS",
    "FS_ACTIONS", "RESOURCE_ACTIONS", "ACTION_ALIASES",
    "NOTHING_ALLOWED", "MAX_POLICY_BYTES", "glob_problem", "is_canonical", "parse_capability_grant",
    "CAPABILITY_ACTIONS", "pattern_within", "grants_within", "WorkBudget", "CONTAINMENT_WORK", "NORMAL_FORM",
    "loads_bounded", "TomlTooComplex",
}


def test_all_is_exact_and_importable() -> None:
    assert set(peerbox.policy.__all__) == EXPECTED
    assert len(peerbox.policy.__all__) == len(EXPECTED)
    for name in EXPECTED:
        assert getattr(peerbox.policy, name) is not None


def test_policy_error_is_a_peerbox_error() -> None:
    assert issubclass(peerbox.policy.PolicyError, peerbox.Error)
