"""``peerbox/call`` through bob's real ExecHandler: a published function runs with bob's rights.

carol lives under another root (her key is on "her machine"); bob knows her
only through his root's ``peers.toml``. Everything is real: keys, envelopes,
the policy file, SQLite nonces, rate buckets and quota ledger, the compiler
and wasmtime. The handler's clock is fixed, so rates are deterministic.
"""

# ruff: noqa: E501  (scripts and expected messages read best on one line)

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

from peerbox.peer import Directory, Peer, PeerContext, PeerStore
from peerbox.trust import CallAdmitted, ExecHandler, Handled, Outcome
from peerbox.wire import KeyPair, Reply, grant, make_call_request, make_request, verify_reply

POLICY = """
version = 2

[[rule]]
effect = "allow"
who = "owner"
actions = ["*", "logic.*"]
"""

INBOX = """
export fn deliver(msg: string) {
    if !fs::exists("inbox") { fs::mkdir("inbox") }
    fs::write(`inbox/${caller.name}.txt`, `${caller.id}: ${msg}`);
    caller.name
}
export fn peek(name: string) { fs::read(`private/${name}`) }
export fn spin(n: i64) { let i = 0; while i < n { i += 1; } i }
export fn shout(msg) { print(`shouting ${msg}`); msg.to_upper() }
fn helper(x) { x }
private fn secret() { 42 }
"""

COUNTER = """
export fn bump(by: i64) {
    let n = if fs::exists("count") { parse_int(fs::read("count")) } else { 0 };
    fs::write("count", `${n + by}`);
    n + by
}
"""

CAROL_CALLS_DELIVER = '\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["call"]\nresources = ["inbox::deliver"]\n'


class World:
    """bob (root ``bob-root``, one ExecHandler with a fixed clock) and carol (root ``carol-root``,
    listed in bob's peers.toml by did only)."""

    def __init__(self, tmp: Path) -> None:
        self.store = PeerStore(tmp / "bob-root")
        self.bob = self.store.init("bob")
        self.carol = PeerStore(tmp / "carol-root").init("carol")
        Directory(self.store.root).add("carol", self.carol.did)
        self.bob.paths.policy.write_text(POLICY)
        self.module("inbox", INBOX)
        self.now = int(time.time())
        self.ctx = PeerContext(self.bob)
        self.handler = ExecHandler(self.ctx, self.store, clock=lambda: self.now)

    def key(self, who: str) -> KeyPair:
        return {"bob": self.bob, "carol": self.carol}[who].signing_key()

    def module(self, name: str, source: str) -> None:
        self.bob.paths.logic.mkdir(parents=True, exist_ok=True)
        (self.bob.paths.logic / f"{name}.rhai").write_text(source)

    def allow(self, extra: str) -> None:
        self.bob.paths.policy.write_text(POLICY + extra)

    def call(self, function: str, params: Any = None, *, sender: str = "carol", caps: tuple[bytes, ...] = (),
             limits: dict[str, int | float] | None = None) -> tuple[Handled, Reply]:
        module, _, fn = function.rpartition("::")
        req = make_call_request(self.key(sender), target=self.bob.public_key, module=module, function=fn,
                                params=params, caps=caps, limits=limits, now=self.now)
        handled = self.handler.handle_call(req)
        assert handled.signed, handled.error
        return handled, verify_reply(handled.body, target=self.bob.public_key, request_bytes=req)

    def exec(self, script: str, sender: str = "carol") -> tuple[Handled, Reply]:
        req = make_request(self.key(sender), target=self.bob.public_key, script=script, now=self.now)
        handled = self.handler.handle(req)
        assert handled.signed, handled.error
        return handled, verify_reply(handled.body, target=self.bob.public_key, request_bytes=req)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.handler.close()
    w.ctx.close()


def _read_bob(w: World, path: str) -> Any:
    """What bob's own script reads at ``path`` (None when it does not exist)."""
    _, reply = w.exec(f'if fs::exists("{path}") {{ fs::read("{path}") }} else {{ () }}', sender="bob")
    assert reply.ok, reply.error
    return reply.value


