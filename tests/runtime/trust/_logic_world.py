"""The peers of the logic-push tests: bob hosted by one ``ExecHandler`` with a fixed
clock, alice and carol as other local peers, and the module sources they push.

``World`` sends logic requests (``push``, ``deliver``) and exec requests
(``exec``) to bob's handler and opens the answer (a verified reply, or the
unsigned error map); ``cap`` has bob grant a capability. The ``world`` fixture
(tests/runtime/trust/conftest.py) builds one under ``tmp_path``.
"""

# ruff: noqa: E501  (scripts and expected messages read best on one line)

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cbor2

from peerbox.peer import Peer, PeerContext, PeerStore
from peerbox.trust._exec import ExecHandler, Handled
from peerbox.trust._logic_push import make_logic_request
from peerbox.wire import KeyPair, grant, make_request, verify_reply

__all__ = ["ALICE_IMPORTS", "BOB_POLICY", "BROKEN", "V1", "V2", "World"]

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
