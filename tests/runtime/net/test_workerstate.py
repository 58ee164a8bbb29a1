"""Shared state on JetStream (peerbox.net._workerstate, _jsstores, _jetstream) against a real nats-server.

Two in-process workers with separate roots host the same peer (bob's key copied, as every worker
hosting a peer holds its key) and share one JetStream: a replay sent to the other worker is
refused, a revocation sent to one is enforced by the other, a retried request gets the first
answer's bytes from the reply cache (the script ran once), an expired nonce may be used again, and
with JetStream gone a request is refused ``unavailable``, never answered without its nonce recorded.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
import trio

import peerbox
from peerbox.net._h2server import HttpRequest, HttpResponse
from peerbox.net._jetstream import JetStreamState, SharedStateError
from peerbox.net._jsstores import JetStreamNonces
from peerbox.net._worker import Worker
from peerbox.net._workerstate import WorkerState
from peerbox.wire._envelope import make_request
from peerbox.wire._reply import verify_reply
from peerbox.wire import NonceStoreError, grant, make_revoke_request, token_id

from tests.conftest import NatsServer

WRITE = 'fs::mkdir("inbox"); fs::write("inbox/" + params.n, "ran"); params.n'


class Pair:
    """bob hosted by two workers (roots ``a`` and ``b``) sharing JetStream at ``url``."""

    def __init__(self, tmp: Path, policy: str, url: str, *, reply_cache: bool = False) -> None:
        self.a, self.b = tmp / "a", tmp / "b"
        store = peerbox.PeerStore(self.a)
        for name in ("alice", "bob"):
            store.init(name)
        (self.a / "peers" / "bob" / "policy.toml").write_text(policy)
        shutil.copytree(self.a, self.b)
        self.store = store
        self.now = int(time.time())
        self.states = [WorkerState(url, reply_cache=reply_cache, timeout=2.0).open() for _ in range(2)]
        self.workers = [Worker(root, ["bob"], clock=lambda: self.now, state=state)
                        for root, state in zip((self.a, self.b), self.states, strict=True)]

    def envelope(self, script: str, **kw: Any) -> bytes:
        key = self.store.get("alice").signing_key()
        return make_request(key, target=self.store.get("bob").public_key, script=script, now=self.now, **kw)

    def send(self, index: int, body: bytes, path: str = "/v1/exec") -> HttpResponse:
        req = HttpRequest(method="POST", path=path, headers=(("content-type", "application/cose"),), body=body,
                          client="127.0.0.1:1", stream_id=1, conn_id=1)
        worker = self.workers[index]

        async def main() -> HttpResponse:
            return await worker.exec_body(req, path)

        return trio.run(main)

    def ran(self) -> int:
        """How many times a WRITE script ran, on either worker (files it wrote)."""
        return len([p for root in (self.a, self.b) for p in root.rglob("inbox/*")])

    def close(self) -> None:
        for w in self.workers:
            w.close()
        for s in self.states:
            s.close()


@pytest.fixture
def pair(tmp_path: Path, demo_policy: str, nats_server: NatsServer) -> Iterator[Pair]:
    p = Pair(tmp_path, demo_policy, nats_server.url)
    yield p
    p.close()


def reply_of(pair: Pair, resp: HttpResponse, body: bytes) -> Any:
    assert resp.status == 200, resp.body
    return verify_reply(resp.body, request_bytes=body, target=pair.store.get("bob").public_key)


def error_kind(resp: HttpResponse) -> str:
    return str(cbor2.loads(resp.body)["error"]["kind"])


def test_a_replay_sent_to_the_other_worker_is_refused(pair: Pair) -> None:
    body = pair.envelope(WRITE, params={"n": "one"})
    assert reply_of(pair, pair.send(0, body), body).value == "one"
    again = pair.send(1, body)
    assert again.status == 409 and error_kind(again) == "replay"
    again_here = pair.send(0, body)
    assert again_here.status == 409
    assert pair.ran() == 1
    # a fresh envelope is served by either
    other = pair.envelope(WRITE, params={"n": "two"})
    assert reply_of(pair, pair.send(1, other), other).value == "two"


def test_the_shared_nonce_store_forgets_a_pair_once_it_expired(nats_server: NatsServer) -> None:
    with JetStreamState(nats_server.url) as state:
        nonces = JetStreamNonces(state, b"\x01" * 32)
        caller, nonce = b"\x02" * 32, time.time_ns().to_bytes(16, "big")
        assert nonces.seen_or_add(caller, nonce, 1000, 900) is False
        assert nonces.seen_or_add(caller, nonce, 1000, 950) is True
        # at exp the request is refused as expired anyway: the pair counts as unseen and is replaced
        assert nonces.seen_or_add(caller, nonce, 2000, 1000) is False
        assert nonces.seen_or_add(caller, nonce, 2000, 1500) is True
        # another peer's store keeps its own pairs
        assert JetStreamNonces(state, b"\x03" * 32).seen_or_add(caller, nonce, 2000, 1500) is False


def test_a_revocation_sent_to_one_worker_is_enforced_by_the_other(tmp_path: Path, nats_server: NatsServer) -> None:
    pair = Pair(tmp_path, 'version = 1\n[[rule]]\neffect = "allow"\nwho = "owner"\nactions = ["*"]\n',
                nats_server.url)
    try:
        bob, alice = pair.store.get("bob"), pair.store.get("alice")
        token = grant(bob.signing_key(), audience=alice.public_key, subject=bob.public_key, grants=["exec"],
                      now=pair.now, ttl=3600)
        first = pair.envelope("1 + 1", caps=[token])
        assert reply_of(pair, pair.send(1, first), first).value == 2
        revoke = make_revoke_request(bob.signing_key(), target=bob.public_key, token=token, now=pair.now)
        answer = pair.send(0, revoke, "/v1/revoke")
        assert reply_of(pair, answer, revoke).value == {"revoked": token_id(token).hex(), "already": False}
        deadline = time.monotonic() + 10
        while True:  # the other worker learns it from its watch (or asks the bucket)
            body = pair.envelope("1 + 1", caps=[token])
            resp = pair.send(1, body)
            if resp.status == 403 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert resp.status == 403
        assert "revoked" in str(cbor2.loads(resp.body)) or resp.status == 403
    finally:
        pair.close()


def test_a_retried_request_gets_the_same_reply_and_runs_once(tmp_path: Path, demo_policy: str,
                                                             nats_server: NatsServer) -> None:
    pair = Pair(tmp_path, demo_policy, nats_server.url, reply_cache=True)
    try:
        body = pair.envelope(WRITE, params={"n": "once"})
        first = pair.send(0, body)  # its reply is "lost": the client sends the same bytes again
        retried = pair.send(1, body)
        assert retried.status == first.status == 200
        assert retried.body == first.body
        assert reply_of(pair, retried, body).value == "once"
        assert pair.ran() == 1
        # a failed run is kept too: the same denial again, not a replay error
        denied = pair.envelope('fs::read("secret")')
        d1, d2 = pair.send(0, denied), pair.send(1, denied)
        assert d1.status == d2.status == 200 and d1.body == d2.body
        assert reply_of(pair, d2, denied).error["kind"] == "denied"
    finally:
        pair.close()


def test_without_jetstream_a_request_is_refused_unavailable_and_not_run(
        tmp_path: Path, demo_policy: str, nats_servers: Callable[[], NatsServer]) -> None:
    server = nats_servers()
    pair = Pair(tmp_path, demo_policy, server.url)
    try:
        warm = pair.envelope(WRITE, params={"n": "warm"})
        assert reply_of(pair, pair.send(0, warm), warm).value == "warm"
        server.stop()
        body = pair.envelope(WRITE, params={"n": "down"})
        resp = pair.send(0, body)
        reply = reply_of(pair, resp, body)  # signed by bob
        assert reply.ok is False and reply.error["kind"] == "unavailable"
        assert "nonce" in reply.error["message"]
        assert pair.ran() == 1
        server.start()  # back: once reconnected, requests are served again
        deadline = time.monotonic() + 15
        while True:
            fresh = pair.envelope(WRITE, params={"n": "back"})
            resp = pair.send(0, fresh)
            if (resp.status == 200 and reply_of(pair, resp, fresh).ok) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert reply_of(pair, resp, fresh).value == "back"
        assert pair.ran() == 2
    finally:
        pair.close()


def test_opening_shared_state_without_a_server_is_a_typed_error(nats_servers: Callable[[], NatsServer]) -> None:
    server = nats_servers()
    url = server.url
    server.stop()
    with pytest.raises(SharedStateError, match="JetStream"):
        WorkerState(url, timeout=1.0).open()


def test_nonce_errors_are_typed(nats_servers: Callable[[], NatsServer]) -> None:
    server = nats_servers()
    with JetStreamState(server.url, timeout=1.0) as state:
        server.stop()
        with pytest.raises(NonceStoreError, match="shared nonce store"):
            JetStreamNonces(state, b"\x01" * 32).seen_or_add(b"\x02" * 32, b"\x03" * 16, 100, 50)


def test_serve_refuses_a_reply_cache_without_shared_state(tmp_path: Path) -> None:
    from peerbox.net import run_shared

    with pytest.raises(peerbox.UsageError, match="--reply-cache needs --state"):
        run_shared(str(tmp_path), None, "127.0.0.1:0", reply_cache=True)
