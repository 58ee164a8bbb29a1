"""The worker's ``/v1/call`` and ``/v1/revoke`` (peerbox.net._worker.Worker), with HttpRequest objects.

A call of a published function is routed by its envelope's type and answered
200 (its value, ``no_such_function``, ``bad_arguments``: all signed), 403 (a
signed denial of ``call``) or 429 (a signed ``rate_limited`` reply with
``retry-after``); a revocation is answered in the check phase. Neither a rate
limited call nor a revocation ever takes a run slot. An envelope posted to
another type's endpoint is 400 ``wrong_type``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
import trio

import peerbox
from peerbox.net._h2server import HttpRequest, HttpResponse
from peerbox.net._worker import Worker
from peerbox.wire import Reply, grant, make_call_request, make_request, make_revoke_request, verify_reply

LOOP = "let i = 0; loop { i += 1; }"

API = """\
export fn plus_one(x: i64) { x + 1 }
export fn who() { caller.name }
export fn spin() { let i = 0; loop { i += 1; } }
fn hidden() { 42 }
"""

POLICY = """\
version = 2

[[rule]]
effect = "allow"
who = "owner"
actions = ["*", "logic.*"]

[[rule]]
effect = "allow"
who = "alice"
actions = ["call"]
resources = ["api::*"]
limits = { timeout = 5.0 }

[[rule]]
effect = "allow"
who = "alice"
actions = ["exec", "delegate"]
limits = { timeout = 5.0 }

[[rule]]
effect = "allow"
who = "carol"
actions = ["call"]
resources = ["api::plus_one"]
limits = { calls_per_minute = 6, burst = 2 }
"""


class World:
    """alice, bob, carol and dave under one root; bob publishes ``api`` (see :data:`API`) under
    :data:`POLICY`: alice may call anything in ``api`` and exec, carol only ``api::plus_one`` at 6 a
    minute (a burst of 2), dave nothing. The workers' clock is ``now``, fixed."""

    def __init__(self, root: Path) -> None:
        self.store = peerbox.PeerStore(root)
        for name in ("alice", "bob", "carol", "dave"):
            self.store.init(name)
        self.bob = self.store.get("bob")
        self.bob.paths.policy.write_text(POLICY)
        (self.bob.paths.logic / "api.rhai").write_text(API)
        self.root = root
        self.now = int(time.time())
        self.workers: list[Worker] = []

    def worker(self, **kw: Any) -> Worker:
        w = Worker(self.root, ["bob"], clock=lambda: self.now, **kw)
        self.workers.append(w)
        return w

    def call(self, function: str, params: Any = None, *, sender: str = "alice", **kw: Any) -> bytes:
        module, _, fn = function.rpartition("::")
        return make_call_request(self.store.get(sender).signing_key(), target=self.bob.public_key,
                                 module=module, function=fn, params=params, now=self.now, **kw)

    def exec(self, script: str, *, sender: str = "alice", **kw: Any) -> bytes:
        return make_request(self.store.get(sender).signing_key(), target=self.bob.public_key, script=script,
                            now=self.now, **kw)

    def revoke(self, token: bytes, *, sender: str = "alice") -> bytes:
        return make_revoke_request(self.store.get(sender).signing_key(), target=self.bob.public_key,
                                   token=token, now=self.now)

    def reply(self, resp: HttpResponse, request: bytes) -> Reply:
        assert header(resp, "content-type") == "application/cose"
        return verify_reply(resp.body, target=self.bob.public_key, request_bytes=request)

    def close(self) -> None:
        for w in self.workers:
            w.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def post(body: bytes, path: str = "/v1/call") -> HttpRequest:
    return HttpRequest(method="POST", path=path, headers=(("content-type", "application/cose"),), body=body,
                       client="127.0.0.1:1", stream_id=1, conn_id=1)


def get(path: str) -> HttpRequest:
    return HttpRequest(method="GET", path=path, headers=(), body=b"", client="127.0.0.1:1", stream_id=1,
                       conn_id=1)


def header(resp: HttpResponse, name: str) -> str | None:
    return next((v for k, v in resp.headers if k == name), None)