def test_a_published_function_runs_with_the_owners_rights(world: World) -> None:
    world.allow(CAROL_CALLS_DELIVER)  # carol may call deliver, and nothing else: no fs right at all
    handled, reply = world.call("inbox::deliver", {"msg": "hi"})
    assert handled.outcome is Outcome.OK and reply.ok, reply.error
    assert reply.value == "carol"  # caller.name comes from bob's peers.toml: carol is not a local peer
    assert _read_bob(world, "inbox/carol.txt") == f"{world.carol.did}: hi"  # caller.id is carol's verified did
    # by position too
    _, reply = world.call("inbox::deliver", ["again"])
    assert reply.ok and _read_bob(world, "inbox/carol.txt") == f"{world.carol.did}: again"
    # carol's own exec cannot write there: she holds no fs right
    world.allow(CAROL_CALLS_DELIVER + '\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["exec"]\n')
    _, reply = world.exec('fs::write("inbox/carol.txt", "forged")')
    assert not reply.ok and reply.error is not None and reply.error["kind"] == "denied"
    assert _read_bob(world, "inbox/carol.txt") == f"{world.carol.did}: again"


def test_the_owners_deny_rules_still_apply(world: World) -> None:
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["call"]\nresources = ["inbox::*"]\n'
                '\n[[rule]]\neffect = "deny"\nwho = "owner"\nactions = ["fs.read"]\nresources = ["private/**"]\n')
    world.exec('fs::mkdir("private"); fs::write("private/diary", "dear diary")', sender="bob")  # a write is not denied
    handled, reply = world.call("inbox::peek", {"name": "diary"})
    assert not reply.ok and reply.error is not None and reply.error["kind"] == "denied"
    rule = reply.error["rule"]
    assert rule is not None and rule.startswith("policy.toml:")
    assert reply.error["message"] == f"fs.read of 'private/diary' denied by the deny rule at {rule}"
    assert (reply.error["action"], reply.error["resource"], reply.error["cause"]) == (
        "fs.read", "private/diary", "rule")
    assert handled.outcome is Outcome.SCRIPT_ERROR and handled.denied_action == "fs.read"


def test_call_without_a_rule_is_a_signed_denial_naming_call(world: World) -> None:
    handled, reply = world.call("inbox::deliver", {"msg": "hi"})
    assert handled.outcome is Outcome.DENIED and handled.denied_action == "call"
    assert not reply.ok and reply.error is not None and reply.error["kind"] == "denied"
    assert reply.error == {"kind": "denied", "message": "call of 'inbox::deliver' denied: no rule allowed it",
                           "rule": None, "action": "call", "resource": "inbox::deliver", "cause": "no_rule"}
    assert _read_bob(world, "inbox/carol.txt") is None
    # a rule for another function does not let carol call this one
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["call"]\nresources = ["inbox::shout"]\n')
    handled, _ = world.call("inbox::deliver", {"msg": "hi"})
    assert handled.outcome is Outcome.DENIED


def test_glob_rule_inbox_star_allows_every_function_of_inbox(world: World) -> None:
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["call"]\nresources = ["inbox::*"]\n')
    _, reply = world.call("inbox::shout", {"msg": "hey"})
    assert reply.ok and reply.value == "HEY"
    assert reply.log == ("shouting hey",)  # what the function prints reaches the caller
    _, reply = world.call("inbox::deliver", {"msg": "x"})
    assert reply.ok
    world.module("other", "export fn f() { 1 }")
    handled, _ = world.call("other::f")
    assert handled.outcome is Outcome.DENIED  # inbox::* is inbox's functions only


def test_capability_grant_call_allows_it(world: World) -> None:
    token = grant(world.key("bob"), audience=world.carol.public_key, subject=world.bob.public_key,
                  grants=["call:inbox::deliver"], now=world.now, ttl=3600)
    _, reply = world.call("inbox::deliver", {"msg": "by token"}, caps=(token,))
    assert reply.ok and reply.value == "carol"
    handled, _ = world.call("inbox::shout", {"msg": "x"}, caps=(token,))  # the token names deliver only
    assert handled.outcome is Outcome.DENIED and handled.denied_action == "call"
    handled, reply = world.call("inbox::deliver", {"msg": "x"}, caps=(b"not a token",))
    assert handled.outcome is Outcome.DENIED and reply.error is not None
    assert reply.error["message"].startswith("call of 'inbox::deliver' denied: the capability is not a valid token: ")
    assert (reply.error["cause"], reply.error["capability"]) == ("capability", "bad_token")


