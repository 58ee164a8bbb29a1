"""Isolated mode's router (peerbox.net._isolated.Router): what it counts from its children's answers,
and how it survives children that die, hang or break the channel.

A child names the action its policy refused in a response header
(``peerbox-denied-action``, :data:`peerbox.net._endpoints.DENIED_ACTION`); the
router counts denials from that field, never from the signed reply's message,
and does not forward the header. The fast tests front an in-process worker
made as a child makes it (``for_router``), over the real local channel (a
Unix socketpair, :mod:`peerbox.net._localchan`); the slow ones supervise real
child processes (``python -m peerbox.net._child``) and SIGKILL or SIGSTOP them.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import cbor2
import pytest
import trio

import peerbox
from peerbox.net._endpoints import DENIED_ACTION
from peerbox.net._h2server import HttpRequest, HttpResponse
from peerbox.net._isolated import Router, _Child, _forwarded, _supervise
from peerbox.net._localchan import ChannelClient, ChannelServer, encode_hello
from peerbox.net._metrics import Metrics
from peerbox.net._worker import Worker
from peerbox.trust import Outcome, Usage, make_logic_request
from peerbox.policy import NOTHING_ALLOWED, DenialCause, Denied
from peerbox.wire import (KeyPair, Reply, cbor_dumps, grant, make_call_request, make_denial, make_reply,
                          make_request, make_revoke_request, verify_reply)

#: what a message (or a denial's own fields) says is never what is counted: the child's header is
MISLEADING_DENIAL = Denied("fs.read", "x", DenialCause.NO_RULE, NOTHING_ALLOWED)
MISLEADING = str(MISLEADING_DENIAL)


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
    denial = make_denial(key, request_bytes=b"req", caller=caller, now=1, denial=MISLEADING_DENIAL)
    assert _forwarded(403, denial, denied_action="exec").denied_action == "exec"
    assert _forwarded(403, denial).denied_action == "exec"
    assert _forwarded(403, denial, logic=True, denied_action="logic.read").denied_action == "logic.read"
    assert _forwarded(403, denial, logic=True).denied_action == "logic.write"
    refused = _forwarded(409, cbor_dumps({"error": {"kind": "replay", "message": "seen"}}))
    assert (refused.outcome, refused.kind, refused.usage) == (Outcome.REJECTED, "replay", None)
    with pytest.raises(ValueError):  # a 200 that is no COSE_Sign1 reply: the router counts it apart
        _forwarded(200, cbor_dumps({"ok": True}))
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


CHAN = 8 << 20


@asynccontextmanager
async def router(world: World, worker: Worker, *, trusting: bool = False) -> AsyncIterator[Router]:
    """A router whose one child, bob's, is ``worker`` served on the local channel (a real socketpair);
    ``trusting``: with the app a real child serves (:func:`peerbox.net._child.trusting_app`)."""
    from peerbox.net._child import trusting_app

    a, b = trio.socket.socketpair()
    channel = ChannelClient(trio.SocketStream(a), max_frame=CHAN, max_request=CHAN)
    server = ChannelServer(trio.SocketStream(b), trusting_app(worker) if trusting else worker.app,
                           max_frame=CHAN, max_answer=CHAN)
    async with trio.open_nursery() as n:
        n.start_soon(server.run)
        n.start_soon(channel.run)
        assert await channel.wait_ready()
        bob = _Child(world.bob.name, world.bob.did, world.bob.public_key, channel=channel)
        yield Router([bob], timeout=20.0)
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


async def test_a_child_that_breaks_the_frame_format_costs_its_requests_a_503_not_the_router(
        world: World) -> None:
    """A child that writes garbage on its channel: its request gets 503, the router keeps answering."""
    a, b = trio.socket.socketpair()
    channel = ChannelClient(trio.SocketStream(a), max_frame=CHAN, max_request=CHAN)
    child = trio.SocketStream(b)
    bob = _Child(world.bob.name, world.bob.did, world.bob.public_key, channel=channel)
    front = Router([bob], timeout=20.0)
    async with trio.open_nursery() as n:
        n.start_soon(lambda: _expect_fault(channel))
        await child.send_all(encode_hello())
        assert await channel.wait_ready()

        async def garble() -> None:
            await child.receive_some(65536)
            await child.send_all(b"\x00\x00\x00\x09garbage!!")

        n.start_soon(garble)
        with trio.fail_after(10):
            resp = await front.app(post(world.exec("40 + 2")))
        assert resp.status == 503 and header(resp, "retry-after") == "1"
        assert cbor2.loads(resp.body)["error"]["kind"] == "unavailable"
        bob.channel = None  # what the supervisor does: the child is down until restarted
        resp = await front.app(post(world.exec("40 + 2")))
        assert resp.status == 503 and "restarting" in cbor2.loads(resp.body)["error"]["message"]
        health = await front.app(HttpRequest(method="GET", path="/v1/health", headers=(), body=b"",
                                             client="127.0.0.1:1", stream_id=3, conn_id=1))
        assert health.status == 200
    await child.aclose()


async def _expect_fault(channel: ChannelClient) -> None:
    from peerbox.net._localchan import FrameError
    with pytest.raises(FrameError):
        await channel.run()


@asynccontextmanager
async def supervised(world: World, tmp_path: Path,
                     timeout: float = 20.0) -> AsyncIterator[tuple[Router, _Child]]:
    """bob's child as the supervisor starts it (``python -m peerbox.net._child``), behind a router."""
    bob = _Child(world.bob.name, world.bob.did, world.bob.public_key)
    async with trio.open_nursery() as n:
        await n.start(functools.partial(_supervise, str(world.root), bob, max_runs=2, grace=2.0))
        assert bob.channel is not None and bob.process is not None
        yield Router([bob], timeout=timeout), bob
        n.cancel_scope.cancel()


