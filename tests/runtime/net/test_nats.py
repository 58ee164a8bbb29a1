"""The NATS transport against a real nats-server: ``serve_nats`` with a real Worker, ``NatsTransport``.

Every test runs a real ``nats-server`` (the ``nats_server`` fixture, or one of
its own from ``nats_servers`` when it stops and restarts it) and a real
:class:`~peerbox.net._worker.Worker` behind :func:`serve_nats`; requests are
signed envelopes sent by :class:`NatsTransport`, so the statuses, refusals
and replies are those a client of a worker on NATS sees.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import cbor2
import pytest
import trio

import peerbox
from peerbox.net import ServeError, TransportError, Worker
from peerbox.net._access import access_logged
from peerbox.net._h2client import CALL_PATH
from peerbox.net._http import App, HttpRequest, HttpResponse, ServerLimits
from peerbox.net._natsbridge import peer_subject, queue_group, subject_safe
from peerbox.net._natsclient import NatsTransport, parse_nats_url
from peerbox.net._natsserve import serve_nats
from peerbox.wire import EnvelopeError, make_request, request_target, verify_reply

from ._mini_server import free_port

pytestmark = pytest.mark.slow

POLICY = """
version = 1
[[rule]]
effect = "allow"
who = "alice"
actions = ["exec"]
"""


class Peers:
    """alice, bob (who lets alice exec) and mallory (whom bob's policy allows nothing) under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = peerbox.PeerStore(root)
        for name in ("alice", "bob", "mallory"):
            self.store.init(name)
        (root / "peers" / "bob" / "policy.toml").write_text(POLICY)
        self.bob = self.store.get("bob")

    def envelope(self, script: str, *, sender: str = "alice", **kw: Any) -> bytes:
        key = self.store.get(sender).signing_key()
        return make_request(key, target=self.bob.public_key, script=script, now=int(time.time()), **kw)

    def value(self, body: bytes, request: bytes) -> Any:
        reply = verify_reply(body, target=self.bob.public_key, request_bytes=request)
        return reply.value


@pytest.fixture
def peers(tmp_path: Path) -> Peers:
    return Peers(tmp_path)


def counting(app: App, seen: list[str]) -> App:
    """``app``, noting each request's path in ``seen``."""

    async def counted(req: HttpRequest) -> HttpResponse:
        seen.append(req.path)
        return await app(req)

    return counted


@asynccontextmanager
async def worker_on_nats(peers: Peers, url: str, *, seen: list[str] | None = None,
                         limits: ServerLimits | None = None) -> AsyncIterator[Worker]:
    """A Worker hosting bob, served through ``serve_nats`` at ``url`` until the block ends."""
    worker = Worker(peers.root, ["bob"], max_runs=2)
    app = access_logged(worker.app, "nats")
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: serve_nats(
                counting(app, seen if seen is not None else []), url, worker.peers, limits=limits,
                task_status=task_status))
            yield worker
            nursery.cancel_scope.cancel()
    finally:
        worker.close()


def kind_of(body: bytes) -> str:
    kind = cbor2.loads(body)["error"]["kind"]
    assert isinstance(kind, str)
    return kind


# -- naming ------------------------------------------------------------------------------------


def test_a_did_key_is_one_subject_token_and_names_its_subjects(peers: Peers) -> None:
    did = peers.bob.did
    assert subject_safe(did)
    assert peer_subject(did, "exec") == f"peerbox.{did}.exec"
    assert queue_group(did) == f"peerbox.{did}"
    for bad in ("did:key:z6Mk.evil", "did:key:z6Mk*", "did:key:z6Mk>", "did:key:z6Mk l", "did:web:x", ""):
        assert not subject_safe(bad)
        with pytest.raises(peerbox.UsageError):
            peer_subject(bad, "exec")


def test_a_nats_url_names_the_server_and_maybe_the_did(peers: Peers) -> None:
    did = peers.bob.did
    assert parse_nats_url("nats://127.0.0.1") == ("nats://127.0.0.1:4222", None)
    assert parse_nats_url("nats://127.0.0.1:4333/") == ("nats://127.0.0.1:4333", None)
    assert parse_nats_url(f"nats://u:p@h:1/{did}") == ("nats://u:p@h:1", did)
    for bad in ("http://127.0.0.1:4222", "nats://", "nats://h:1/not-a-did"):
        with pytest.raises(TransportError) as info:
            parse_nats_url(bad)
        assert info.value.kind == "connect"


def test_request_target_reads_the_envelope_target_even_behind_large_params(peers: Peers) -> None:
    small = peers.envelope("1")
    assert request_target(small) == peers.bob.public_key
    big = peers.envelope("params.xs.len()", params={"xs": list(range(500))})
    assert request_target(big) == peers.bob.public_key
    with pytest.raises(EnvelopeError):
        request_target(b"\xa0not an envelope")


# -- serving -----------------------------------------------------------------------------------


