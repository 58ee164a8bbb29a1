"""peerbox.policy's public surface: exactly the documented names, each importable."""

from __future__ import annotations

import peerbox.policy

EXPECTED = {
    "load", "loads", "Policy", "PolicyCache", "PolicyError", "Problem", "Request", "Decision", "RuleRef",
    "RuleSpec", "Grant", "GrantSet", "parse_grant", "compile_grants", "PolicyLimits", "ACTIONS",
    "FS_ACTIONS", "DB_ACTIONS", "CALLER", "RowFilter", "RESOURCE_ACTIONS", "ACTION_ALIASES",
    "NOTHING_ALLOWED", "POLICY_UNAVAILABLE", "Denied", "DenialCause", "show_resource", "MAX_POLICY_BYTES", "glob_problem", "is_canonical", "parse_capability_grant",
    "CAPABILITY_ACTIONS", "pattern_within", "grants_within", "WorkBudget", "CONTAINMENT_WORK", "NORMAL_FORM",
    "loads_bounded", "TomlTooComplex",
    "RateLimit", "LEGACY_WRITE", "POLICY_VERSIONS", "expand_legacy",
    # did:key without crypto (peerbox.wire's identity module builds on these)
    "DidSyntaxError", "key_bytes_from_did", "did_from_key_bytes", "did_error", "b58encode", "b58decode",
    "DID_KEY_PREFIX", "ED25519_PUB_MULTICODEC", "PUBLIC_KEY_SIZE", "MAX_DID_LENGTH",
}


def test_all_is_exact_and_importable() -> None:
    assert set(peerbox.policy.__all__) == EXPECTED
    assert len(peerbox.policy.__all__) == len(EXPECTED)
    for name in EXPECTED:
        assert getattr(peerbox.policy, name) is not None


def test_policy_error_is_a_peerbox_error() -> None:
    assert issubclass(peerbox.policy.PolicyError, peerbox.Error)
