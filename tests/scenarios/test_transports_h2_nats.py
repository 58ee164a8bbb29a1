"""One signed request over HTTP/2 and NATS: the same verified result (test_transports.py does h2 and ws).

Each transport serves a shared-mode worker hosting bob and carol (HTTP/2
through ``serve_worker``; NATS through ``serve_nats`` and a real
nats-server). Real servers only.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox.net._h2client import H2Transport, Transport
from peerbox.net._natsclient import NatsTransport
from peerbox.wire import make_request, verify_reply

from ._serve_helpers import on_nats, shared

pytestmark = pytest.mark.slow

#: The transports of this branch.
TRANSPORTS = ["h2", "nats"]


@pytest.fixture
def store(tmp_path: Path, demo_policy: str) -> peerbox.PeerStore:
    """alice, bob, carol and dave under ``tmp_path / "root"``; bob and carol with the demo policy."""
    peers = peerbox.PeerStore(tmp_path / "root")
    for name in ("alice", "bob", "carol", "dave"):
        peers.init(name)
    for name in ("bob", "carol"):
        (tmp_path / "root" / "peers" / name / "policy.toml").write_text(demo_policy)
    return peers


@asynccontextmanager
async def served(kind: str, root: Path,
                 request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Transport]]:
    """A worker for bob and carol under ``root`` on transport ``kind``: (its URL, a client transport)."""
    if kind == "h2":
        async with shared(root) as (url, _), H2Transport() as h2:
            yield url, h2
    elif kind == "nats":
        server = request.getfixturevalue("nats_server")
        async with on_nats(root, server.url) as (url, _), NatsTransport() as nats:
            yield url, nats
    else:  # pragma: no cover
        raise AssertionError(kind)


def outcome(store: peerbox.PeerStore, status: int, body: bytes, req: bytes) -> tuple[Any, ...]:
    reply = verify_reply(body, target=store.get("bob").public_key, request_bytes=req)
    return status, reply.ok, reply.denied, reply.value, reply.error


async def test_one_signed_request_verifies_the_same_over_every_transport(
        tmp_path: Path, store: peerbox.PeerStore, request: pytest.FixtureRequest) -> None:
    now = int(time.time())
    allowed = make_request(store.get("alice").signing_key(), target=store.get("bob").public_key,
                           script="params.xs.len() * 7", params={"xs": [1, 2, 3]}, now=now)
    denied = make_request(store.get("dave").signing_key(), target=store.get("bob").public_key,
                          script="1", now=now)
    results: dict[str, list[tuple[Any, ...]]] = {}
    for kind in TRANSPORTS:
        root = tmp_path / f"root-{kind}"  # each worker its own copy: the same nonce is fresh to each
        shutil.copytree(tmp_path / "root", root)
        async with served(kind, root, request) as (url, transport):
            results[kind] = []
            for req in (allowed, denied):
                status, ctype, body = await transport.exec(url, req, 20.0)
                assert ctype == "application/cose"
                results[kind].append(outcome(store, status, body, req))
    first = results[TRANSPORTS[0]]
    assert first[0][:4] == (200, True, False, 21) and first[1][:3] == (403, False, True)
    assert all(results[kind] == first for kind in TRANSPORTS)


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_exec_denial_and_replay_on_each_transport(
        kind: str, tmp_path: Path, store: peerbox.PeerStore, request: pytest.FixtureRequest) -> None:
    async with served(kind, tmp_path / "root", request) as (url, transport):
        req = make_request(store.get("alice").signing_key(), target=store.get("carol").public_key,
                           script="6 * 7", now=int(time.time()))
        status, _, body = await transport.exec(url, req, 20.0)
        reply = verify_reply(body, target=store.get("carol").public_key, request_bytes=req)
        assert status == 200 and reply.value == 42
        status, _, _ = await transport.exec(url, req, 20.0)
        assert status == 409
