"""Many workers, one peer's logic: a change pushed to one worker runs on all of them (``--state``).

Three real ``peerbox serve`` workers host bob, each from its own root (the
``cluster`` fixture, :mod:`._cluster`). bob's ``greet`` module is at version 1
in every root; the owner pushes version 2 over NATS (one worker answers it),
and every worker installs it from the ``peerbox-logic`` bucket. A record
sealed by another key than bob's, put straight into the bucket, is refused
by every worker (their logs say so) and changes nothing; a worker started
after the push answers with the new version from its first call.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from peerbox.net import TransportError
from peerbox.net._jetstream import JetStreamState, target_token
from peerbox.net._jslogic import LOGIC_BUCKET
from peerbox.net._natsclient import NatsTransport
from peerbox.peer import PeerLogic, PeerStore, Version, make_statement, sha256_hex
from peerbox.trust import make_logic_request
from peerbox.wire import KeyPair, verify_reply

from ._cluster import CALL_TIMEOUT, Cluster, many, until

pytestmark = pytest.mark.slow  # nats-server, SeaweedFS and several `peerbox serve` processes

V1 = 'fn hello() { "v1" }\n'
V2 = 'fn hello() { "v2" }\n'
CALL = 'import "greet" as g; g::hello()'
WORKERS = ("w1", "w2", "w3")


def _bob_logic(cluster: Cluster, worker: str | None = None) -> PeerLogic:
    """bob's logic in worker ``worker``'s root (None: the original root the workers copy)."""
    root = cluster.home if worker is None else cluster.base / worker
    return PeerLogic(PeerStore(root).get("bob"))


def _versions(cluster: Cluster, worker: str) -> list[str]:
    """The sources of ``greet``'s versions in ``worker``'s root, oldest first."""
    logic = _bob_logic(cluster, worker)
    return [logic.history.source(v.sha256) for v in logic.versions("greet")]


def _log(cluster: Cluster, worker: str) -> str:
    """Everything ``worker`` wrote to its stderr (its logs)."""
    files = sorted((cluster.base / worker).glob("serve-stderr-*"))
    return "".join(p.read_text(errors="replace") for p in files)


async def _push(cluster: Cluster, source: str) -> dict[str, object]:
    """bob's owner installs ``source`` as ``greet`` over NATS; the signed answer's value."""
    bob = PeerStore(cluster.home).get("bob").signing_key()
    req = make_logic_request(bob, target=cluster.bob_key, module="greet", source=source, now=int(time.time()))
    async with NatsTransport() as transport:
        status, _, body = await transport.exec(cluster.nats_url, req, CALL_TIMEOUT, path="/v1/logic")
    reply = verify_reply(body, target=cluster.bob_key, request_bytes=req)
    assert status == 200 and reply.ok, reply.error
    assert isinstance(reply.value, dict)
    return reply.value


def _start_with_v1(cluster: Cluster) -> None:
    """greet at version 1 in bob's original root, which the three workers' roots copy; the owner
    may change bob's logic, alice may import it."""
    policy = cluster.home / "peers" / "bob" / "policy.toml"
    text = policy.read_text().replace('actions = ["*"]', 'actions = ["*", "logic.*"]')
    alice = 'actions = ["exec", "fs.*"]'
    policy.write_text(text.replace(alice, 'actions = ["exec", "fs.*", "module.import"]'))
    _bob_logic(cluster).set("greet", V1)
    for name in WORKERS:
        cluster.start(name)


async def _all_on_v2(cluster: Cluster, workers: tuple[str, ...] = WORKERS) -> None:
    await until(lambda: all(_versions(cluster, w)[-1:] == [V2] for w in workers), 30,
                "every worker did not install version 2")


