"""Remote logic updates, sans sockets: ``ExecHandler.handle_logic`` installing modules.

Who may install what (owner, capability, policy rule, deny rules, delegation),
that a refused update changes nothing, that the next request of the *same*
handler runs the new version, and which modules an incoming script may import
(``module.import``). The envelope is in test_logic_push_envelope.py, remote reads,
removal and the two phases in test_logic_push_remote_ops.py.
"""

# ruff: noqa: E501  (scripts and expected messages read best on one line)

from __future__ import annotations


import pytest

from peerbox.peer import PeerLogic, sha256_hex
from peerbox.wire import delegate, grant

from ._logic_world import ALICE_IMPORTS, BROKEN, V1, V2, World


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
    assert reply.denied and reply.error["message"] == "logic.write of 'inbox' denied: no rule allowed it"
    assert (reply.error["action"], reply.error["resource"], reply.error["rule"]) == ("logic.write", "inbox", None)
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
    assert handled.outcome == "denied" and reply.error["capability"] == "wrong_audience"
    assert reply.error["message"] == (f"logic.write of 'inbox' denied: the capability is addressed to "
                                      f"{world.alice.did}, not to the caller {world.carol.did}")
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
        assert handled.outcome == "denied"
        assert reply.error["message"] == "logic.write of 'inbox' denied: no rule allowed it"
    assert world.live("inbox") is None


def test_a_peer_allowed_to_delegate_cannot_grant_logic_write(world: World) -> None:
    # carol may issue root capabilities for bob's resources (delegate), but not for his code
    world.allow('\n[[rule]]\neffect = "allow"\nwho = "carol"\nactions = ["delegate"]\n')
    token = grant(world.key("carol"), audience=world.alice.public_key, subject=world.bob.public_key,
                  grants=["logic.write:inbox"], now=world.now, ttl=600)
    handled, reply = world.push("alice", "inbox", V2, caps=(token,))
    assert handled.outcome == "denied" and reply.error["capability"] == "not_issued_by_subject"
    assert reply.error["message"] == (f"logic.write of 'inbox' denied: the capability has an unknown issuer: "
                                      f"{world.carol.did} may not issue capabilities for the target")
    assert world.live("inbox") is None
    # a chain rooted in bob's own key works, delegated on by carol
    root = world.cap(["logic.write:inbox"], to="carol")
    sub = delegate(root, world.key("carol"), audience=world.alice.public_key, grants=["logic.write:inbox"],
                   now=world.now, ttl=600)
    handled, reply = world.push("alice", "inbox", V2, caps=(sub,))
    assert handled.outcome == "ok", reply.error
    assert PeerLogic(world.bob).verify() == {"inbox": []}