@pytest.mark.slow  # starts a real child process
async def test_a_real_child_process_names_its_denied_actions_for_the_router(world: World,
                                                                          tmp_path: Path) -> None:
    """The child as the supervisor starts it, not a test double."""
    async with supervised(world, tmp_path) as (front, _):
        for body, path in ((world.exec("1", sender="dave"), "/v1/exec"), (world.push(), "/v1/logic"),
                           (world.exec('fs::read("private.txt")'), "/v1/exec")):
            resp = await front.app(post(body, path))
            assert resp.status in (200, 403) and header(resp, DENIED_ACTION) is None
    assert front.metrics.denials == {"exec": 1, "logic.write": 1, "fs.read": 1}


@pytest.mark.slow  # starts real child processes and kills one
async def test_a_killed_child_fails_its_requests_in_flight_with_503_and_is_restarted(world: World,
                                                                                    tmp_path: Path) -> None:
    async with supervised(world, tmp_path) as (front, bob):
        assert (await front.app(post(world.exec("40 + 2")))).status == 200
        first = bob.process
        assert first is not None
        answers: list[HttpResponse] = []

        async def loop() -> None:  # in flight when the child dies: stopped by the kill, not its limit
            answers.append(await front.app(post(world.exec("let i = 0; loop { i += 1; }"))))

        with trio.fail_after(20):
            async with trio.open_nursery() as n:
                n.start_soon(loop)
                while front.in_flight == 0:
                    await trio.sleep(0.01)
                await trio.sleep(0.2)
                started = trio.current_time()
                os.kill(first.pid, signal.SIGKILL)
            assert trio.current_time() - started < 2.0  # at once, not after the loop's 5 s limit
        assert answers[0].status == 503 and header(answers[0], "retry-after") == "1"
        assert cbor2.loads(answers[0].body)["error"]["kind"] == "unavailable"
        statuses: list[int] = []
        with trio.fail_after(20):  # restarted with backoff: 503 until then, then served again
            while True:
                resp = await front.app(post(world.exec("40 + 2")))
                statuses.append(resp.status)
                if resp.status == 200:
                    break
                assert resp.status == 503
                await trio.sleep(0.05)
        assert bob.starts == 2 and bob.process is not first
        health = front.health()
        assert health["restarts"] == 1 and health["workers_up"] == 1


