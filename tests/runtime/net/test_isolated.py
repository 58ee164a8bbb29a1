"""Isolated mode's router (peerbox.net._isolated.Router): what it counts from its children's answers.

A child names the action its policy refused in a response header
(``peerbox-denied-action``, :data:`peerbox.net._endpoints.DENIED_ACTION`); the
router counts denials from that field, never from the signed reply's message,
and does not forward the header. The router here fronts an in-process worker
made as ``peerbox serve`` makes a child (``for_router``), over real HTTP/2 on
loopback: no child process, so these tests are fast.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import peerbox
from peerbox.net._endpoints import DENIED_ACTION
from peerbox.net._h2client import H2Transport
from peerbox.net._h2server import HttpRequest, HttpResponse
from peerbox.net._isolated import Router, _Child, _forwarded, _supervise
from peerbox.net._metrics import Metrics
from peerbox.net._shared import serve_worker
from peerbox.net._worker import Worker
from peerbox.trust import Outcome, Usage, make_logic_request
from peerbox.wire import KeyPair, cbor_dumps, make_denial, make_reply, make_request

MISLEADING = "fs.read of 'x' is not allowed"  # what a message says is never what is counted


def test_a_forwarded_answer_is_read_into_the_handled_its_child_counted() -> None:
    """Outcome, usage and the denied action (from the child's header), never from a message."""
    key, caller = KeyPair.generate(), KeyPair.generate().public_key
    usage = Usage(fuel=900, wall_ms=2, peak_memory=65536)

    def reply(ok: bool, error: dict[str, str] | None = None) -> bytes:
        return make_reply(key, request_bytes=b"req", caller=caller, now=1, ok=ok, value=1 if ok else None,
                          error=error, usage=usage.as_map())

    ok = _forwarded(200, reply(True))
    assert (ok.outcome, ok.usage, ok.denied_action) == (Outcome.OK, usage, None)
    limit = _forwarded(200, reply(False, {"kind": "limit_fuel", "message": "out of fuel"}))
    assert (limit.outcome, limit.usage, limit.denied_action) == (Outcome.LIMIT, usage, None)
    refused_call = reply(False, {"kind": "denied", "message": MISLEADING})
    inside = _forwarded(200, refused_call, denied_action="fs.write")
    assert (inside.outcome, inside.usage, inside.denied_action) == (Outcome.SCRIPT_ERROR, usage, "fs.write")
    assert _forwarded(200, refused_call).denied_action == "host_call"  # no header: not read from the text
    denial = make_denial(key, request_bytes=b"req", caller=caller, now=1, rule=None, message=MISLEADING)
    assert _forwarded(403, denial, denied_action="exec").denied_action == "exec"
    assert _forwarded(403, denial).denied_action == "exec"
    assert _forwarded(403, denial, logic=True, denied_action="logic.read").denied_action == "logic.read"
    assert _forwarded(403, denial, logic=True).denied_action == "logic.write"
    refused = _forwarded(409, cbor_dumps({"error": {"kind": "replay", "message": "seen"}}))
    assert (refused.outcome, refused.kind, refused.usage) == (Outcome.REJECTED, "replay", None)
    m = Metrics()
    for handled in (ok, limit, inside, refused):
        m.answered(handled, 0.0)
    assert m.fuel.count == 3 and m.denials == {"fs.write": 1} and m.rejections == {"replay": 1}


class World:
    """alice, bob and dave under ``root``; bob with the demo policy (alice: exec, fs.write/list in inbox/)."""

    def __init__(self, root: Path, policy: str) -> None:
        self.store = peerbox.PeerStore(root)
        for name in ("alice", "bob", "dave"):
            self.store.init(name)
        (root / "peers" / "bob" / "policy.toml").write_text(policy)
        self.root = root
        self.bob = self.store.get("bob")

    def exec(self, script: str, sender: str = "alice") -> bytes:
        return make_request(self.store.get(sender).signing_key(), target=self.bob.public_key, script=script,
                            now=int(time.time()))

    def push(self, sender: str = "alice") -> bytes:
        return make_logic_request(self.store.get(sender).signing_key(), target=self.bob.public_key,
                                  module="greet", source="fn hi() { 1 }", now=int(time.time()))


@pytest.fixture
def world(tmp_path: Path, demo_policy: str) -> World:
    return World(tmp_path, demo_policy)


def post(body: bytes, path: str = "/v1/exec") -> HttpRequest:
    return HttpRequest(method="POST", path=path, headers=(("content-type", "application/cose"),), body=body,
                       client="127.0.0.1:1", stream_id=1, conn_id=1)


def header(resp: HttpResponse, name: str) -> str | None:
    return next((v for k, v in resp.headers if k == name), None)


@pytest.fixture
def child(world: World) -> Iterator[Worker]:
    worker = Worker(world.root, ["bob"], max_runs=1, for_router=True)
    yield worker
    worker.close()


@asynccontextmanager
async def router(world: World, worker: Worker) -> AsyncIterator[Router]:
    """A router whose one child, bob's, is ``worker`` served on a loopback port."""
    async with H2Transport() as transport, trio.open_nursery() as n:
        port: int = await n.start(lambda task_status: serve_worker(
            worker, host="127.0.0.1", port=0, quiet=True, handle_signals=False, grace=2.0,
            task_status=task_status))
        bob = _Child(world.bob.name, world.bob.did, world.bob.public_key, port_file="", port=port)
        yield Router([bob], transport, timeout=20.0)
        n.cancel_scope.cancel()


async def test_a_child_names_the_denied_action_in_a_header_a_shared_worker_does_not_send(
        world: World, child: Worker) -> None:
    shared = Worker(world.root, ["bob"], max_runs=1)
    try:
        for worker, named in ((child, "exec"), (shared, None)):
            resp = await worker.app(post(world.exec("1", sender="dave")))
            assert resp.status == 403 and header(resp, DENIED_ACTION) == named
    finally:
        shared.close()
    resp = await child.app(post(world.exec("40 + 2")))
    assert resp.status == 200 and header(resp, DENIED_ACTION) is None


async def test_the_router_counts_each_denied_action_from_its_childs_header(world: World,
                                                                          child: Worker) -> None:
    """A denied exec, a denied logic.write and a host call the policy refused, each under its action."""
    async with router(world, child) as front:
        answers: list[HttpResponse] = []
        for body, path in ((world.exec("1", sender="dave"), "/v1/exec"),
                           (world.push(), "/v1/logic"),
                           (world.exec('fs::read("private.txt")'), "/v1/exec"),
                           (world.exec("40 + 2"), "/v1/exec")):
            answers.append(await front.app(post(body, path)))
    assert [resp.status for resp in answers] == [403, 403, 200, 200]
    for resp in answers:  # the child's header is the router's to read, not the client's
        assert header(resp, DENIED_ACTION) is None
        assert header(resp, "content-type") == "application/cose"
    assert front.metrics.denials == child.metrics.denials == {"exec": 1, "logic.write": 1, "fs.read": 1}
    assert front.metrics.requests == child.metrics.requests == {"denied": 2, "script_error": 1, "ok": 1}
    text = front.metrics.render()
    for action in ("exec", "logic.write", "fs.read"):
        assert f'peerbox_denials_total{{action="{action}"}} 1' in text


@pytest.mark.slow  # starts a real `peerbox serve` child process
async def test_a_real_child_process_names_its_denied_actions_for_the_router(world: World,
                                                                          tmp_path: Path) -> None:
    """The child as the supervisor starts it (``peerbox serve --exit-with-parent``), not a test double."""
    bob = _Child(world.bob.name, world.bob.did, world.bob.public_key, port_file=str(tmp_path / "bob.port"))
    async with H2Transport() as transport, trio.open_nursery() as n:
        await n.start(functools.partial(_supervise, str(world.root), bob, max_runs=1, grace=2.0))
        assert bob.port is not None
        front = Router([bob], transport, timeout=20.0)
        for body, path in ((world.exec("1", sender="dave"), "/v1/exec"), (world.push(), "/v1/logic"),
                           (world.exec('fs::read("private.txt")'), "/v1/exec")):
            resp = await front.app(post(body, path))
            assert resp.status in (200, 403) and header(resp, DENIED_ACTION) is None
        n.cancel_scope.cancel()
    assert front.metrics.denials == {"exec": 1, "logic.write": 1, "fs.read": 1}
