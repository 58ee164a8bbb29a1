"""A signed request, end to end in a peer's context: what the caller gets back, signed or not."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

import peerbox
from peerbox.trust import ExecHandler
from peerbox.wire import REVOCATION_FILE, RevocationList, delegate, grant, make_request, verify_reply

BOB_POLICY = """
version = 1
[[rule]]
effect = "allow"
who = "owner"
actions = ["*"]

[[rule]]
effect = "allow"
who = "alice"
actions = ["exec"]
limits = { timeout = 1.0 }

[[rule]]
effect = "allow"
who = "alice"
actions = ["fs.write", "fs.list"]
resources = ["inbox/**"]

[[rule]]
effect = "deny"
who = "*"
actions = ["fs.*"]
resources = ["inbox/secret/**"]
"""


class World:
    def __init__(self, root: Path) -> None:
        self.store = peerbox.PeerStore(root)
        for name in ("alice", "bob", "carol"):
            self.store.init(name)
        self.bob_dir = root / "peers" / "bob"
        (self.bob_dir / "policy.toml").write_text(BOB_POLICY)
        self.contexts = peerbox.Contexts(root)
        self.now = int(time.time())
        self.handler = ExecHandler(self.contexts.get("bob"), self.contexts.store, clock=lambda: self.now)

    def key(self, name: str) -> Any:
        return self.store.get(name).signing_key()

    def send(self, script: str, *, sender: str = "alice", caps: tuple[bytes, ...] = (),
             limits: dict[str, Any] | None = None) -> tuple[Any, bytes]:
        bob = self.store.get("bob").public_key
        req = make_request(self.key(sender), target=bob, script=script, caps=caps, limits=limits,
                           now=self.now)
        handled = self.handler.handle(req)
        if not handled.signed:
            return handled, req
        reply = verify_reply(handled.body, target=bob, request_bytes=req)
        return (handled, reply), req


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.handler.close()
    w.contexts.close()


def test_allowed_script_runs_in_the_targets_context_and_the_reply_is_signed(world: World) -> None:
    (handled, reply), _ = world.send('fs::mkdir("inbox"); fs::write("inbox/a.txt", caller.name); '
                                     '[fs::list("inbox"), target.name]')
    assert handled.outcome == "ok" and reply.ok
    assert reply.value == [["a.txt"], "bob"]
    assert reply.usage["peak_memory"] >= 64 << 10 and reply.usage["wall_ms"] >= 0
    assert (world.bob_dir / "files" / "inbox" / "a.txt").read_text() == "alice"


def test_exec_does_not_imply_file_access(world: World) -> None:
    (handled, reply), _ = world.send('let r = ""; try { fs::read("diary.txt") } catch (e) { r = e.kind } r')
    assert reply.ok and reply.value == "denied"
    (handled, reply), _ = world.send('fs::read("diary.txt")')
    assert handled.outcome == "script_error"
    assert reply.error["kind"] == "denied"
    assert reply.error["message"] == "fs.read of 'diary.txt' denied: no rule allowed it"
    assert (reply.error["action"], reply.error["resource"], reply.error["rule"], reply.error["cause"]) == (
        "fs.read", "diary.txt", None, "no_rule")
    assert handled.denied_action == "fs.read"


def test_a_deny_rule_beats_an_allow_at_every_host_call(world: World) -> None:
    (handled, reply), _ = world.send('fs::mkdir("inbox/secret")')
    assert not reply.ok and reply.error["kind"] == "denied"
    rule = reply.error["rule"]
    assert rule is not None and rule.startswith("policy.toml:")
    assert reply.error["message"] == f"fs.mkdir of 'inbox/secret' denied by the deny rule at {rule}"
    assert "no rule allowed it" not in reply.error["message"]
    assert not (world.bob_dir / "files" / "inbox" / "secret").exists()


def test_a_caller_without_exec_gets_a_signed_denial_naming_why(world: World) -> None:
    (handled, reply), _ = world.send("1 + 1", sender="carol")
    assert handled.outcome == "denied" and reply.denied
    assert reply.error["message"] == "exec denied: no rule allowed it"
    assert (reply.error["action"], reply.error["resource"], reply.error["rule"]) == ("exec", None, None)


def test_policy_limits_cap_the_run(world: World) -> None:
    (handled, reply), _ = world.send("loop {}", limits={"timeout": 30})
    assert handled.outcome == "limit"
    assert reply.error["kind"] == "limit_timeout"
    assert "1.0 s" in reply.error["message"]


def test_replay_and_forgery_are_rejected_unsigned(world: World) -> None:
    (handled, _), req = world.send("1")
    assert handled.outcome == "ok"
    again = world.handler.handle(req)
    assert again.outcome == "rejected" and not again.signed
    assert cbor2.loads(again.body)["error"]["kind"] == "replay"
    forged = bytearray(make_request(world.key("alice"), target=world.store.get("bob").public_key,
                                    script="2", now=world.now))
    forged[-1] ^= 1
    bad = world.handler.handle(bytes(forged))
    assert bad.outcome == "rejected" and cbor2.loads(bad.body)["error"]["kind"] == "bad_signature"


def test_a_changed_policy_applies_from_the_next_request(world: World) -> None:
    (handled, _), _ = world.send("1", sender="carol")
    assert handled.outcome == "denied"
    policy = world.bob_dir / "policy.toml"
    policy.write_text(BOB_POLICY + '\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["exec"]\n')
    (handled, reply), _ = world.send("40 + 2", sender="carol")
    assert handled.outcome == "ok" and reply.value == 42


def test_a_broken_policy_refuses_everything_without_showing_the_file(world: World) -> None:
    (world.bob_dir / "policy.toml").write_text('version = 1\n[[rule]]\neffect = "allow"\nwho = "alice"\n'
                                               'actions = ["fs.exec"]\n')
    (handled, reply), _ = world.send("1")
    assert handled.outcome == "denied"
    assert reply.error["message"] == "exec denied: the target's policy could not be loaded"
    assert "fs.exec" not in str(reply.error) and "policy.toml" not in str(reply.error)
    assert world.handler.policy.error is not None and "fs.exec" in world.handler.policy.error.problem


def test_capabilities_grant_what_they_name_and_die_when_revoked(world: World) -> None:
    bob, alice, carol = (world.store.get(n) for n in ("bob", "alice", "carol"))
    cap = grant(world.key("bob"), audience=alice.public_key, subject=bob.public_key,
                grants=["exec", "fs.write:shared/**", "fs.mkdir:shared/**", "fs.read:shared/**"], now=world.now, ttl=3600)
    sub = delegate(cap, world.key("alice"), audience=carol.public_key,
                   grants=["exec", "fs.write:shared/carol/**", "fs.mkdir:shared/carol/**"], now=world.now, ttl=600)
    script = 'fs::mkdir("shared/carol"); fs::write("shared/carol/n.txt", "hi"); "done"'
    (handled, reply), _ = world.send(script, sender="carol", caps=(sub,))
    assert handled.outcome == "ok" and reply.value == "done"
    (handled, reply), _ = world.send('fs::write("shared/x.txt", "no")', sender="carol", caps=(sub,))
    assert reply.error["kind"] == "denied"  # beyond the attenuated grant
    (handled, reply), _ = world.send('fs::write("inbox/secret/x", "no")', sender="alice", caps=(cap,))
    assert reply.error["kind"] == "denied"  # grants never beat a deny rule
    RevocationList(alice.paths.dir / REVOCATION_FILE).revoke(sub)
    (handled, reply), _ = world.send("1", sender="carol", caps=(sub,))
    assert handled.outcome == "denied" and reply.error["capability"] == "revoked"
    assert reply.error["message"].startswith("exec denied: link 1 of the capability chain is revoked (token id ")
    # a capability addressed to someone else proves nothing for this caller
    (handled, reply), _ = world.send("1", sender="carol", caps=(cap,))
    assert handled.outcome == "denied" and reply.error["capability"] == "wrong_audience"
    assert reply.error["message"] == f"exec denied: the capability is addressed to {alice.did}, not to the caller {carol.did}"


def test_incoming_scripts_import_only_what_the_policy_allows(world: World) -> None:
    logic = world.bob_dir / "logic"
    (logic / "greet.rhai").write_text('fn hello(who) { `hello ${who}` }')
    (logic / "admin.rhai").write_text('fn wipe() { "wiped" }')
    policy = world.bob_dir / "policy.toml"
    policy.write_text(BOB_POLICY + '\n[[rule]]\neffect = "allow"\nwho = "alice"\n'
                      'actions = ["module.import"]\n'
                      'resources = ["greet"]\n')
    (handled, reply), _ = world.send('import "greet" as g; g::hello("alice")')
    assert handled.outcome == "ok" and reply.value == "hello alice"
    (handled, reply), _ = world.send('import "admin" as a; a::wipe()')
    assert handled.outcome == "script_error" and reply.error["kind"] == "compile_error"
    # refused exactly like a module that does not exist: no probing
    assert "module 'admin' not found" in reply.error["message"]


def test_a_peer_the_policy_lets_delegate_may_issue_root_capabilities(world: World) -> None:
    bob, alice, carol = (world.store.get(n) for n in ("bob", "alice", "carol"))
    root = grant(world.key("alice"), audience=carol.public_key, subject=bob.public_key,
                 grants=["exec", "fs.list:inbox/**"], now=world.now, ttl=600)
    (handled, reply), _ = world.send('fs::mkdir("inbox")', sender="carol", caps=(root,))
    assert handled.outcome == "denied" and reply.error["capability"] == "not_issued_by_subject"
    assert reply.error["message"] == (f"exec denied: the capability has an unknown issuer: {alice.did} may not "
                                      "issue capabilities for the target")
    (world.bob_dir / "policy.toml").write_text(
        BOB_POLICY + '\n[[rule]]\neffect = "allow"\nwho = "alice"\nactions = ["delegate"]\n')
    (handled, reply), _ = world.send('fs::list("")', sender="carol", caps=(root,))
    # fs.list of "" is not granted
    assert handled.outcome == "script_error" and reply.error["kind"] == "denied"
    (handled, reply), _ = world.send('let r = []; try { fs::list("inbox") } catch (e) { r.push(e.kind) } r',
                                     sender="carol", caps=(root,))
    assert handled.outcome == "ok" and reply.value in ([], ["not_found"])
