"""A worker on NATS end to end: the Python client, a directory entry naming a NATS server, drain.

The worker is served in this process by ``serve_nats`` with its access-logged
app, what ``peerbox serve --listen nats://...`` runs (the ``--listen`` URL
parsing is the transports branch's); a real nats-server carries every request.
The client is :class:`~peerbox.AsyncClient` with :class:`NatsTransport` and a
directory entry whose URL is ``nats://HOST:PORT``: the peer's did comes from
the entry (through the envelope's target).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio

import peerbox
from peerbox.net import AsyncClient, RemoteRejected, Worker
from peerbox.net._natsclient import NatsTransport
from peerbox.peer import Entry
from peerbox.wire import make_request

from ._serve_helpers import on_nats

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path: Path, demo_policy: str) -> peerbox.PeerStore:
    """alice, bob, carol and dave under ``tmp_path``; bob and carol with the demo policy."""
    peers = peerbox.PeerStore(tmp_path)
    for name in ("alice", "bob", "carol", "dave"):
        peers.init(name)
    for name in ("bob", "carol"):
        (tmp_path / "peers" / name / "policy.toml").write_text(demo_policy)
    return peers


def entry(store: peerbox.PeerStore, name: str, url: str) -> Entry:
    peer = store.get(name)
    return Entry(name=name, did=peer.did, public_key=peer.public_key, url=url)


async def test_the_client_calls_peers_by_their_nats_url(tmp_path: Path, store: peerbox.PeerStore,
                                                         nats_server: Any) -> None:
    async with on_nats(tmp_path, nats_server.url) as (url, _):
        bob, carol = entry(store, "bob", url), entry(store, "carol", url)
        alice = AsyncClient(store.get("alice").signing_key(), str(tmp_path), transport=NatsTransport())
        async with alice:
            reply = await alice.exec(bob, 'fs::mkdir("inbox"); fs::write("inbox/n.txt", "hi"); 7 * 6')
            assert reply.ok and reply.value == 42
            reply = await alice.exec(bob, 'fs::list("inbox")')  # the write above is there
            assert reply.ok and "n.txt" in str(reply.value)
            reply = await alice.exec(carol, "params.who", params={"who": "carol"})  # same server, other peer
            assert reply.value == "carol"
        dave = AsyncClient(store.get("dave").signing_key(), str(tmp_path), transport=NatsTransport())
        async with dave:
            reply = await dave.exec(bob, "1")
            assert reply.denied  # a signed denial (403) verified by the client


async def test_a_replayed_envelope_is_refused_409(tmp_path: Path, store: peerbox.PeerStore,
                                                  nats_server: Any) -> None:
    async with on_nats(tmp_path, nats_server.url) as (url, _), NatsTransport() as transport:
        req = make_request(store.get("alice").signing_key(), target=store.get("bob").public_key,
                           script="1", now=int(time.time()))
        assert (await transport.exec(url, req, 10.0))[0] == 200
        client = AsyncClient(store.get("alice").signing_key(), str(tmp_path), transport=transport)
        status, _, body = await transport.exec(url, req, 10.0)
        with pytest.raises(RemoteRejected) as info:
            client.check(entry(store, "bob", url), req, status, body)
        assert info.value.status == 409 and info.value.kind == "replay"


async def test_many_concurrent_calls_share_one_connection(tmp_path: Path, store: peerbox.PeerStore,
                                                          nats_server: Any) -> None:
    async with on_nats(tmp_path, nats_server.url) as (url, _):
        transport = NatsTransport()
        alice = AsyncClient(store.get("alice").signing_key(), str(tmp_path), transport=transport)
        bob = entry(store, "bob", url)
        values: list[Any] = []
        async with alice:

            async def one(i: int) -> None:
                values.append((await alice.exec(bob, "params.i * 3", params={"i": i})).value)

            async with trio.open_nursery() as n:
                for i in range(24):  # within the per-caller queue of a 2-run worker
                    n.start_soon(one, i)
        assert sorted(values) == [3 * i for i in range(24)]
        assert transport.connections_opened == 1


async def test_stopping_the_worker_answers_the_calls_in_flight(tmp_path: Path, store: peerbox.PeerStore,
                                                               nats_server: Any) -> None:
    slow = "let n = 0; for i in 0..400000 { n += 1; } n"
    alice = AsyncClient(store.get("alice").signing_key(), str(tmp_path), transport=NatsTransport())
    got: list[Any] = []
    serving = trio.CancelScope()
    running: list[tuple[str, Worker]] = []
    ready = trio.Event()

    async def serve() -> None:
        with serving:
            async with on_nats(tmp_path, nats_server.url) as (url, worker):
                running.append((url, worker))
                ready.set()
                await trio.sleep_forever()

    async with alice, trio.open_nursery() as n:
        n.start_soon(serve)
        await ready.wait()
        url, worker = running[0]

        async def call() -> None:
            got.append(await alice.exec(entry(store, "bob", url), slow, timeout=20.0))

        n.start_soon(call)
        with trio.fail_after(10):
            while worker.admission.running == 0:
                await trio.sleep(0.002)
        serving.cancel()  # the worker drains: the run in flight ends and is answered
    assert serving.cancelled_caught
    assert len(got) == 1 and got[0].ok and got[0].value == 400000
