"""Many workers, one peer: real ``peerbox serve`` processes hosting bob over one nats-server
(the ``cluster`` fixture; :mod:`._cluster` says how it is set up).

Each worker has a root of its own (``w1``, ``w2``...: a copy of bob's peer
directory, as an operator copies it to another machine: key, peer.toml,
policy; and alice in its directory, since bob's policy names her) and
serves ``--listen nats://...`` beside an HTTP/2 listener for its
``/metrics`` (``--name wN``, the ``worker`` label). bob's files are on S3
(SeaweedFS), so every worker sees the others' writes. The client signs as
alice and sends through :class:`NatsTransport`; nats-server's queue group
hands each request to one worker. Which worker answered is read back from
the workers' ``/metrics``, as an operator's Prometheus would.

Every worker keeps its nonces and its answers in JetStream (``--state``,
``--reply-cache``): a nonce one worker saw is a replay on every other, and a
retried request gets the reply it already had, from whichever worker.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import cbor2
import pytest
import trio

from peerbox.net import TransportError
from peerbox.net._natsclient import NatsTransport
from peerbox.wire import verify_reply

from ._cluster import CALL_TIMEOUT, Cluster, exec_nats, many, until

pytestmark = pytest.mark.slow  # nats-server, SeaweedFS and several `peerbox serve` processes

async def test_requests_spread_across_three_workers_sharing_bob_s_files(cluster: Cluster) -> None:
    for name in ("w1", "w2", "w3"):
        cluster.start(name)
    assert await many(cluster, ['fs::write("shared.txt", "written once"); 1']) == [1]
    values = await many(cluster, ['fs::read("shared.txt")'] * 30)
    assert values == ["written once"] * 30  # whichever worker ran it read the same S3 object
    counts = {name: cluster.answered(name) for name in ("w1", "w2", "w3")}
    assert sum(counts.values()) == 31, counts
    assert all(n > 0 for n in counts.values()), counts  # the queue group spread them (p(miss) ~ 1e-5)


async def test_the_same_request_sent_again_runs_once_whichever_worker_gets_it(cluster: Cluster) -> None:
    for name in ("w1", "w2", "w3"):
        cluster.start(name)
    req = cluster.request('fs::append("replayed.txt", "x"); 1')
    async with NatsTransport() as transport:
        status, body = await exec_nats(transport, cluster, req)
        assert status == 200 and cluster.value(body, req) == 1
        for _ in range(9):  # the queue group sends most of them to a worker that did not run it
            again = await exec_nats(transport, cluster, req)
            assert again == (200, body)  # a replay: the reply cache's answer, the very same signed bytes
    assert cluster.read("replayed.txt") == b"x"
    assert sum(1 for name in ("w1", "w2", "w3") if cluster.answered(name)) == 1


@pytest.mark.serial  # retries after timeouts: alone, not next to the other tests' load
async def test_sigkill_of_one_of_three_under_load_loses_no_acknowledged_write(cluster: Cluster) -> None:
    for name in ("w1", "w2", "w3"):
        cluster.start(name)
    acknowledged: dict[int, list[str]] = {c: [] for c in range(4)}
    unsure: list[str] = []  # a retry answered 409: its first try was on the killed worker, no reply kept
    retried = 0
    stop = trio.Event()

    async def client(c: int, transport: NatsTransport) -> None:
        nonlocal retried
        i = 0
        while not stop.is_set():
            line = f"{c}-{i}"
            req = cluster.request(f'fs::append("log-{c}.txt", "{line}\\n"); "{line}"')
            for attempt in range(6):
                try:
                    status, body = await exec_nats(transport, cluster, req)
                except TransportError:
                    retried += 1
                    continue  # same signed bytes again: the queue group picks a live worker
                if status == 200:
                    assert cluster.value(body, req) == line
                    acknowledged[c].append(line)
                else:
                    assert status == 409 and attempt > 0, (status, cbor2.loads(body))
                    unsure.append(line)
                break
            else:
                raise AssertionError(f"{line}: no answer after 6 attempts")
            i += 1

    async with NatsTransport() as transport, trio.open_nursery() as nursery:
        for c in range(4):
            nursery.start_soon(client, c, transport)
        # the load is under way (a slow machine's first calls may take a while) before the kill
        await until(lambda: sum(map(len, acknowledged.values())) >= 8, 30, "no call acknowledged")
        before = sum(map(len, acknowledged.values()))
        cluster.procs["w2"].send_signal(signal.SIGKILL)
        await trio.sleep(3.0 + CALL_TIMEOUT)  # the calls w2 held time out and are retried elsewhere
        # load goes on after the kill: calls are acknowledged by the two live workers
        await until(lambda: sum(map(len, acknowledged.values())) > before + 8, 60, "no call after the kill")
        stop.set()
    duplicates = 0
    for c, lines in acknowledged.items():
        present = cluster.read(f"log-{c}.txt").decode().splitlines()
        assert set(lines) <= set(present), sorted(set(lines) - set(present))  # nothing acknowledged is lost
        assert set(present) <= set(lines) | set(unsure)  # nothing that was not asked for
        duplicates += len(present) - len(set(present))
    assert duplicates == 0, retried  # a retry never ran a request twice
    # Only a request the killed worker held has no reply to give again: its outcome is unknown to the
    # client (at most once: the 409 says it must not be sent again); one per client at the most.
    assert len(unsure) <= 4, unsure


async def test_workers_resume_after_the_nats_server_restarts(cluster: Cluster, nats_servers: Any) -> None:
    server = nats_servers()  # a server of this test's own, to stop and start again on the same port
    cluster.nats_url = server.url
    for name in ("w1", "w2"):
        cluster.start(name)
    assert await many(cluster, ["1"]) == [1]
    server.stop()
    server.start()
    deadline = time.monotonic() + 20
    async with NatsTransport() as transport:
        while True:  # the workers reconnect (0.5 s apart) and nats-py renews their subscriptions
            req = cluster.request("2")
            try:
                status, body = await exec_nats(transport, cluster, req)
            except TransportError:  # no responders yet (or the client's own reconnection)
                assert time.monotonic() < deadline, "the workers did not come back after the restart"
                await trio.sleep(0.2)
                continue
            assert status == 200 and cluster.value(body, req) == 2
            break
    await many(cluster, ["3"] * 30)
    counts = {name: cluster.answered(name) for name in ("w1", "w2")}
    assert all(n > 1 for n in counts.values()), counts  # both resubscribed, not only one
    assert all(proc.poll() is None for proc in cluster.procs.values())


async def test_a_worker_joining_takes_load_without_restarting_the_others(cluster: Cluster) -> None:
    first = [cluster.start(name) for name in ("w1", "w2")]
    await many(cluster, ["1"] * 10)
    cluster.start("w3")
    await many(cluster, ["2"] * 30)
    assert cluster.answered("w3") > 0
    assert sum(cluster.answered(name) for name in ("w1", "w2", "w3")) == 40
    assert [p.pid for p in first] == [cluster.procs[n].pid for n in ("w1", "w2")]
    assert all(p.poll() is None for p in first)



async def test_a_caller_s_rate_holds_across_three_worker_processes(cluster: Cluster) -> None:
    # burst 6, then one call per 2 minutes: the 14 calls below come long before the next one is due
    policy = cluster.home / "peers" / "bob" / "policy.toml"
    policy.write_text(policy.read_text().replace(
        'actions = ["exec", "fs.*"]', 'actions = ["exec", "fs.*"]\nlimits = { calls_per_minute = 0.5, burst = 6 }'))
    for name in ("w1", "w2", "w3"):
        cluster.start(name)
    statuses = []
    async with NatsTransport() as transport:
        for i in range(14):
            req = cluster.request(f"{i}")
            status, body = await exec_nats(transport, cluster, req)
            statuses.append(status)
            if status == 429:
                reply = verify_reply(body, target=cluster.bob_key, request_bytes=req)
                assert reply.error is not None and reply.error["kind"] == "rate_limited"
    assert sorted(statuses) == [200] * 6 + [429] * 8  # one limit for the three workers, not three
    assert statuses[:6] == [200] * 6
    assert sum(cluster.answered(name) for name in ("w1", "w2", "w3")) == 6
