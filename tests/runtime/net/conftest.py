"""Fixtures for the network tests: peers behind a small h2 server (see _mini_server.py)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import peerbox
from peerbox.net._h2server import HttpRequest, HttpResponse
from peerbox.net._worker import Worker
from peerbox.net._workerstate import WorkerState
from peerbox.wire._envelope import make_request

from tests.conftest import NatsServer

from ._mini_server import ServerThread, World


@pytest.fixture
def world(tmp_path: Path, demo_policy: str) -> Iterator[World]:
    """alice and bob under ``tmp_path`` (bob runs the demo policy); closed after the test."""
    w = World(tmp_path, demo_policy)
    yield w
    w.close()


@pytest.fixture
def served(world: World) -> Iterator[ServerThread]:
    """The mini server answering for ``world``'s bob on a thread; the directory points at it."""
    st = ServerThread(world)
    yield st
    st.stop()


class SharedWorkers:
    """bob hosted by ``n`` in-process workers, each from its own root (``w0``, ``w1``...: copies of
    one, as every worker hosting a peer holds its key) and each with its own connection to the
    shared state at ``url`` (``peerbox serve --state``). ``meta`` is appended to bob's ``peer.toml``
    (a ``[storage]`` or ``[quotas]`` table). The workers' clock is :attr:`now`, fixed."""

    def __init__(self, tmp: Path, policy: str, url: str, n: int, meta: str = "") -> None:
        first = tmp / "w0"
        self.store = peerbox.PeerStore(first)
        for name in ("alice", "bob"):
            self.store.init(name)
        (first / "peers" / "bob" / "policy.toml").write_text(policy)
        with open(first / "peers" / "bob" / "peer.toml", "a") as f:
            f.write(meta)
        self.roots = [first]
        for i in range(1, n):
            shutil.copytree(first, tmp / f"w{i}")
            self.roots.append(tmp / f"w{i}")
        self.now = int(time.time())
        # share=False: one connection each, as separate processes would have
        self.states = [WorkerState(url, timeout=5.0, share=False).open() for _ in range(n)]
        self.workers = [Worker(root, ["bob"], clock=lambda: self.now, state=state)
                        for root, state in zip(self.roots, self.states, strict=True)]

    def envelope(self, script: str, **kw: Any) -> bytes:
        """alice's signed exec of ``script`` for bob."""
        key = self.store.get("alice").signing_key()
        return make_request(key, target=self.store.get("bob").public_key, script=script, now=self.now, **kw)

    async def send(self, index: int, body: bytes) -> HttpResponse:
        """``body`` handed to worker ``index`` as an HTTP request (the worker's whole request path)."""
        req = HttpRequest(method="POST", path="/v1/exec", headers=(("content-type", "application/cose"),),
                          body=body, client="127.0.0.1:1", stream_id=1, conn_id=1)
        return await self.workers[index].exec_body(req, "/v1/exec")

    def close(self) -> None:
        for w in self.workers:
            w.close()
        for s in self.states:
            s.close()


@pytest.fixture
def shared_workers(tmp_path: Path, nats_server: NatsServer) -> Iterator[Callable[..., SharedWorkers]]:
    """``make(policy, n, meta="")``: :class:`SharedWorkers` on the session's nats-server (closed after
    the test)."""
    made: list[SharedWorkers] = []

    def make(policy: str, n: int, meta: str = "") -> SharedWorkers:
        made.append(SharedWorkers(tmp_path / f"set{len(made)}", policy, nats_server.url, n, meta))
        return made[-1]

    yield make
    for m in made:
        m.close()
