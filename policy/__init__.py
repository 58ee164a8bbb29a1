"""peerbox.policy: declarative per-peer policies, compiled to a fast matcher.

::

    from peerbox.policy import load, Request
    policy = load("peers/bob/policy.toml")            # raises PolicyError (file:line: problem)
    d = policy.decide(Request(caller_did, "alice", "fs.write", "inbox/a.txt", owner_did, now))
    d.allowed, d.rule, d.reason                        # rule: RuleRef(file, line, effect) or None
    str(d.denial("fs.write", "inbox/a.txt"))  # "fs.write of 'inbox/a.txt' denied: no rule allowed it"
    policy.limits_for(Request(caller_did, "alice", "exec", None, owner_did, now))   # PolicyLimits
    policy.rates_for(Request(caller_did, "carol", "call", "inbox::deliver", owner_did, now))  # RateLimits
    cache = PolicyCache(path); cache.get()             # reloaded when the file changes; deny-all if broken

Deny by default; any matching deny rule beats every allow (Cedar semantics);
capability grants allow what they name, still under every deny rule. See
``_parse`` for the file format and ``_glob`` for the pattern syntax; the
action each host call needs is a column of ``peerbox.hostcalls.HOST_CALLS``.

This package is the one owner of grant semantics: actions, grant parsing
(:func:`parse_grant` for policies, :func:`parse_capability_grant` for
tokens), globs, matching and containment (:func:`pattern_within`,
:func:`grants_within`, decided on the same compiled globs that enforce
grants). Capability tokens (:mod:`peerbox.wire`) only sign, verify and chain
with them.
Patterns and resources are compared in Unicode :data:`NORMAL_FORM`, the
form request paths are normalised to.

It also owns the crypto-free half of ``did:key`` (base58btc, the multicodec
prefix, the syntax: :func:`key_bytes_from_did`, :func:`did_from_key_bytes`),
which policies need to name principals. These names are exported here and
only here; :mod:`peerbox.wire` builds keys on them and adds only the curve
checks (``public_key_from_did``, ``did_from_public_key``, ``KeyPair``).
"""

from __future__ import annotations

from ._cache import PolicyCache
from ._didkey import (
    DID_KEY_PREFIX,
    ED25519_PUB_MULTICODEC,
    MAX_DID_LENGTH,
    PUBLIC_KEY_SIZE,
    DidSyntaxError,
    b58decode,
    b58encode,
    did_error,
    did_from_key_bytes,
    key_bytes_from_did,
)
from ._contain import CONTAINMENT_WORK, WorkBudget, grants_within, pattern_within
from ._glob import NORMAL_FORM, glob_problem, is_canonical
from ._grants import (
    CAPABILITY_ACTIONS, GrantSet, compile_grants, expand_legacy, parse_capability_grant, parse_grant,
)
from ._match import NOTHING_ALLOWED, POLICY_UNAVAILABLE, Policy, load, loads
from ._model import (
    ACTION_ALIASES,
    ACTIONS,
    CALLER,
    DB_ACTIONS,
    FS_ACTIONS,
    LEGACY_WRITE,
    POLICY_VERSIONS,
    RESOURCE_ACTIONS,
    Decision,
    DenialCause,
    Denied,
    Grant,
    PolicyError,
    PolicyLimits,
    Problem,
    RateLimit,
    Request,
    RowFilter,
    RuleRef,
    show_resource,
)
from ._parse import MAX_POLICY_BYTES, RuleSpec
from ._toml import TomlTooComplex, loads_bounded

__all__ = [
    "loads_bounded",
    "TomlTooComplex",
    "load",
    "loads",
    "Policy",
    "PolicyCache",
    "PolicyError",
    "Problem",
    "Request",
    "Decision",
    "Denied",
    "DenialCause",
    "show_resource",
    "RuleRef",
    "RuleSpec",
    "Grant",
    "GrantSet",
    "parse_grant",
    "compile_grants",
    "PolicyLimits",
    "RateLimit",
    "LEGACY_WRITE",
    "POLICY_VERSIONS",
    "expand_legacy",
    "ACTIONS",
    "FS_ACTIONS",
    "DB_ACTIONS",
    "CALLER",
    "RowFilter",
    "RESOURCE_ACTIONS",
    "ACTION_ALIASES",
    "NOTHING_ALLOWED",
    "POLICY_UNAVAILABLE",
    "MAX_POLICY_BYTES",
    "glob_problem",
    "is_canonical",
    "parse_capability_grant",
    "CAPABILITY_ACTIONS",
    "pattern_within",
    "grants_within",
    "WorkBudget",
    "CONTAINMENT_WORK",
    "NORMAL_FORM",
    "DidSyntaxError",
    "key_bytes_from_did",
    "did_from_key_bytes",
    "did_error",
    "b58encode",
    "b58decode",
    "DID_KEY_PREFIX",
    "ED25519_PUB_MULTICODEC",
    "PUBLIC_KEY_SIZE",
    "MAX_DID_LENGTH",
]
