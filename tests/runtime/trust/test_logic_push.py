"""Remote logic updates, sans sockets: the ``peerbox/logic`` envelope and ``ExecHandler.handle_logic``.

The envelope half checks what a worker refuses before it decides anything
(kinds of :class:`~peerbox.wire._cose.EnvelopeError`); the handler half checks
who may install what (owner, capability, policy rule), that a refused
update changes nothing, and that the next request of the *same* handler
runs the new version.
"""

# ruff: noqa: E501  (scripts and expected messages read best on one line)

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

from peerbox.wire._caps import grant
from peerbox.wire._cbor_strict import EnvelopeError
from peerbox.peer._context import PeerContext
from peerbox.wire._cose import sign1
from peerbox.wire._envelope import make_request, verify_reply, verify_request
from peerbox.trust._exec import ExecHandler, Handled
from peerbox.trust._outcome import Outcome
from peerbox.peer import Version, make_statement, open_statement, sha256_hex
from peerbox.wire._identity import KeyPair
from peerbox.peer._logic import MAX_MODULE_SIZE, PeerLogic
from peerbox.trust._logic_push import TYP_LOGIC, make_logic_request, open_logic_request, verify_logic_request
from peerbox.peer._peers import Peer, PeerStore

V1 = 'fn deliver(text) { `v1: ${text}` }\n'
V2 = 'fn deliver(text) { `v2: ${text}` }\n'
BROKEN = 'fn deliver(text) {\n    let x = ;\n}\n'

BOB_POLICY = """
version = 1

[[rule]]
effect = "allow"
who = "owner"
actions = ["*", "logic.*"]

[[rule]]
effect = "allow"
who = "alice"
actions = ["exec"]
"""

ALICE_IMPORTS = '\n[[rule]]\neffect = "allow"\nwho = "alice"\nactions = ["module.import"]\n'