@pytest.mark.slow  # starts a real child process and stops it (SIGSTOP)
async def test_a_child_that_never_answers_gets_503_after_the_deadline_and_frees_the_slot(
        world: World, tmp_path: Path) -> None:
    """A hung child (SIGSTOP: alive, silent): 503 after the router's timeout; once it resumes, it serves."""
    async with supervised(world, tmp_path, timeout=0.5) as (front, bob):
        assert (await front.app(post(world.exec("1")))).status == 200
        assert bob.process is not None and bob.channel is not None
        os.kill(bob.process.pid, signal.SIGSTOP)
        try:
            with trio.fail_after(10):
                answers = []
                for i in range(3):
                    started = trio.current_time()
                    answers.append(await front.app(post(world.exec(f"{i}"))))
                    assert 0.4 < trio.current_time() - started < 5.0
            assert [a.status for a in answers] == [503, 503, 503]
            assert all("did not answer" in cbor2.loads(a.body)["error"]["message"] for a in answers)
            assert front.in_flight == 0 and bob.channel.in_flight == 0  # the slots are free
        finally:
            os.kill(bob.process.pid, signal.SIGCONT)
        with trio.fail_after(10):
            resp = await front.app(post(world.exec("40 + 2")))
        assert resp.status == 200 and bob.starts == 1  # the same child: a slow child is not killed


async def test_a_child_takes_its_routers_word_for_a_signature_and_checks_everything_else(
        world: World, child: Worker) -> None:
    """The router names the signer it verified: the child does not verify it again, but still decodes
    strictly, checks the nonce and the policy; a named key that is not the caller's is no shortcut."""
    from peerbox.net._child import trusting_app
    from peerbox.net._localchan import VERIFIED_SIGNER

    app = trusting_app(child)
    alice = world.store.get("alice").public_key

    def vouched(body: bytes, key: bytes = alice) -> HttpRequest:
        req = post(body)
        return HttpRequest(method=req.method, path=req.path, body=req.body, client=req.client, stream_id=1,
                           conn_id=1, headers=(*req.headers, (VERIFIED_SIGNER, key.hex())))

    good = world.exec("40 + 2")
    first = await app(vouched(good))
    assert first.status == 200 and header(first, "content-type") == "application/cose"
    again = await app(vouched(good))
    assert again.status == 409 and cbor2.loads(again.body)["error"]["kind"] == "replay"
    other = world.store.get("dave").public_key
    assert (await app(vouched(world.exec("1", sender="dave"), other))).status == 403
    forged = world.exec("1")
    forged = forged[:-1] + bytes([forged[-1] ^ 1])
    assert (await app(vouched(forged, other))).status == 401  # not the caller: verified as usual
    assert (await app(vouched(b"\xd2\x84\x00"))).status == 400  # does not open: the worker's own answer
    assert (await app(post(world.exec("2 + 2")))).status == 200  # no header: the worker's own path


# ------------------------------------------------------------------ call, rate limits, revoke

CALL_POLICY = """\
version = 2
[[rule]]
effect = "allow"
who = "owner"
actions = ["*", "logic.*"]

[[rule]]
effect = "allow"
who = "alice"
actions = ["call", "delegate"]
resources = ["api::*"]
limits = { calls_per_minute = 2, burst = 2 }
"""


def _call(world: World, sender: str = "alice", **kw: Any) -> bytes:
    return make_call_request(world.store.get(sender).signing_key(), target=world.bob.public_key, module="api",
                             function="plus_one", now=int(time.time()), **kw)


def error_of(reply: Reply) -> dict[str, Any]:
    """A signed reply's error map (it must have one)."""
    assert reply.error is not None, reply
    return reply.error


def test_a_forwarded_429_is_counted_rate_limited_and_its_retry_after_kept() -> None:
    from peerbox.net._isolated import _retry_after

    key, caller = KeyPair.generate(), KeyPair.generate().public_key
    limited = make_reply(key, request_bytes=b"req", caller=caller, now=1, ok=False,
                         error={"kind": "rate_limited", "message": "retry in 30 s", "rule": "policy.toml:9"},
                         usage=Usage(fuel=0, wall_ms=0, peak_memory=0).as_map())
    handled = _forwarded(429, limited)
    assert (handled.outcome, handled.kind) == (Outcome.RATE_LIMITED, "rate_limited")
    assert handled.denied_action is None
    assert not handled.outcome.ran
    assert [_retry_after(v) for v in ("30", None, "", "-1", "1.5", "１", "9" * 12)] == ["30"] + ["1"] * 6