def error_of(reply: Reply) -> dict[str, Any]:
    """A signed reply's error map (it must have one)."""
    assert reply.error is not None, reply
    return reply.error


def error_kind(resp: HttpResponse) -> str:
    assert header(resp, "content-type") == "application/cbor"
    return str(cbor2.loads(resp.body)["error"]["kind"])


async def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(0.01)


async def test_call_is_routed_and_answered_200(world: World) -> None:
    w = world.worker()
    req = world.call("api::plus_one", {"x": 41})
    resp = await w.app(post(req))
    assert resp.status == 200
    reply = world.reply(resp, req)
    assert reply.ok and reply.value == 42
    by_position = world.call("api::plus_one", [1])
    assert world.reply(await w.app(post(by_position)), by_position).value == 2
    named = world.call("api::who")
    assert world.reply(await w.app(post(named)), named).value == "alice"  # the verified caller
    # signed answers that ran nothing: no such (published) function, arguments that do not fit
    for function, params, kind in (("api::hidden", None, "no_such_function"),
                                   ("api::missing", None, "no_such_function"),
                                   ("api::plus_one", {"x": "one"}, "bad_arguments"),
                                   ("api::plus_one", [1, 2], "bad_arguments")):
        req = world.call(function, params)
        resp = await w.app(post(req))
        reply = world.reply(resp, req)
        assert resp.status == 200 and not reply.ok, (function, reply)
        assert error_of(reply)["kind"] == kind, (function, reply.error)
    # the same bytes again are a replay, like an exec request
    assert (await w.app(post(req))).status == 409


async def test_exec_envelope_on_v1_call_is_400_wrong_type(world: World) -> None:
    """Each endpoint opens only its own type: the signature verifies, the type does not."""
    w = world.worker()
    exec_req, call_req = world.exec("1"), world.call("api::plus_one", [1])
    revoke_req = world.revoke(b"not a token")
    for body, path in ((exec_req, "/v1/call"), (call_req, "/v1/exec"), (revoke_req, "/v1/call"),
                       (call_req, "/v1/revoke"), (call_req, "/v1/logic")):
        resp = await w.app(post(body, path))
        assert resp.status == 400 and error_kind(resp) == "wrong_type", path
        assert resp.preauth_failure
    # none of them used its nonce: each still works on its own endpoint
    assert (await w.app(post(call_req))).status == 200
    assert (await w.app(post(exec_req, "/v1/exec"))).status == 200
    assert (await w.app(get("/v1/call"))).status == 405
    assert (await w.app(get("/v1/revoke"))).status == 405


async def test_a_forged_or_misaddressed_call_is_refused_before_it_is_checked(world: World) -> None:
    w = world.worker()
    good = world.call("api::plus_one", [1])
    forged = good[:-1] + bytes([good[-1] ^ 1])
    resp = await w.app(post(forged))
    assert resp.status == 401 and error_kind(resp) == "bad_signature" and resp.preauth_failure
    elsewhere = make_call_request(world.store.get("alice").signing_key(),
                                  target=world.store.get("dave").public_key, module="api",
                                  function="plus_one", params=[1], now=world.now)
    resp = await w.app(post(elsewhere))
    assert resp.status == 404 and error_kind(resp) == "wrong_target"
    old = world.call("api::plus_one", [1], ttl=10)
    world.now += 100
    resp = await w.app(post(old))
    assert resp.status == 400 and error_kind(resp) == "expired"


