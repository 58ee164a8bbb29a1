"""Remote logic updates, sans sockets: the ``peerbox/logic`` envelope.

What a worker refuses before it decides anything (kinds of
:class:`peerbox.wire.EnvelopeError`): replays, expired or misaddressed requests,
tampered bytes, a statement that is not the caller's for this install, a
module that is not the peer's own, a source over 512 KiB.
"""

# ruff: noqa: E501  (scripts and expected messages read best on one line)

from __future__ import annotations

import os
from typing import Any

import pytest

from peerbox.peer import PeerLogic, make_statement
from peerbox.run import MAX_MODULE_SIZE
from peerbox.trust._logic_push import TYP_LOGIC, make_logic_request, open_logic_request, verify_logic_request
from peerbox.wire import EnvelopeError, KeyPair, make_request, sign1, verify_request

from ._logic_world import V1, V2, World


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