async def test_a_push_answered_by_one_worker_runs_on_every_worker(cluster: Cluster) -> None:
    _start_with_v1(cluster)
    assert await many(cluster, [CALL] * 6) == ["v1"] * 6
    answered = await _push(cluster, V2)
    assert answered["version"] == 2
    await _all_on_v2(cluster)
    before = {name: cluster.answered(name) for name in WORKERS}
    assert await many(cluster, [CALL] * 30) == ["v2"] * 30
    assert all(cluster.answered(name) > before[name] for name in WORKERS), before  # each ran some
    for name in WORKERS:
        assert _versions(cluster, name) == [V1, V2]
        assert _bob_logic(cluster, name).verify() == {"greet": []}  # a history that checks out
    # one worker answered the push; the two others installed it from the bucket
    assert sum("installed version 2 (from another worker)" in _log(cluster, n) for n in WORKERS) == 2


def _forged(cluster: Cluster, source: str) -> bytes:
    """A record of ``greet`` for bob, as a worker publishes one, but made and sealed by another key."""
    mallory, now = KeyPair.generate(), int(time.time())
    statement = make_statement(mallory, peer=cluster.bob_key, module="greet", source=source, now=now + 60)
    entry = Version(version=3, module="greet", sha256=sha256_hex(source), size=len(source), time=now,
                    action="set", restores=None, by=mallory.did, statement=statement, cap=None, rule=None,
                    prev="", seal=b"")
    entry = dataclasses.replace(entry, seal=mallory.sign(entry.signed_bytes()))
    return json.dumps({"entry": entry.record(), "source": source}).encode()


def _put(cluster: Cluster, value: bytes) -> None:
    """Put ``value`` into the logic bucket under bob's ``greet``, as anyone able to write there can."""
    with JetStreamState(cluster.nats_url, share=False, buckets=((LOGIC_BUCKET, None),)) as state:
        kv = state.bucket(LOGIC_BUCKET)

        async def put() -> None:
            await kv.put(f"{target_token(cluster.bob_key)}.greet", value)

        state.call(put, "test put")


async def test_a_record_sealed_by_another_key_is_refused_by_every_worker(cluster: Cluster) -> None:
    _start_with_v1(cluster)
    await _push(cluster, V2)
    await _all_on_v2(cluster)
    _put(cluster, _forged(cluster, 'fn hello() { "forged" }\n'))
    await until(lambda: all("logic sync: refused" in _log(cluster, n) for n in WORKERS), 30,
                "every worker did not refuse the forged record")
    assert await many(cluster, [CALL] * 30) == ["v2"] * 30
    for name in WORKERS:
        assert _versions(cluster, name) == [V1, V2]
        assert "the peer's seal does not match" in _log(cluster, name)


async def test_a_worker_started_after_the_push_runs_the_new_version_from_its_first_answer(
        cluster: Cluster) -> None:
    _start_with_v1(cluster)
    await _push(cluster, V2)
    await _all_on_v2(cluster)
    for name in WORKERS:  # only the newcomer is left to answer
        proc = cluster.procs[name]
        proc.terminate()
        proc.wait(timeout=30)
    root: Path = cluster.base / "w4"
    cluster.start("w4")  # its root is a copy of the original: greet at version 1
    assert await many(cluster, [CALL]) == ["v2"]
    assert cluster.answered("w4") == 1
    assert _versions(cluster, "w4") == [V1, V2]
    assert root.is_dir()


async def test_a_push_after_the_nats_server_restarts_still_reaches_every_worker(
        cluster: Cluster, nats_servers: Any) -> None:
    server = nats_servers()  # a server of this test's own, to stop and start again on the same port
    cluster.nats_url = server.url
    _start_with_v1(cluster)
    server.stop()
    server.start()
    deadline = time.monotonic() + 30
    while True:  # the workers reconnect (0.5 s apart); the push is answered once one has
        try:
            await _push(cluster, V2)
            break
        except TransportError:
            assert time.monotonic() < deadline, "no worker answered after the restart"
            await trio.sleep(0.2)
    await _all_on_v2(cluster)  # the others' watches came back with the connection