@pytest.mark.slow
async def test_rate_limited_is_429_with_retry_after_and_a_signed_body(world: World) -> None:
    """carol's burst of 2 is answered; the third call is a signed rate_limited reply and 429 with
    the wait in ``retry-after``, at once, while the only run slot is held by a script that loops."""
    w = world.worker(max_runs=1, owner_reserve=0, queue=4, per_caller=4, per_caller_queue=4)
    async with trio.open_nursery() as n:
        n.start_soon(w.app, post(world.call("api::spin", limits={"timeout": 3.0})))
        await _until(lambda: w.admission.running == 1)
        burst = [world.call("api::plus_one", [i], sender="carol") for i in range(3)]
        n.start_soon(w.app, post(burst[0]))
        n.start_soon(w.app, post(burst[1]))
        await _until(lambda: w.admission.queued == 2)  # the burst waits for the slot
        with trio.fail_after(2):  # not behind the loop: a rate-limited call takes no slot
            resp = await w.app(post(burst[2]))
        assert resp.status == 429
        assert w.admission.running == 1 and w.admission.queued == 2
        retry = header(resp, "retry-after")
        assert retry is not None and retry.isdigit() and 1 <= int(retry) <= 10  # one call in 10 s
        reply = world.reply(resp, burst[2])
        assert not reply.ok and error_of(reply)["kind"] == "rate_limited"
        assert "policy.toml" in error_of(reply).get("rule", "")
    world.now += 10  # one more call's worth of time
    again = world.call("api::plus_one", [5], sender="carol")
    w2 = world.worker()  # another process's worker shares the buckets (rates.sqlite)
    resp = await w2.app(post(again))
    assert resp.status == 200 and world.reply(resp, again).value == 6
    over = world.call("api::plus_one", [6], sender="carol")
    assert (await w2.app(post(over))).status == 429


async def test_metrics_count_rate_limited_and_denied_call(world: World) -> None:
    w = world.worker()
    for i in range(3):
        await w.app(post(world.call("api::plus_one", [i], sender="carol")))
    denied = world.call("api::who", sender="carol")  # carol may call only api::plus_one
    resp = await w.app(post(denied))
    assert resp.status == 403 and world.reply(resp, denied).denied
    resp = await w.app(post(world.call("api::plus_one", [1], sender="dave")))
    assert resp.status == 403
    text = (await w.app(get("/metrics"))).body.decode()
    assert 'peerbox_requests_total{outcome="ok"} 2' in text
    assert 'peerbox_requests_total{outcome="rate_limited"} 1' in text
    assert 'peerbox_requests_total{outcome="denied"} 2' in text
    assert 'peerbox_denials_total{action="call"} 2' in text


@pytest.mark.slow
async def test_revoke_endpoint_answers_without_a_run_slot(world: World) -> None:
    """alice grants dave ``call:api::plus_one``; while alice's loop holds the only slot, her
    revocation is answered (recorded, signed), and dave's next call with the token is refused."""
    w = world.worker(max_runs=1, owner_reserve=0, queue=4, per_caller=4)
    alice = world.store.get("alice")
    dave = world.store.get("dave")
    token = grant(alice.signing_key(), audience=dave.public_key, subject=world.bob.public_key,
                  grants=["call:api::plus_one"], now=world.now, ttl=3600)
    with_cap = world.call("api::plus_one", [1], sender="dave", caps=[token])
    resp = await w.app(post(with_cap))
    assert resp.status == 200 and world.reply(resp, with_cap).value == 2
    async with trio.open_nursery() as n:
        n.start_soon(w.app, post(world.exec(LOOP, limits={"timeout": 3.0}), "/v1/exec"))
        await _until(lambda: w.admission.running == 1)
        revocation = world.revoke(token)
        with trio.fail_after(2):
            resp = await w.app(post(revocation, "/v1/revoke"))
        assert resp.status == 200
        reply = world.reply(resp, revocation)
        assert reply.ok and reply.value["already"] is False and len(reply.value["revoked"]) == 64
        assert w.admission.running == 1 and w.admission.queued == 0
        assert (await w.app(post(revocation, "/v1/revoke"))).status == 409  # replay-safe
    again = world.call("api::plus_one", [1], sender="dave", caps=[token])
    resp = await w.app(post(again))
    assert resp.status == 403 and "revoked" in error_of(world.reply(resp, again))["message"]
    # dave is neither an issuer of the chain nor its subject: his revocation is a signed denial
    other = grant(alice.signing_key(), audience=dave.public_key, subject=world.bob.public_key,
                  grants=["call:api::who"], now=world.now, ttl=3600)
    by_dave = world.revoke(other, sender="dave")
    resp = await w.app(post(by_dave, "/v1/revoke"))
    assert resp.status == 403 and world.reply(resp, by_dave).denied
    text = (await w.app(get("/metrics"))).body.decode()
    assert 'peerbox_denials_total{action="revoke"} 1' in text
