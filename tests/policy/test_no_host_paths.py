"""Remote callers never see the worker's host paths (issue 12, finding 10).

A decision names its rule by the policy file's name within the peer
(``policy.toml:N``): in signed denials, in host-call errors a script can
catch, and in the reason a broken policy gives. The local CLI may show full
paths; that is tested in test_policy_cli.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox.trust import ExecHandler
from peerbox.wire import grant, make_request, verify_reply
from peerbox.policy import DenialCause, PolicyCache, loads
from peerbox.policy import Request as PolicyRequest

POLICY = """version = 1

[[rule]]
effect = "allow"
who = "alice"
actions = ["exec", "fs.read", "fs.write"]

[[rule]]
effect = "deny"
who = "*"
actions = ["fs.read"]
resources = ["secret/**"]
"""


def test_a_decision_names_the_file_within_the_peer(tmp_path: Path) -> None:
    file = tmp_path / "peers" / "bob" / "policy.toml"
    policy = loads(POLICY, str(file))
    d = policy.decide(PolicyRequest("did:key:z6MkA", "alice", "fs.read", "secret/k", "did:key:z6MkB", 0))
    assert not d.allowed and d.rule is not None
    assert (d.rule.file, d.rule.line, str(d.rule)) == ("policy.toml", 8, "policy.toml:8")
    assert d.reason == "denied by the deny rule at policy.toml:8"
    assert str(d.denial("fs.read", "secret/k")) == "fs.read of 'secret/k' denied by the deny rule at policy.toml:8"
    assert policy.file == str(file) and policy.name == "policy.toml"  # the operator still has the path


def test_a_broken_policy_reason_names_no_host_path_and_no_line(tmp_path: Path) -> None:
    file = tmp_path / "policy.toml"
    file.write_text(POLICY + 'bogus = 1\n')
    cache = PolicyCache(file)
    d = cache.get().decide(PolicyRequest("did:key:z6MkA", "alice", "exec", None, "x", 0))
    assert not d.allowed and d.rule is None and d.cause == DenialCause.POLICY_UNAVAILABLE
    assert d.reason == "the target's policy could not be loaded"
    assert str(d.denial("exec", None)) == "exec denied: the target's policy could not be loaded"
    # the operator's detail (the full path, the line, the problem) stays on the error object
    assert cache.error is not None and cache.get().load_error is cache.error
    assert cache.error.file == str(file) and cache.error.line is not None and "bogus" in cache.error.problem


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = peerbox.PeerStore(root)
        for name in ("alice", "bob", "carol"):
            self.store.init(name)
        (root / "peers" / "bob" / "policy.toml").write_text(POLICY)
        self.contexts = peerbox.Contexts(root)
        self.now = int(time.time())
        self.handler = ExecHandler(self.contexts.get("bob"), self.contexts.store, clock=lambda: self.now)

    def send(self, script: str, *, sender: str = "alice", caps: tuple[bytes, ...] = ()) -> Any:
        bob = self.store.get("bob").public_key
        req = make_request(self.store.get(sender).signing_key(), target=bob, script=script, caps=caps,
                           now=self.now)
        handled = self.handler.handle(req)
        assert handled.signed
        return verify_reply(handled.body, target=bob, request_bytes=req)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.handler.close()
    w.contexts.close()


def test_host_call_errors_a_script_catches_name_no_host_path(world: World) -> None:
    reply = world.send('let m = ""; try { fs::read("secret/k") } catch (e) { m = e.message } m')
    assert reply.ok and "policy.toml:8" in reply.value, reply.value
    assert str(world.root) not in reply.value
    reply = world.send('fs::read("secret/k")')
    assert not reply.ok and reply.error["kind"] == "denied"
    assert "policy.toml:8" in reply.error["message"] and str(world.root) not in str(reply.error)


def test_signed_denials_name_no_host_path(world: World) -> None:
    (world.root / "peers" / "bob" / "policy.toml").write_text(POLICY.replace(
        'actions = ["fs.read"]', 'actions = ["exec"]').replace('resources = ["secret/**"]\n', ""))
    reply = world.send("1")
    assert reply.denied and reply.error["rule"] == "policy.toml:8"
    assert str(world.root) not in str(reply.error)
    (world.root / "peers" / "bob" / "policy.toml").write_text("version = 3\n")
    reply = world.send("1")
    assert reply.denied and reply.error["message"] == "exec denied: the target's policy could not be loaded"
    assert reply.error["cause"] == "policy_unavailable" and reply.error["rule"] is None
    assert "policy.toml" not in str(reply.error) and "version" not in str(reply.error)


def test_a_broken_revocation_list_names_no_host_path(world: World) -> None:
    bob = world.store.get("bob")
    cap = grant(bob.signing_key(), audience=world.store.get("carol").public_key, subject=bob.public_key,
                grants=["exec"], now=world.now, ttl=60)
    (world.root / "peers" / "alice" / "revoked.json").write_text("{not json")
    reply = world.send("1", sender="carol", caps=(cap,))
    assert reply.denied and "revoked.json" in reply.error["message"]
    assert str(world.root) not in str(reply.error)
