"""``peerbox/revoke`` through bob's real ExecHandler: an issuer's revocation reaches bob's worker.

alice (under her own root, listed in bob's ``peers.toml``; bob's policy lets
her ``delegate``) grants carol ``call:inbox::deliver`` on bob. Nothing of
alice's is on bob's machine, so her local revocation list means nothing there:
only a ``peerbox/revoke`` sent to bob does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbox.peer import Directory, PeerContext, PeerStore
from peerbox.trust import ExecHandler, Handled, Outcome
from peerbox.wire import (KeyPair, Reply, delegate, grant, make_call_request, make_revoke_request, token_id,
                          verify_reply)

POLICY = """
version = 2

[[rule]]
effect = "allow"
who = "owner"
actions = ["*", "logic.*"]

[[rule]]
effect = "allow"
who = "alice"
actions = ["delegate"]
"""

INBOX = 'export fn deliver(msg: string) { `${caller.name} says ${msg}` }\n'


class World:
    """bob's handler (fixed clock) under ``bob-root``; alice and carol each under a root of their own."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.store = PeerStore(tmp / "bob-root")
        self.bob = self.store.init("bob")
        self.alice = PeerStore(tmp / "alice-root").init("alice")
        self.carol = PeerStore(tmp / "carol-root").init("carol")
        self.dave = KeyPair.generate()
        directory = Directory(self.store.root)
        directory.add("alice", self.alice.did)
        directory.add("carol", self.carol.did)
        self.bob.paths.policy.write_text(POLICY)
        self.bob.paths.logic.mkdir(parents=True, exist_ok=True)
        (self.bob.paths.logic / "inbox.rhai").write_text(INBOX)
        self.now = int(time.time())
        self.ctx, self.handler = self._open()
        # alice's root capability for carol, and carol's delegation of it to dave
        self.token = grant(self.key("alice"), audience=self.carol.public_key, subject=self.bob.public_key,
                           grants=["call:inbox::deliver"], now=self.now, ttl=3600)
        self.child = delegate(self.token, self.key("carol"), audience=self.dave.public_key,
                              grants=["call:inbox::deliver"], now=self.now)

    def _open(self) -> tuple[PeerContext, ExecHandler]:
        ctx = PeerContext(self.bob)
        return ctx, ExecHandler(ctx, self.store, clock=lambda: self.now)

    def restart(self) -> None:
        self.close()
        self.ctx, self.handler = self._open()

    def close(self) -> None:
        self.handler.close()
        self.ctx.close()

    def key(self, who: str) -> KeyPair:
        if who == "dave":
            return self.dave
        return {"bob": self.bob, "alice": self.alice, "carol": self.carol}[who].signing_key()

    def revoke(self, token: bytes, sender: str, *, nonce: bytes | None = None) -> tuple[Handled, bytes]:
        req = make_revoke_request(self.key(sender), target=self.bob.public_key, token=token, now=self.now,
                                  nonce=nonce)
        return self.handler.handle_revoke(req), req

    def reply(self, handled: Handled, req: bytes) -> Reply:
        assert handled.signed, handled.error
        return verify_reply(handled.body, target=self.bob.public_key, request_bytes=req)

    def call(self, token: bytes, sender: str = "carol") -> Handled:
        req = make_call_request(self.key(sender), target=self.bob.public_key, module="inbox", function="deliver",
                                params={"msg": "hi"}, caps=(token,), now=self.now)
        return self.handler.handle_call(req)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def _revoked_refusal(handled: Handled, world_token: bytes) -> None:
    assert handled.outcome is Outcome.DENIED and handled.denied_action == "call"
    assert handled.error is not None and handled.error["capability"] == "revoked"
    message = handled.error["message"]
    assert message.startswith("call of ") and f" is revoked (token id {token_id(world_token).hex()})" in message


def test_issuer_revokes_and_the_next_request_is_refused(world: World) -> None:
    assert world.call(world.token).outcome is Outcome.OK
    handled, req = world.revoke(world.token, "alice")
    reply = world.reply(handled, req)
    assert handled.outcome is Outcome.OK and reply.ok
    assert reply.value == {"revoked": token_id(world.token).hex(), "already": False}
    _revoked_refusal(world.call(world.token), world.token)