async def test_router_forwards_429_and_retry_after(world: World, child: Worker) -> None:
    """A call, a rate-limited call (429: the child's signed reply and its retry-after), a denied call
    and a revocation, all through the router to a child serving the app a real child serves."""
    world.bob.paths.policy.write_text(CALL_POLICY)
    (world.bob.paths.logic / "api.rhai").write_text("export fn plus_one(x: i64) { x + 1 }\n")
    alice, dave = world.store.get("alice"), world.store.get("dave")
    token = grant(alice.signing_key(), audience=dave.public_key, subject=world.bob.public_key,
                  grants=["call:api::plus_one"], now=int(time.time()), ttl=600)
    async with router(world, child, trusting=True) as front:
        answers = []
        for i in range(3):
            body = _call(world, params=[i])
            answers.append((body, await front.app(post(body, "/v1/call"))))
        denied = await front.app(post(_call(world, "dave", params=[1]), "/v1/call"))
        revocation = make_revoke_request(alice.signing_key(), target=world.bob.public_key, token=token,
                                         now=int(time.time()))
        revoked = await front.app(post(revocation, "/v1/revoke"))
    assert [resp.status for _, resp in answers] == [200, 200, 429]
    body, limited = answers[2]
    reply = verify_reply(limited.body, target=world.bob.public_key, request_bytes=body)
    assert not reply.ok and error_of(reply)["kind"] == "rate_limited"
    retry = header(limited, "retry-after")
    assert retry is not None and 20 <= int(retry) <= 30  # one call in 30 s, the burst just spent
    assert header(limited, "content-type") == "application/cose" and header(limited, DENIED_ACTION) is None
    assert [verify_reply(resp.body, target=world.bob.public_key, request_bytes=b).value
            for b, resp in answers[:2]] == [1, 2]
    assert header(answers[0][1], "retry-after") is None
    assert denied.status == 403 and header(denied, DENIED_ACTION) is None
    reply = verify_reply(revoked.body, target=world.bob.public_key, request_bytes=revocation)
    assert revoked.status == 200 and reply.ok and reply.value["already"] is False
    assert front.metrics.requests == child.metrics.requests == {"ok": 3, "rate_limited": 1, "denied": 1}
    assert front.metrics.denials == child.metrics.denials == {"call": 1}


async def test_a_child_takes_its_routers_word_for_a_call_or_revoke_signature_too(
        world: World, child: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call vouched for by the router is opened without a second signature check (counted: the
    verifier runs for unvouched envelopes only) and still checked for everything else."""
    from peerbox.net import _preauth
    from peerbox.net._child import trusting_app
    from peerbox.wire import preauthenticate
    from peerbox.net._localchan import VERIFIED_SIGNER

    world.bob.paths.policy.write_text(CALL_POLICY)
    (world.bob.paths.logic / "api.rhai").write_text("export fn plus_one(x: i64) { x + 1 }\n")
    verified: list[int] = []
    real = preauthenticate

    def counting(body: bytes, **kw: Any) -> bytes:
        verified.append(len(body))
        return real(body, **kw)

    monkeypatch.setattr(_preauth, "preauthenticate", counting)
    app = trusting_app(child)
    alice = world.store.get("alice").public_key

    def vouched(body: bytes, path: str, key: bytes = alice) -> HttpRequest:
        return HttpRequest(method="POST", path=path, body=body, client="127.0.0.1:1", stream_id=1, conn_id=1,
                           headers=(("content-type", "application/cose"), (VERIFIED_SIGNER, key.hex())))

    good = _call(world, params=[41])
    resp = await app(vouched(good, "/v1/call"))
    assert resp.status == 200 and verify_reply(resp.body, target=world.bob.public_key,
                                               request_bytes=good).value == 42
    assert verified == []  # the router's word
    assert (await app(vouched(good, "/v1/call"))).status == 409  # the nonce is still checked
    dave = world.store.get("dave").public_key
    forged = _call(world, params=[1])
    forged = forged[:-1] + bytes([forged[-1] ^ 1])
    assert (await app(vouched(forged, "/v1/call", dave))).status == 401  # not the caller: verified
    assert verified  # ... by the worker's own path
    revocation = make_revoke_request(world.store.get("alice").signing_key(), target=world.bob.public_key,
                                     token=b"junk", now=int(time.time()))
    resp = await app(vouched(revocation, "/v1/revoke"))
    reply = verify_reply(resp.body, target=world.bob.public_key, request_bytes=revocation)
    assert resp.status == 200 and error_of(reply)["kind"] == "bad_token"