@pytest.mark.parametrize("function", [
    "inbox::nothing",       # no such function
    "inbox::helper",        # a plain fn: visible to importers, not published
    "inbox::secret",        # private
    "absent::deliver",      # no such module
    "notes::f",             # exported by a shared/built-in module only (see below)
    "broken::f",            # a module that does not parse
])
def test_no_such_function_is_the_same_for_missing_private_unexported_and_shared(world: World,
                                                                                function: str) -> None:
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["call"]\n')  # every function
    world.module("broken", "export fn f( { 1 }")
    shared = world.store.root / "logic"
    shared.mkdir(exist_ok=True)
    (shared / "notes.rhai").write_text("export fn f() { 1 }\n")
    handled, reply = world.call(function)
    assert not reply.ok and reply.error is not None
    assert reply.error == {"kind": "no_such_function", "message": f"bob publishes no function {function}"}
    assert handled.outcome is Outcome.SCRIPT_ERROR and handled.kind == "no_such_function"


def test_bad_arguments_are_signed_and_nothing_runs(world: World) -> None:
    world.module("counter", COUNTER)
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["call"]\nresources = ["counter::*"]\n')
    _, reply = world.call("counter::bump", {"by": 2})
    assert reply.ok and reply.value == 2
    for params, message in [
        ({"by": "3"}, "counter::bump: argument 'by' must be i64, got string"),
        ({}, "counter::bump: missing argument 'by'"),
        ({"by": 1, "x": 2}, "counter::bump has no parameter 'x' (it takes by)"),
        ([1, 2], "counter::bump takes 1 argument (by), got 2"),
        (None, "counter::bump: missing argument 'by'"),
    ]:
        handled, reply = world.call("counter::bump", params)
        assert reply.error == {"kind": "bad_arguments", "message": message}
        assert handled.kind == "bad_arguments" and handled.outcome is Outcome.SCRIPT_ERROR
    assert _read_bob(world, "count") == "2"  # none of them ran


def test_limits_of_the_call_rule_cap_the_run(world: World) -> None:
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["call"]\nresources = ["inbox::spin"]\n'
                'limits = { timeout = 0.3 }\n')
    _, reply = world.call("inbox::spin", {"n": 10})
    assert reply.ok and reply.value == 10
    handled, reply = world.call("inbox::spin", {"n": 1 << 62})
    assert handled.outcome is Outcome.LIMIT and reply.error is not None
    assert reply.error["kind"] == "limit_timeout" and "0.3 s timeout" in reply.error["message"]
    # the caller may ask for less, never for more
    handled, reply = world.call("inbox::spin", {"n": 1 << 62}, limits={"fuel": 10_000})
    assert reply.error is not None and reply.error["kind"] == "limit_fuel"


def test_a_broken_module_is_unavailable_without_source_excerpt(world: World) -> None:
    world.allow(CAROL_CALLS_DELIVER)
    req = make_call_request(world.key("carol"), target=world.bob.public_key, module="inbox", function="deliver",
                            params={"msg": "hi"}, now=world.now)
    from peerbox.wire import open_call_request
    from peerbox.trust import check_call_request
    admitted = check_call_request(world.handler, open_call_request(req))
    assert isinstance(admitted, CallAdmitted)
    # between the check and the run the owner's module stops compiling (its secret in the source)
    world.module("inbox", 'export fn deliver(msg: string) { let SECRET_TOKEN = "hunter2"; fs::write( }\n')
    handled = world.handler.run(admitted)
    reply = verify_reply(handled.body, target=world.bob.public_key, request_bytes=req)
    assert reply.error == {"kind": "unavailable", "message": "inbox::deliver of bob cannot be compiled now"}
    assert b"hunter2" not in handled.body and b"SECRET" not in handled.body


def test_rights_never_rise_an_exec_import_runs_with_the_callers_rights(world: World) -> None:
    world.allow(CAROL_CALLS_DELIVER + '\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["exec", "module.import"]\n')
    handled, reply = world.exec('import "inbox" as i; i::deliver("via import")')
    assert not reply.ok and reply.error is not None and reply.error["kind"] == "denied"
    # its first host call (fs::exists("inbox")) is decided for carol, who may not read bob's files
    assert reply.error["message"] == "fs.read of 'inbox' denied: no rule allowed it"
    assert handled.denied_action == "fs.read"
    assert _read_bob(world, "inbox/carol.txt") is None