def test_descendants_are_refused_too(world: World) -> None:
    assert world.call(world.child, "dave").outcome is Outcome.OK
    handled, _ = world.revoke(world.token, "alice")  # the parent: everything delegated from it goes too
    assert handled.outcome is Outcome.OK
    _revoked_refusal(world.call(world.child, "dave"), world.token)
    # carol, an issuer of the child's link, may revoke the child alone
    w_child, _ = world.revoke(world.child, "carol")
    assert w_child.outcome is Outcome.OK


def test_the_subject_may_revoke(world: World) -> None:
    handled, req = world.revoke(world.token, "bob")
    assert world.reply(handled, req).ok
    _revoked_refusal(world.call(world.token), world.token)


def test_a_non_issuer_is_denied(world: World) -> None:
    # carol holds the token (its audience) but issued no link of its chain; dave is a stranger
    for sender in ("carol", "dave"):
        handled, req = world.revoke(world.token, sender)
        reply = world.reply(handled, req)
        assert handled.outcome is Outcome.DENIED and handled.denied_action == "revoke"
        assert reply.error is not None and reply.error["kind"] == "denied"
        assert reply.error["message"] == \
            "revoke denied: only an issuer in the token's chain, or its subject, may revoke it"
        assert (reply.error["action"], reply.error["cause"]) == ("revoke", "not_permitted")
    assert world.call(world.token).outcome is Outcome.OK


def test_a_token_about_another_peer_is_wrong_subject(world: World) -> None:
    about_alice = grant(world.key("alice"), audience=world.carol.public_key, subject=world.alice.public_key,
                        grants=["exec"], now=world.now, ttl=3600)
    handled, req = world.revoke(about_alice, "alice")
    reply = world.reply(handled, req)
    assert reply.error == {"kind": "wrong_subject", "message": "this token is about another peer's resources"}
    assert handled.kind == "wrong_subject"
    assert not (world.bob.paths.dir / "revoked.json").exists()


def test_garbage_is_bad_token(world: World) -> None:
    handled, req = world.revoke(b"\x01not a token", "alice")
    reply = world.reply(handled, req)
    assert reply.error is not None and reply.error["kind"] == "bad_token"
    assert reply.error["message"].startswith("the capability is not a valid token: ")


def test_revoking_twice_is_idempotent_already_true(world: World) -> None:
    first, _ = world.revoke(world.token, "alice")
    second, req = world.revoke(world.token, "alice")
    assert first.outcome is second.outcome is Outcome.OK
    assert world.reply(second, req).value == {"revoked": token_id(world.token).hex(), "already": True}
    listed = (world.bob.paths.dir / "revoked.json").read_text()
    assert listed.count(token_id(world.token).hex()) == 1


def test_a_replayed_revocation_is_rejected_replay(world: World) -> None:
    req = make_revoke_request(world.key("alice"), target=world.bob.public_key, token=world.token, now=world.now)
    assert world.handler.handle_revoke(req).outcome is Outcome.OK
    again = world.handler.handle_revoke(req)
    assert again.outcome is Outcome.REJECTED and again.kind == "replay"
    world.restart()
    assert world.handler.handle_revoke(req).kind == "replay"  # the nonce store persists too


def test_the_revocation_survives_a_new_handler(world: World) -> None:
    world.revoke(world.token, "alice")
    world.restart()
    _revoked_refusal(world.call(world.token), world.token)
    _revoked_refusal(world.call(world.child, "dave"), world.token)


def test_a_revocation_envelope_is_checked_like_any_other(world: World) -> None:
    wrong_target = make_revoke_request(world.key("alice"), target=world.alice.public_key, token=world.token,
                                       now=world.now)
    assert world.handler.handle_revoke(wrong_target).kind == "wrong_target"
    expired = make_revoke_request(world.key("alice"), target=world.bob.public_key, token=world.token,
                                  now=world.now - 1000, ttl=60)
    assert world.handler.handle_revoke(expired).kind == "expired"
    forged = bytearray(make_revoke_request(world.key("alice"), target=world.bob.public_key, token=world.token,
                                           now=world.now))
    forged[-1] ^= 1
    assert world.handler.handle_revoke(bytes(forged)).kind == "bad_signature"
    assert world.call(world.token).outcome is Outcome.OK  # none of them revoked anything