async def test_exec_over_nats_returns_the_signed_reply(peers: Peers, nats_server: Any) -> None:
    seen: list[str] = []
    async with worker_on_nats(peers, nats_server.url, seen=seen), NatsTransport() as transport:
        req = peers.envelope("40 + 2")
        status, ctype, body = await transport.exec(nats_server.url, req, 10.0)
        assert (status, ctype) == (200, "application/cose")
        assert peers.value(body, req) == 42
        # the did in the URL works the same
        req = peers.envelope("[1, 2].len()")
        status, _, body = await transport.exec(f"{nats_server.url}/{peers.bob.did}", req, 10.0)
        assert status == 200 and peers.value(body, req) == 2
        assert transport.connections_opened == 1  # one connection per server, reused
    assert seen == ["/v1/exec", "/v1/exec"]


async def test_a_denial_is_a_signed_403_and_a_replay_409(peers: Peers, nats_server: Any) -> None:
    async with worker_on_nats(peers, nats_server.url), NatsTransport() as transport:
        req = peers.envelope("1", sender="mallory")
        status, _, body = await transport.exec(nats_server.url, req, 10.0)
        assert status == 403
        reply = verify_reply(body, target=peers.bob.public_key, request_bytes=req)
        assert not reply.ok
        req = peers.envelope("1")
        assert (await transport.exec(nats_server.url, req, 10.0))[0] == 200
        status, _, body = await transport.exec(nats_server.url, req, 10.0)
        assert status == 409 and kind_of(body) == "replay"


async def test_the_subject_decides_the_operation(peers: Peers, nats_server: Any) -> None:
    seen: list[str] = []
    async with worker_on_nats(peers, nats_server.url, seen=seen), NatsTransport() as transport:
        status, _, body = await transport.exec(nats_server.url, peers.envelope("1"), 10.0, path=CALL_PATH)
        assert status == 400 and kind_of(body) == "wrong_type"  # an exec envelope on .call
    assert seen == ["/v1/call"]


async def test_oversize_envelopes_are_refused_without_running(peers: Peers, nats_server: Any) -> None:
    seen: list[str] = []
    limits = ServerLimits(max_body=64 << 10)
    async with worker_on_nats(peers, nats_server.url, seen=seen, limits=limits), NatsTransport() as transport:
        req = peers.envelope("params.s.len()", params={"s": "x" * (80 << 10)})
        status, _, body = await transport.exec(nats_server.url, req, 10.0)
        assert status == 413 and kind_of(body) == "too_large"
        # over the NATS server's max_payload: refused by the client before it is sent
        huge = peers.envelope("params.s.len()", params={"s": "x" * (9 << 20)})
        with pytest.raises(TransportError, match="max_payload") as info:
            await transport.exec(nats_server.url, huge, 10.0)
        assert info.value.kind == "protocol"
    assert seen == []


async def test_no_worker_for_the_peer_is_unavailable(peers: Peers, nats_server: Any) -> None:
    async with NatsTransport() as transport:
        with pytest.raises(TransportError, match="no responders") as info:
            await transport.exec(nats_server.url, peers.envelope("1"), 10.0)
    assert info.value.kind == "unavailable"


async def test_no_nats_server_is_a_connect_error_and_a_serve_error(peers: Peers) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    async with NatsTransport(connect_timeout=2.0) as transport:
        with pytest.raises(TransportError) as info:
            await transport.exec(url, peers.envelope("1"), 10.0)
    assert info.value.kind == "connect"
    worker = Worker(peers.root, ["bob"], max_runs=1)
    try:
        with pytest.raises(ServeError, match="cannot connect to the NATS server") as failed:
            await serve_nats(worker.app, url, worker.peers)
        assert failed.value.exit_code == 2
    finally:
        worker.close()


async def test_two_workers_in_one_queue_group_share_the_requests(peers: Peers, nats_server: Any) -> None:
    first: list[str] = []
    second: list[str] = []
    async with worker_on_nats(peers, nats_server.url, seen=first), \
            worker_on_nats(peers, nats_server.url, seen=second), NatsTransport() as transport:
        reqs = [peers.envelope(f"{i} * 2") for i in range(40)]
        answers: list[tuple[int, bytes, bytes]] = []

        async def one(req: bytes) -> None:
            status, _, body = await transport.exec(nats_server.url, req, 20.0)
            answers.append((status, body, req))

        async with trio.open_nursery() as n:
            for req in reqs:
                n.start_soon(one, req)
    assert len(answers) == 40 and all(status == 200 for status, _, _ in answers)
    assert sorted(peers.value(body, req) for _, body, req in answers) == [2 * i for i in range(40)]
    assert len(first) + len(second) == 40  # each request reached one worker
    assert first and second  # and both took some


async def test_a_worker_resumes_after_the_nats_server_restarts(
        peers: Peers, nats_servers: Callable[[], Any]) -> None:
    server = nats_servers()
    async with worker_on_nats(peers, server.url):
        async with NatsTransport() as transport:
            req = peers.envelope("1 + 1")
            assert (await transport.exec(server.url, req, 10.0))[0] == 200
        server.stop()
        server.start()  # the same port: the worker reconnects and subscribes again by itself
        value = None
        with trio.move_on_after(30):
            while value is None:
                try:
                    async with NatsTransport() as transport:
                        req = peers.envelope("2 + 3")
                        status, _, body = await transport.exec(server.url, req, 2.0)
                        value = peers.value(body, req) if status == 200 else None
                except TransportError:
                    await trio.sleep(0.2)
        assert value == 5