def test_a_call_nonce_cannot_be_replayed_as_exec_or_call(world: World) -> None:
    world.allow(CAROL_CALLS_DELIVER + '\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["exec"]\n')
    nonce = b"n" * 16
    call = make_call_request(world.key("carol"), target=world.bob.public_key, module="inbox", function="deliver",
                             params={"msg": "once"}, now=world.now, nonce=nonce)
    assert world.handler.handle_call(call).outcome is Outcome.OK
    again = world.handler.handle_call(call)
    assert again.outcome is Outcome.REJECTED and cbor2.loads(again.body)["error"]["kind"] == "replay"
    as_exec = make_request(world.key("carol"), target=world.bob.public_key, script="1", now=world.now, nonce=nonce)
    refused = world.handler.handle(as_exec)
    assert refused.outcome is Outcome.REJECTED and refused.kind == "replay"
    # an exec envelope is not a call
    wrong = world.handler.handle_call(make_request(world.key("carol"), target=world.bob.public_key, script="1",
                                                   now=world.now))
    assert wrong.outcome is Outcome.REJECTED and wrong.kind == "wrong_type"


def test_rate_limited_after_burst_and_allowed_after_the_interval(world: World) -> None:
    world.allow(CAROL_CALLS_DELIVER.rstrip("\n") + "\nlimits = { calls_per_minute = 6, burst = 2 }\n")
    for _ in range(2):
        assert world.call("inbox::deliver", {"msg": "x"})[0].outcome is Outcome.OK
    handled, reply = world.call("inbox::deliver", {"msg": "x"})
    assert handled.outcome is Outcome.RATE_LIMITED and handled.retry_after == 10
    assert reply.error is not None and reply.error["kind"] == "rate_limited"
    assert reply.error["rule"] == handled.rule and "policy.toml:" in str(handled.rule)
    assert "6 calls per minute, burst 2" in reply.error["message"] and "retry in 10 s" in reply.error["message"]
    world.now += 10  # one interval later: one more call
    assert world.call("inbox::deliver", {"msg": "x"})[0].outcome is Outcome.OK
    assert world.call("inbox::deliver", {"msg": "x"})[0].outcome is Outcome.RATE_LIMITED
    # the owner has no rate limit
    world.module("counter", COUNTER)
    for _ in range(5):
        assert world.call("counter::bump", {"by": 1}, sender="bob")[0].outcome is Outcome.OK


def test_exec_rules_rate_limit_exec_requests_too(world: World) -> None:
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["exec"]\nlimits = { calls_per_minute = 1, burst = 1 }\n')
    assert world.exec("1 + 1")[1].value == 2
    handled, reply = world.exec("1 + 1")
    assert handled.outcome is Outcome.RATE_LIMITED and handled.retry_after == 60
    assert reply.error is not None and reply.error["kind"] == "rate_limited"


def test_per_caller_quota_in_an_owner_call_charges_the_caller(world: World) -> None:
    world.module("drop", 'export fn put(name: string, body: string) { fs::write(`drop/${name}`, body); body.len() }\n')
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["call"]\nresources = ["drop::put"]\n'
                'limits = { max_bytes = 250, max_files = 10 }\n')
    world.exec('fs::mkdir("drop")', sender="bob")
    for i in range(2):
        _, reply = world.call("drop::put", {"name": f"{i}", "body": "x" * 100})
        assert reply.ok, reply.error
    handled, reply = world.call("drop::put", {"name": "2", "body": "x" * 100})
    assert not reply.ok and reply.error is not None and reply.error["kind"] == "quota_exceeded"
    assert "250 bytes" in reply.error["message"]
    assert _read_bob(world, "drop/2") is None  # nothing changed
    assert world.ctx.ledger.usage(world.carol.did) == (200, 2)  # the caller is charged, not the owner
    # bob deleting one of carol's files frees her quota
    world.exec('fs::delete("drop/0")', sender="bob")
    assert world.call("drop::put", {"name": "2", "body": "x" * 100})[1].ok
