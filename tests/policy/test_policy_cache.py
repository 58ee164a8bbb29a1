"""PolicyCache: a changed file is used from the next get() on; a broken one denies everything."""

from __future__ import annotations

import os
from pathlib import Path

from peerbox.wire import KeyPair
from peerbox.policy import POLICY_UNAVAILABLE, DenialCause, PolicyCache, Request

OWNER = KeyPair.from_seed(b"\1" * 32).did
ALICE = KeyPair.from_seed(b"\2" * 32).did
ALLOW = 'version = 1\n[[rule]]\neffect = "allow"\nwho = "*"\nactions = ["exec"]\n'
DENY = 'version = 1\n[[rule]]\neffect = "deny"\nwho = "*"\nactions = ["exec"]\n'
REQ = Request(ALICE, None, "exec", None, OWNER, 1.0)


def test_reload_on_change_and_cache_when_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(ALLOW)
    cache = PolicyCache(path)
    assert cache.get().decide(REQ).allowed
    assert cache.get() is cache.get() and cache.loads == 1
    path.write_text(DENY)  # same size: the mtime/ctime tell
    os.utime(path, ns=(1, 1))
    assert not cache.get().decide(REQ).allowed and cache.loads == 2
    new = tmp_path / "new.toml"
    new.write_text(ALLOW)
    os.utime(new, ns=(1, 1))  # same mtime, same size, but another inode
    os.replace(new, path)
    assert cache.get().decide(REQ).allowed and cache.loads == 3


def test_broken_file_denies_everything_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(ALLOW + 'who2 = "x"\n')
    cache = PolicyCache(path)
    policy = cache.get()
    d = policy.decide(REQ)
    # the reason reaches remote callers: no host path, no line of the file, only that it does not load
    assert not d.allowed and d.reason == POLICY_UNAVAILABLE and d.cause is DenialCause.POLICY_UNAVAILABLE
    assert cache.error is not None and cache.error.line == 2 and cache.error.file == str(path)
    assert policy.load_error is cache.error  # the operator's detail, on the policy too
    assert cache.get() is policy  # not re-read while unchanged
    path.write_text(ALLOW)
    assert cache.get().decide(REQ).allowed and cache.error is None


def test_missing_file(tmp_path: Path) -> None:
    cache = PolicyCache(tmp_path / "nope.toml")
    d = cache.get().decide(REQ)
    assert not d.allowed and d.reason == POLICY_UNAVAILABLE
    assert cache.error is not None and "missing" in cache.error.problem
    (tmp_path / "nope.toml").write_text(ALLOW)
    assert cache.get().decide(REQ).allowed
