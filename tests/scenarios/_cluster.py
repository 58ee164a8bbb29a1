"""A cluster of real ``peerbox serve`` workers hosting bob over one nats-server (the ``cluster``
fixture of tests/scenarios/conftest.py), and the helpers its tests share.

Each worker has a root of its own (``w1``, ``w2``...: a copy of bob's peer
directory, as an operator copies it to another machine: key, peer.toml,
policy; and alice in its directory, since bob's policy names her) and
serves ``--listen nats://...`` beside an HTTP/2 listener for its
``/metrics`` (``--name wN``, the ``worker`` label). bob's files are on S3
(SeaweedFS), so every worker sees the others' writes. The client signs as
alice and sends through :class:`NatsTransport`; nats-server's queue group
hands each request to one worker. Which worker answered is read back from
the workers' ``/metrics``, as an operator's Prometheus would. Every worker
keeps its state in JetStream (``--state``, ``--reply-cache``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cbor2
import trio

from peerbox.hostcalls import LocalS3, StorageSite, open_storage
from peerbox.net._natsclient import NatsTransport
from peerbox.peer import Directory
from peerbox.wire import KeyPair, make_request, verify_reply

from ..conftest import Serving
from .test_s3_storage import _bob_on_s3

__all__ = ["Cluster", "CALL_TIMEOUT", "exec_nats", "many", "until"]


#: How long a client waits for an answer before it retries the same signed bytes.
CALL_TIMEOUT = 4.0


class Cluster:
    """bob on S3, hosted by workers started on demand (:meth:`start`), each from its own root."""

    def __init__(self, base: Path, nats_url: str, serving: Serving, stack: ExitStack,
                 s3: LocalS3, table: dict[str, object]) -> None:
        self.base, self.nats_url, self.serving, self.stack = base, nats_url, serving, stack
        self.s3, self.table = s3, table
        self.home = base / "home"  # alice's root (the client) and bob's original
        store = _bob_on_s3(self.home, table)
        self.alice: KeyPair = store.get("alice").signing_key()
        self.alice_did = store.get("alice").did
        bob = store.get("bob")
        self.bob_key, self.bob_did = bob.public_key, bob.did
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start worker ``name`` from a fresh root holding a copy of bob's directory."""
        root = self.base / name
        shutil.copytree(self.home / "peers" / "bob", root / "peers" / "bob")
        Directory(root).add("alice", self.alice_did)  # bob's policy names alice: the root must know her
        state = ["--state", self.nats_url, "--reply-cache"]
        port, proc = self.stack.enter_context(self.serving(
            root, "--peers", "bob", "--workers", "1", "--max-runs", "2", "--name", name,
            "--listen", "127.0.0.1:0", "--listen", self.nats_url, *state, may_be_killed=True))
        self.procs[name], self.ports[name] = proc, port
        return proc

    def request(self, script: str) -> bytes:
        """alice's signed exec of ``script`` for bob."""
        return make_request(self.alice, target=self.bob_key, script=script, now=int(time.time()))

    def value(self, body: bytes, req: bytes) -> Any:
        """bob's verified reply to ``req``: its value."""
        return verify_reply(body, target=self.bob_key, request_bytes=req).value

    def answered(self, name: str) -> int:
        """Requests worker ``name`` answered ``ok`` (its ``/metrics``, whose series carry its name)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}/metrics", timeout=10) as r:
            text = r.read().decode()
        wanted = f'peerbox_requests_total{{outcome="ok",worker="{name}"}} '
        return sum(int(line[len(wanted):]) for line in text.splitlines() if line.startswith(wanted))

    def read(self, path: str) -> bytes:
        """bob's file ``path``, read from S3 directly."""
        with open_storage(self.table, StorageSite(self.home, "bob"), None, self.s3.environ()) as direct:
            return direct.read_bytes(path)


async def exec_nats(transport: NatsTransport, cluster: Cluster, req: bytes) -> tuple[int, bytes]:
    status, _, body = await transport.exec(cluster.nats_url, req, CALL_TIMEOUT)
    return status, body


async def many(cluster: Cluster, scripts: list[str], in_flight: int = 6) -> list[Any]:
    """Send every script (``in_flight`` at once); each must be answered 200; their values in order."""
    values: list[Any] = [None] * len(scripts)
    limit = trio.CapacityLimiter(in_flight)
    async with NatsTransport() as transport:
        async def one(i: int) -> None:
            async with limit:
                req = cluster.request(scripts[i])
                status, body = await exec_nats(transport, cluster, req)
                assert status == 200, cbor2.loads(body)
                values[i] = cluster.value(body, req)

        async with trio.open_nursery() as nursery:
            for i in range(len(scripts)):
                nursery.start_soon(one, i)
    return values


async def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Wait until ``condition()`` holds, polling; fail with ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {seconds} s"
        await trio.sleep(0.1)
