"""Remote logic operations, sans sockets: listing, showing and reading the history of
a peer's modules and removing them (``logic.read``/``logic.write`` per module),
malformed operations, and the two phases of a handler (check, then run) with
typed usage and the denied action on exec answers.
"""

# ruff: noqa: E501  (scripts and expected messages read best on one line)

from __future__ import annotations

import os
from typing import Any

import pytest

from peerbox.peer import PeerLogic, Version, open_statement, sha256_hex
from peerbox.trust._exec import Handled
from peerbox.trust._logic_push import TYP_LOGIC, make_logic_request, open_logic_request
from peerbox.trust._outcome import Outcome
from peerbox.wire import EnvelopeError, KeyPair, make_request, sign1, verify_reply

from ._logic_world import V1, V2, World


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
    assert handled.outcome == "denied"
    assert reply.error["message"] == "logic.read of 'inbox' denied: no rule allowed it"
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