class World:
    """bob hosted by one ExecHandler (a fixed clock); alice and carol are other local peers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = PeerStore(root)
        self.bob, self.alice, self.carol = (self.store.init(n) for n in ("bob", "alice", "carol"))
        self.bob.paths.policy.write_text(BOB_POLICY)
        self.now = int(time.time())
        self.ctx = PeerContext(self.bob)
        self.handler = ExecHandler(self.ctx, self.store, clock=lambda: self.now)

    def peer(self, name: str) -> Peer:
        return {"bob": self.bob, "alice": self.alice, "carol": self.carol}[name]

    def key(self, name: str) -> KeyPair:
        return self.peer(name).signing_key()

    def allow(self, extra: str) -> None:
        self.bob.paths.policy.write_text(BOB_POLICY + extra)

    def live(self, module: str) -> str | None:
        path = self.bob.paths.logic / f"{module}.rhai"
        return path.read_text() if path.exists() else None

    def push(self, sender: str, module: str, source: str, *, caps: tuple[bytes, ...] = ()) -> tuple[Handled, Any]:
        req = make_logic_request(self.key(sender), target=self.bob.public_key, module=module, source=source,
                                 caps=caps, now=self.now)
        return self.deliver(req)

    def deliver(self, req: bytes) -> tuple[Handled, Any]:
        handled = self.handler.handle_logic(req)
        if not handled.signed:
            return handled, cbor2.loads(handled.body)
        return handled, verify_reply(handled.body, target=self.bob.public_key, request_bytes=req)

    def exec(self, script: str, sender: str = "bob") -> tuple[Handled, Any]:
        req = make_request(self.key(sender), target=self.bob.public_key, script=script, now=self.now)
        handled = self.handler.handle(req)
        assert handled.signed, handled.error
        return handled, verify_reply(handled.body, target=self.bob.public_key, request_bytes=req)

    def cap(self, grants: list[str], *, to: str = "carol") -> bytes:
        return grant(self.key("bob"), audience=self.peer(to).public_key, subject=self.bob.public_key,
                     grants=grants, now=self.now, ttl=3600)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.handler.close()
    w.ctx.close()


def _hand_built(key: KeyPair, *, target: bytes, now: int, module: str = "inbox", source: str = V1,
                statement: bytes | None = None, **fields: Any) -> bytes:
    """A logic envelope signed by ``key`` with exactly the fields given (no checks on the way)."""
    payload: dict[str, Any] = {
        "v": 1, "typ": TYP_LOGIC, "caller": key.public_key, "target": target, "nonce": os.urandom(16),
        "iat": now, "exp": now + 300, "module": module, "source": source,
        "statement": statement if statement is not None else make_statement(
            key, peer=target, module=module, source=source, now=now),
    }
    payload.update(fields)
    return sign1(payload, key)


def _kind(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(EnvelopeError) as info:
        fn(*args, **kwargs)
    return info.value.kind


# ------------------------------------------------------------------ the envelope


def test_a_logic_request_round_trips(world: World) -> None:
    caps = (world.cap(["logic.write:inbox"]),)
    req = make_logic_request(world.key("carol"), target=world.bob.public_key, module="inbox", source=V2,
                             caps=caps, now=world.now)
    got = verify_logic_request(req, target=world.bob.public_key, now=world.now, nonces=None)
    assert (got.caller, got.target, got.module, got.source, got.caps) == (
        world.carol.public_key, world.bob.public_key, "inbox", V2, caps)
    assert got.iat == world.now and got.exp == world.now + 300 and got.data == req
    # "peer:inbox" names the same module: the envelope carries the bare name
    req = make_logic_request(world.key("bob"), target=world.bob.public_key, module="peer:inbox", source=V2,
                             now=world.now)
    assert open_logic_request(req).module == "inbox"


def test_a_logic_request_is_not_an_exec_request_and_vice_versa(world: World) -> None:
    bob = world.bob.public_key
    logic = make_logic_request(world.key("bob"), target=bob, module="inbox", source=V1, now=world.now)
    exec_req = make_request(world.key("bob"), target=bob, script="1", now=world.now)
    assert _kind(verify_request, logic, target=bob, now=world.now, nonces=None) == "wrong_type"
    assert _kind(verify_logic_request, exec_req, target=bob, now=world.now, nonces=None) == "wrong_type"
    # and through the handler's two doors
    handled = world.handler.handle(logic)
    assert handled.outcome == "rejected" and handled.error is not None and handled.error["kind"] == "wrong_type"
    handled, body = world.deliver(exec_req)
    assert handled.outcome == "rejected" and body["error"]["kind"] == "wrong_type"


def test_a_replayed_logic_request_is_rejected_unsigned(world: World) -> None:
    req = make_logic_request(world.key("bob"), target=world.bob.public_key, module="inbox", source=V1,
                             now=world.now)
    handled, reply = world.deliver(req)
    assert handled.outcome == "ok" and reply.ok
    again, body = world.deliver(req)
    assert again.outcome == "rejected" and not again.signed
    assert body["error"]["kind"] == "replay"
    assert len(PeerLogic(world.bob).versions("inbox")) == 1  # installed once, not twice


def test_an_expired_or_misaddressed_request_is_refused(world: World) -> None:
    req = make_logic_request(world.key("bob"), target=world.bob.public_key, module="inbox", source=V1,
                             now=world.now, ttl=60)
    assert _kind(verify_logic_request, req, target=world.bob.public_key, now=world.now + 60, nonces=None) == "expired"
    assert _kind(verify_logic_request, req, target=world.alice.public_key, now=world.now, nonces=None) == "wrong_target"
    to_alice = make_logic_request(world.key("bob"), target=world.alice.public_key, module="inbox", source=V1,
                                  now=world.now)
    handled, body = world.deliver(to_alice)
    assert handled.outcome == "rejected" and body["error"]["kind"] == "wrong_target"
    assert world.live("inbox") is None


def test_tampered_bytes_fail_the_signature(world: World) -> None:
    req = bytearray(make_logic_request(world.key("bob"), target=world.bob.public_key, module="inbox",
                                       source=V1, now=world.now))
    req[-1] ^= 1
    assert _kind(open_logic_request, bytes(req)) == "bad_signature"
    handled, body = world.deliver(bytes(req))
    assert handled.outcome == "rejected" and body["error"]["kind"] == "bad_signature"
    assert world.live("inbox") is None


@pytest.mark.parametrize("mismatch", ["module", "source", "target", "signer", "time", "remove"])
def test_a_statement_that_is_not_the_callers_for_this_install_is_refused(world: World, mismatch: str) -> None:
    bob, carol = world.bob.public_key, world.carol.public_key
    key = world.key("bob")
    st = {
        "module": make_statement(key, peer=bob, module="notes", source=V2, now=world.now),
        "source": make_statement(key, peer=bob, module="inbox", source=V1, now=world.now),
        "target": make_statement(key, peer=carol, module="inbox", source=V2, now=world.now),
        "signer": make_statement(world.key("alice"), peer=bob, module="inbox", source=V2, now=world.now),
        "time": make_statement(key, peer=bob, module="inbox", source=V2, now=world.now - 10),
        "remove": make_statement(key, peer=bob, module="inbox", source=V2, now=world.now, remove=True),
    }[mismatch]
    req = _hand_built(key, target=bob, now=world.now, module="inbox", source=V2, statement=st)
    assert _kind(open_logic_request, req) == "bad_statement"
    handled, body = world.deliver(req)
    assert handled.outcome == "rejected" and body["error"]["kind"] == "bad_statement"
    assert world.live("inbox") is None and PeerLogic(world.bob).versions("inbox") == []


def test_a_statement_that_is_not_a_statement_is_refused(world: World) -> None:
    key = world.key("bob")
    bogus = make_request(key, target=world.bob.public_key, script="1", now=world.now)
    req = _hand_built(key, target=world.bob.public_key, now=world.now, statement=bogus)
    assert _kind(open_logic_request, req) == "bad_statement"


def test_a_hand_built_correct_envelope_is_accepted(world: World) -> None:
    # the control for the hand-built refusals above: the same construction, consistent, installs
    req = _hand_built(world.key("bob"), target=world.bob.public_key, now=world.now, source=V2)
    handled, reply = world.deliver(req)
    assert handled.outcome == "ok" and reply.ok and world.live("inbox") == V2


@pytest.mark.parametrize("module", ["shared:x", "builtin:x", "../x", "/etc/passwd", "a//b", ""])
def test_a_module_that_is_not_the_peers_own_is_a_bad_field(world: World, module: str) -> None:
    bob = world.bob.public_key
    assert _kind(make_logic_request, world.key("bob"), target=bob, module=module, source=V1,
                 now=world.now) == "bad_field"
    req = _hand_built(world.key("bob"), target=bob, now=world.now, module=module)
    assert _kind(open_logic_request, req) == "bad_field"
    handled, body = world.deliver(req)
    assert handled.outcome == "rejected" and body["error"]["kind"] == "bad_field"


def test_a_source_over_512_kib_is_too_large(world: World) -> None:
    big = "// " + "x" * (MAX_MODULE_SIZE - 3) + "\n"
    assert len(big.encode()) == MAX_MODULE_SIZE + 1
    bob = world.bob.public_key
    assert _kind(make_logic_request, world.key("bob"), target=bob, module="inbox", source=big,
                 now=world.now) == "too_large"
    req = _hand_built(world.key("bob"), target=bob, now=world.now, source=big)
    handled, body = world.deliver(req)
    assert handled.outcome == "rejected" and body["error"]["kind"] == "too_large"
    assert world.live("inbox") is None


def test_a_source_of_exactly_512_kib_is_accepted_by_the_envelope(world: World) -> None:
    big = "// " + "x" * (MAX_MODULE_SIZE - 4) + "\n"
    assert len(big.encode()) == MAX_MODULE_SIZE
    req = make_logic_request(world.key("bob"), target=world.bob.public_key, module="inbox", source=big,
                             now=world.now)
    assert open_logic_request(req).source == big


# ------------------------------------------------------------------ the handler


def test_the_owner_installs_and_the_next_request_runs_the_new_version(world: World) -> None:
    world.allow(ALICE_IMPORTS)
    handled, reply = world.push("bob", "inbox", V1)
    assert handled.outcome == "ok" and reply.ok
    assert reply.value == {"module": "inbox", "version": 1, "sha256": sha256_hex(V1)}
    call = 'import "inbox" as i; i::deliver("hi")'
    _, out = world.exec(call, sender="alice")
    assert out.ok and out.value == "v1: hi"
    handled, reply = world.push("bob", "inbox", V2)
    assert reply.value == {"module": "inbox", "version": 2, "sha256": sha256_hex(V2)}
    _, out = world.exec(call, sender="alice")  # same handler, same context: no restart
    assert out.ok and out.value == "v2: hi"
    assert world.live("inbox") == V2


def test_the_owner_overrides_a_builtin_module_remotely(world: World) -> None:
    _, out = world.exec('import "inbox" as i; i::deliver("x")')
    assert out.value == "inbox/1.txt"  # the built-in
    handled, reply = world.push("bob", "inbox", 'import "builtin:inbox" as base;\nfn deliver(t) { base::deliver(t.to_upper()) + "!" }\n')
    assert reply.ok
    _, out = world.exec('import "inbox" as i; [i::deliver("loud"), fs::read("inbox/2.txt")]')
    assert out.ok and out.value == ["inbox/2.txt!", "from bob: LOUD"]


def test_another_peer_without_the_right_gets_a_signed_denial(world: World) -> None:
    world.push("bob", "inbox", V1)
    handled, reply = world.push("alice", "inbox", V2)  # alice may exec, not logic.write
    assert handled.outcome == "denied" and handled.signed
    assert handled.denied_action == "logic.write" and handled.usage is None  # typed: nothing ran
    assert reply.denied and reply.error["message"] == "logic.write of module 'inbox' is not allowed: nothing allowed it"
    assert world.live("inbox") == V1 and len(PeerLogic(world.bob).versions("inbox")) == 1
    _, out = world.exec('import "inbox" as i; i::deliver("hi")')
    assert out.value == "v1: hi"


def test_a_capability_holder_installs_only_the_module_granted(world: World) -> None:
    cap = world.cap(["logic.write:inbox"])
    handled, reply = world.push("carol", "inbox", V2, caps=(cap,))
    assert handled.outcome == "ok" and reply.value["version"] == 1
    assert handled.usage is not None and handled.usage.as_map() == reply.usage  # the usage the reply carries
    assert world.live("inbox") == V2
    (v,) = PeerLogic(world.bob).versions("inbox")
    assert v.by == world.carol.did and v.cap == cap and v.rule is None

    handled, reply = world.push("carol", "notes", V2, caps=(cap,))
    assert handled.outcome == "denied" and reply.denied
    assert world.live("notes") is None and PeerLogic(world.bob).versions("notes") == []
    handled, reply = world.push("carol", "inbox", V1)  # without presenting it
    assert handled.outcome == "denied"


def test_a_capability_for_someone_else_or_for_another_action_grants_nothing(world: World) -> None:
    for_alice = world.cap(["logic.write:inbox"], to="alice")
    handled, reply = world.push("carol", "inbox", V2, caps=(for_alice,))
    assert handled.outcome == "denied" and "capability refused" in reply.error["message"]
    exec_only = world.cap(["exec", "module.import:inbox"])
    handled, reply = world.push("carol", "inbox", V2, caps=(exec_only,))
    assert handled.outcome == "denied"
    assert world.live("inbox") is None


def test_a_policy_rule_lets_a_non_owner_install_and_the_history_names_it(world: World) -> None:
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["logic.write"]\nresources = ["inbox"]\n')
    handled, reply = world.push("carol", "inbox", V2)
    assert handled.outcome == "ok" and reply.ok
    (v,) = PeerLogic(world.bob).versions("inbox")
    assert v.by == world.carol.did and v.cap is None
    assert v.rule is not None and "policy.toml:" in v.rule
    handled, reply = world.push("carol", "notes", V2)  # resources = ["inbox"] only
    assert handled.outcome == "denied"


def test_a_policy_rule_by_did_works_too(world: World) -> None:
    world.allow(f'\n[[rule]]\neffect = "allow"\nwho = "{world.carol.did}"\nactions = ["logic.write"]\nresources = ["inbox"]\n')
    handled, reply = world.push("carol", "inbox", V2)
    assert handled.outcome == "ok" and world.live("inbox") == V2


def test_a_deny_rule_beats_a_capability(world: World) -> None:
    world.allow('\n[[rule]]\neffect = "deny"\nwho = "carol"\nactions = ["logic.write"]\n')
    handled, reply = world.push("carol", "inbox", V2, caps=(world.cap(["logic.write:inbox"]),))
    assert handled.outcome == "denied" and world.live("inbox") is None


def test_a_broken_update_is_refused_signed_and_the_old_version_keeps_serving(world: World) -> None:
    world.allow(ALICE_IMPORTS)
    world.push("bob", "inbox", V1)
    handled, reply = world.push("bob", "inbox", BROKEN)
    assert handled.outcome == "script_error" and handled.signed and not reply.ok
    assert reply.error["kind"] == "compile_error"
    assert "peer:inbox" in reply.error["message"] and "2:" in reply.error["message"]
    assert world.live("inbox") == V1 and len(PeerLogic(world.bob).versions("inbox")) == 1
    _, out = world.exec('import "inbox" as i; i::deliver("still")', sender="alice")
    assert out.ok and out.value == "v1: still"


def test_an_update_that_breaks_a_dependent_is_refused(world: World) -> None:
    logic = PeerLogic(world.bob)
    logic.set("helper", 'fn f() { 1 }\n')
    logic.set("user", 'import "helper" as h;\nfn g() { h::f() + 1 }\n')
    handled, reply = world.push("bob", "helper", 'fn other() { 2 }\n')
    assert not reply.ok and reply.error["kind"] == "breaks_dependent"
    assert "peer:user" in reply.error["message"]
    assert world.live("helper") == 'fn f() { 1 }\n'
    _, out = world.exec('import "user" as u; u::g()')
    assert out.value == 2
    # a compatible change goes through, and the dependent sees it
    handled, reply = world.push("bob", "helper", 'fn f() { 41 }\nfn other() { 2 }\n')
    assert reply.ok
    _, out = world.exec('import "user" as u; u::g()')
    assert out.value == 42


def test_the_history_after_remote_installs_verifies(world: World) -> None:
    world.push("bob", "inbox", V1)
    world.push("carol", "inbox", V2, caps=(world.cap(["logic.write:inbox"]),))
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "alice"\nactions = ["logic.write"]\nresources = ["notes"]\n')
    world.push("alice", "notes", 'fn count() { 0 }\n')
    world.push("bob", "inbox", BROKEN)  # refused: records nothing
    world.push("alice", "inbox", V1)  # denied: records nothing
    report = PeerLogic(world.bob).verify()
    assert report == {"inbox": [], "notes": []}
    assert [v.by for v in PeerLogic(world.bob).versions("inbox")] == [world.bob.did, world.carol.did]


def test_verify_notices_a_live_file_changed_behind_the_historys_back(world: World) -> None:
    # the control for the test above: verify is not a rubber stamp
    world.push("carol", "inbox", V2, caps=(world.cap(["logic.write:inbox"]),))
    (world.bob.paths.logic / "inbox.rhai").write_text(V1)
    (problem,) = PeerLogic(world.bob).verify()["inbox"]
    assert "the live file differs from version 1" in problem


# ------------------------------------------------------------------ module.import for incoming scripts


IMPORT_POLICY = """
[[rule]]
effect = "allow"
who = "alice"
actions = ["module.import"]
resources = ["inbox"]
"""


@pytest.fixture
def guarded(world: World) -> World:
    logic = PeerLogic(world.bob)
    logic.set("fmt", 'fn shout(t) { t.to_upper() }\n')
    logic.set("inbox", 'import "fmt" as f;\nimport "builtin:notes" as n;\nfn shout(t) { f::shout(t) }\nfn notes_fn() { "ok" }\n')
    world.allow(IMPORT_POLICY)
    return world


def test_an_incoming_script_imports_the_allowed_module(guarded: World) -> None:
    handled, reply = guarded.exec('import "inbox" as i; i::shout("hi")', sender="alice")
    assert handled.outcome == "ok" and reply.value == "HI"  # inbox itself imports fmt and builtin:notes


@pytest.mark.parametrize("name", ["notes", "builtin:inbox", "fmt", "peer:inbox", "shared:inbox"])
def test_an_incoming_script_cannot_import_anything_else(guarded: World, name: str) -> None:
    handled, reply = guarded.exec(f'import "{name}" as m; 1', sender="alice")
    assert handled.outcome == "script_error" and reply.error["kind"] == "compile_error"
    assert f"module '{name}' not found" in reply.error["message"]


def test_the_owner_is_not_filtered_by_the_import_rules(guarded: World) -> None:
    handled, reply = guarded.exec('import "fmt" as f; import "builtin:inbox" as b; f::shout("x")')
    assert handled.outcome == "ok" and reply.value == "X"


def test_a_deny_rule_on_a_bare_name_also_denies_its_qualified_forms(world: World) -> None:
    PeerLogic(world.bob).set("secret", 'fn get() { "SECRET" }\n')
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "alice"\nactions = ["module.import"]\n'
                '\n[[rule]]\neffect = "deny"\nwho = "alice"\nactions = ["module.import"]\nresources = ["secret"]\n')
    for name in ("secret", "peer:secret"):
        handled, reply = world.exec(f'import "{name}" as s; s::get()', sender="alice")
        assert handled.outcome == "script_error" and f"module '{name}' not found" in reply.error["message"]
    handled, reply = world.exec('import "peer:secret" as s; s::get()')  # the owner
    assert reply.value == "SECRET"


def test_a_wildcard_rule_never_grants_logic_write(world: World) -> None:
    # written to give alice the inbox/ files; "*" must not also let her replace the inbox module
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "alice"\nactions = ["*"]\nresources = ["inbox/**"]\n'
                '\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["*"]\n')
    for sender in ("alice", "carol"):
        handled, reply = world.push(sender, "inbox", V2)
        assert handled.outcome == "denied" and "logic.write of module 'inbox'" in reply.error["message"]
    assert world.live("inbox") is None


def test_a_peer_allowed_to_delegate_cannot_grant_logic_write(world: World) -> None:
    # carol may issue root capabilities for bob's resources (delegate), but not for his code
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["delegate"]\n')
    token = grant(world.key("carol"), audience=world.alice.public_key, subject=world.bob.public_key,
                  grants=["logic.write:inbox"], now=world.now, ttl=600)
    handled, reply = world.push("alice", "inbox", V2, caps=(token,))
    assert handled.outcome == "denied" and "capability refused" in reply.error["message"]
    assert world.live("inbox") is None
    # a chain rooted in bob's own key works, delegated on by carol
    from peerbox.wire._caps import delegate

    root = world.cap(["logic.write:inbox"], to="carol")
    sub = delegate(root, world.key("carol"), audience=world.alice.public_key, grants=["logic.write:inbox"],
                   now=world.now, ttl=600)
    handled, reply = world.push("alice", "inbox", V2, caps=(sub,))
    assert handled.outcome == "ok", reply.error
    assert PeerLogic(world.bob).verify() == {"inbox": []}


# ------------------------------------------------------------------ remote reads and removal


def _op(world: World, sender: str, op: str, module: str = "", *, caps: tuple[bytes, ...] = ()) -> tuple[Handled, Any]:
    req = make_logic_request(world.key(sender), target=world.bob.public_key, op=op, module=module, caps=caps,
                             now=world.now)
    return world.deliver(req)


def test_the_owner_lists_shows_and_reads_the_history_remotely(world: World) -> None:
    world.push("bob", "inbox", V1)
    world.push("bob", "inbox", V2)
    handled, reply = _op(world, "bob", "list")
    assert handled.outcome == "ok"
    files = {d["file"]: d for d in reply.value}
    assert files["peer:inbox"]["overrides"] == ["builtin:inbox"] and "builtin:kv" in files
    handled, reply = _op(world, "bob", "show", "inbox")
    assert reply.value == {"module": "inbox", "file": "peer:inbox", "source": V2, "sha256": sha256_hex(V2)}
    handled, reply = _op(world, "bob", "show", "builtin:kv")
    assert reply.value["file"] == "builtin:kv" and "fn keys()" in reply.value["source"]
    handled, reply = _op(world, "bob", "history", "inbox")
    versions = [Version.parse(r) for r in reply.value["versions"]]
    assert [v.sha256 for v in versions] == [sha256_hex(V1), sha256_hex(V2)]
    assert reply.value["head"] == [2, versions[-1].digest()]
    handled, reply = _op(world, "bob", "show", "nope")
    assert handled.outcome == "script_error" and reply.error["kind"] == "not_found"


def test_reads_need_logic_read_for_each_module(world: World) -> None:
    world.push("bob", "inbox", V1)
    world.push("bob", "notes", V1)
    handled, reply = _op(world, "alice", "show", "inbox")
    assert handled.outcome == "denied" and "logic.read of module 'inbox'" in reply.error["message"]
    assert _op(world, "alice", "list")[1].value == []
    # a wildcard rule never grants logic.read either; a capability can, module by module
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["*"]\n')
    cap = world.cap(["logic.read:inbox"])
    assert _op(world, "carol", "show", "inbox")[0].outcome == "denied"
    handled, reply = _op(world, "carol", "show", "inbox", caps=(cap,))
    assert handled.outcome == "ok" and reply.value["source"] == V1
    assert _op(world, "carol", "show", "notes", caps=(cap,))[0].outcome == "denied"
    assert [d["file"] for d in _op(world, "carol", "list", caps=(cap,))[1].value] == ["peer:inbox",
                                                                                     "builtin:inbox"]
    # reading gives no right to write
    handled, reply = world.push("carol", "inbox", V2, caps=(cap,))
    assert handled.outcome == "denied" and world.live("inbox") == V1


def test_the_owner_removes_a_module_remotely_and_others_may_not(world: World) -> None:
    world.push("bob", "inbox", V1)
    handled, reply = _op(world, "alice", "remove", "inbox")
    assert handled.outcome == "denied" and world.live("inbox") == V1
    handled, reply = _op(world, "bob", "remove", "inbox")
    assert handled.outcome == "ok" and reply.value["version"] == 2
    assert world.live("inbox") is None
    (v1, v2) = PeerLogic(world.bob).versions("inbox")
    assert v2.action == "remove" and open_statement(v2.statement).remove
    assert PeerLogic(world.bob).verify() == {"inbox": []}
    handled, reply = _op(world, "bob", "remove", "inbox")
    assert handled.outcome == "script_error" and reply.error["kind"] == "not_found"


@pytest.mark.parametrize("fields, message", [
    ({"op": "erase", "module": "inbox"}, "'op' must be one of"),
    ({"op": "list", "module": "inbox"}, "a 'list' request has no module"),
    ({"op": "show", "source": "x", "module": "inbox"}, "a 'show' request has no source"),
    ({"op": "history"}, "missing field 'module'"),
    ({"op": "history", "module": "builtin:inbox"}, "not a name of one of the peer's own modules"),
])
def test_malformed_operations_are_bad_fields(world: World, fields: dict[str, Any], message: str) -> None:
    key = world.key("bob")
    payload: dict[str, Any] = {"v": 1, "typ": TYP_LOGIC, "caller": key.public_key, "target": world.bob.public_key,
                               "nonce": os.urandom(16), "iat": world.now, "exp": world.now + 300, **fields}
    with pytest.raises(EnvelopeError) as info:
        open_logic_request(sign1(payload, key))
    assert info.value.kind == "bad_field" and message in info.value.message


# ------------------------------------------------------------------ the two phases


def test_check_answers_refusals_denials_and_reads_and_admits_only_changes(world: World) -> None:
    """What a worker decides before taking a run slot: only a permitted set/remove needs one."""
    from peerbox.trust._logic_push import LogicAdmitted

    def logic(sender: str, op: str, module: str = "", source: str = "") -> bytes:
        return make_logic_request(world.key(sender), target=world.bob.public_key, op=op, module=module,
                                  source=source, now=world.now)

    listing = logic("alice", "list")
    assert isinstance(world.handler.check_logic(listing), Handled)  # a read: answered by the check
    assert world.handler.check_logic(listing).error["kind"] == "replay"  # type: ignore[union-attr, index]
    denied = world.handler.check_logic(logic("alice", "set", "inbox", V1))
    assert isinstance(denied, Handled) and denied.outcome == "denied"
    assert world.live("inbox") is None
    change = logic("bob", "set", "inbox", V1)
    admitted = world.handler.check_logic(change)
    assert isinstance(admitted, LogicAdmitted) and admitted.owner and admitted.caller == world.bob.public_key
    assert world.live("inbox") is None  # nothing is installed by the check
    handled = world.handler.run(admitted)
    reply = verify_reply(handled.body, target=world.bob.public_key, request_bytes=change)
    assert reply.ok and reply.value["version"] == 1 and world.live("inbox") == V1
    assert world.handler.check_logic(change).error["kind"] == "replay"  # type: ignore[union-attr, index]


def test_exec_check_then_run(world: World) -> None:
    from peerbox.trust._exec import Admitted

    req = make_request(world.key("alice"), target=world.bob.public_key, script="caller.name", now=world.now,
                       limits={"timeout": 1.5})
    admitted = world.handler.check(req)
    assert isinstance(admitted, Admitted) and not admitted.owner and admitted.caller_name == "alice"
    assert admitted.limits.timeout == 1.5
    assert world.handler.check(req).error["kind"] == "replay"  # type: ignore[union-attr, index]
    reply = verify_reply(world.handler.run(admitted).body, target=world.bob.public_key, request_bytes=req)
    assert reply.ok and reply.value == "alice"
    stranger = make_request(KeyPair.generate(), target=world.bob.public_key, script="1", now=world.now)
    denied = world.handler.check(stranger)
    assert isinstance(denied, Handled) and denied.outcome == "denied"


def test_exec_answers_carry_typed_usage_and_the_denied_action(world: World) -> None:
    """What the worker counts is on the Handled (outcome, usage, denied action), equal to what the reply says."""
    handled, reply = world.exec("40 + 2")
    assert handled.outcome is Outcome.OK and handled.usage is not None and handled.denied_action is None
    assert handled.usage.as_map() == reply.usage and handled.usage.peak_memory > 0
    handled, reply = world.exec('fs::read("inbox/x.txt")', sender="alice")  # alice may exec, not fs.read
    assert handled.outcome is Outcome.SCRIPT_ERROR and reply.error["kind"] == "denied"
    assert handled.denied_action == "fs.read" and handled.usage is not None
    assert handled.usage.as_map() == reply.usage
