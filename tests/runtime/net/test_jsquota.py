"""Storage quotas shared on JetStream (peerbox.net._jsquota) against a real nats-server (and SeaweedFS).

The per-caller ledger keeps the SQLite ledger's semantics on key-value
records (reserve before the change, settle after, give back on refusal), so a
caller's ``max_bytes`` holds across workers: writes spread over three workers
stop at the cap, a delete frees quota for the next write on any worker, and a
storm of concurrent writes from several connections never passes the cap. The
S3 backend's peer-wide tally is shared too: the peer's ``max_total_bytes``
holds across workers writing to one bucket.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable

import pytest
import trio

from peerbox.hostcalls import CallerQuota, HostCallError, LocalS3, Usage
from peerbox.net._jetstream import JetStreamState
from peerbox.net._jslimits import LIMIT_BUCKETS
from peerbox.net._jsquota import JetStreamLedger, JetStreamTally
from peerbox.wire._reply import verify_reply

from tests.conftest import DEMO_POLICY, NatsServer

from .conftest import SharedWorkers

CAPPED = DEMO_POLICY.replace(
    'actions = ["fs.write", "fs.list"]\nresources = ["inbox/**"]',
    'actions = ["fs.write", "fs.list", "fs.delete"]\nresources = ["inbox/**"]').replace(
    "limits = { timeout = 2.0 }", "limits = { timeout = 2.0, max_bytes = 100 }")


def fresh_peer() -> str:
    """A peer did no other test uses (the bucket is shared by the session's tests)."""
    return f"did:key:zTest{time.time_ns()}"


def open_state(url: str, *, timeout: float = 5.0) -> JetStreamState:
    return JetStreamState(url, buckets=LIMIT_BUCKETS, share=False, timeout=timeout).open()


def write(quota: CallerQuota, path: str, size: int) -> bool:
    """``quota``'s write of ``size`` bytes to ``path`` (the change itself is nothing here): done?"""
    try:
        quota.write(path, size, lambda: None)
        return True
    except HostCallError as exc:
        assert exc.kind == "quota_exceeded", exc
        return False


def test_a_caller_s_cap_holds_across_two_connections(nats_server: NatsServer) -> None:
    peer = fresh_peer()
    a, b = open_state(nats_server.url), open_state(nats_server.url)
    try:
        ledgers = [JetStreamLedger(a, peer), JetStreamLedger(b, peer)]
        quotas = [CallerQuota(ledger, "did:key:zcarol", max_bytes=100, owner="bob") for ledger in ledgers]
        assert [write(quotas[i % 2], f"f{i}", 30) for i in range(5)] == [True, True, True, False, False]
        assert ledgers[1].usage("did:key:zcarol") == (90, 3)
        with pytest.raises(HostCallError, match="at most 100 bytes in bob's storage"):
            quotas[1].write("f9", 30, lambda: None)
        assert write(quotas[0], "f0", 40)  # replacing her own 30-byte file adds 10
        assert ledgers[1].usage("did:key:zcarol") == (100, 3)
        CallerQuota(ledgers[1], owner="bob").delete("f1", lambda: None)  # the owner deletes one of hers
        assert ledgers[0].usage("did:key:zcarol") == (70, 2)
        assert write(quotas[1], "f5", 30)
        assert ledgers[0].usages() == {"did:key:zcarol": (100, 3)}
    finally:
        a.close()
        b.close()


def test_a_refused_change_gives_its_reservation_back(nats_server: NatsServer) -> None:
    with JetStreamState(nats_server.url, buckets=LIMIT_BUCKETS, share=False) as state:
        ledger = JetStreamLedger(state, fresh_peer())
        quota = CallerQuota(ledger, "did:key:zc", max_bytes=100, max_files=10)

        def refused() -> None:
            raise HostCallError("io_error", "the backend refused")

        with pytest.raises(HostCallError, match="the backend refused"):
            quota.write("a", 80, refused)
        assert ledger.usage("did:key:zc") == (0, 0)
        quota.mkdir("x/y", lambda p: False, lambda: None)
        quota.append("x/y/log", 10, lambda p: False, lambda: None)
        quota.append("x/y/log", 15, lambda p: True, lambda: None)
        assert ledger.usage("did:key:zc") == (25, 3)  # two directories and one file of 25 bytes
        ledger.reset("did:key:zc")
        assert ledger.usage("did:key:zc") == (0, 0)


def test_a_write_storm_from_three_connections_never_passes_the_cap(nats_server: NatsServer) -> None:
    peer = fresh_peer()
    states = [open_state(nats_server.url) for _ in range(3)]
    try:
        quotas = [CallerQuota(JetStreamLedger(s, peer), "did:key:zstorm", max_bytes=100) for s in states]
        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            done = list(pool.map(lambda i: write(quotas[i % 3], f"p{i}", 10), range(60)))
        assert sum(done) == 10
        assert JetStreamLedger(states[0], peer).usage("did:key:zstorm") == (100, 10)
    finally:
        for s in states:
            s.close()


def test_the_shared_tally_is_counted_once_and_checked_atomically(nats_server: NatsServer) -> None:
    peer, scope = fresh_peer(), "s3://test/bucket/prefix/"
    states = [open_state(nats_server.url) for _ in range(3)]
    try:
        tallies = [JetStreamTally(s, peer, scope) for s in states]
        tallies[0].start(lambda: Usage(50, 2))
        tallies[1].start(lambda: Usage(999, 999))  # a count already exists: the listing is not used
        assert tallies[2].current() == Usage(50, 2)

        def check(u: Usage) -> None:
            if u.bytes + 10 > 200:
                raise HostCallError("quota_exceeded", "over the peer's quota")

        def reserve(i: int) -> bool:
            try:
                tallies[i % 3].reserve(check, 10, 1)
                return True
            except HostCallError:
                return False

        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            assert sum(pool.map(reserve, range(40))) == 15
        tallies[1].adjust(-10, -1)
        assert tallies[0].current() == Usage(190, 16)
    finally:
        for s in states:
            s.close()


def test_quotas_fail_closed_without_jetstream(nats_servers: Callable[[], NatsServer]) -> None:
    server = nats_servers()
    with JetStreamState(server.url, buckets=LIMIT_BUCKETS, share=False, timeout=1.0) as state:
        quota = CallerQuota(JetStreamLedger(state, fresh_peer()), "did:key:zc", max_bytes=100)
        server.stop()
        changed = []
        with pytest.raises(HostCallError, match="shared quota store") as refused:
            quota.write("a", 10, lambda: changed.append(1))
        assert refused.value.kind == "io_error" and changed == []  # refused before the change


def _written(workers: SharedWorkers, index: int, script: str) -> tuple[bool, str]:
    body = workers.envelope(script)
    resp = trio.run(workers.send, index, body)
    reply = verify_reply(resp.body, request_bytes=body, target=workers.store.get("bob").public_key)
    if reply.error is None:
        return True, ""
    return False, str(reply.error.get("message", ""))


def test_a_caller_s_max_bytes_holds_across_three_workers(shared_workers: Callable[..., SharedWorkers]) -> None:
    workers = shared_workers(CAPPED, 3)
    # each worker has its own root here (local files): each makes inbox/ (a no-op when it exists)
    results = [_written(workers, i % 3, f'fs::mkdir("inbox"); fs::write("inbox/n{i}", "{"x" * 30}"); {i}')
               for i in range(5)]
    assert [ok for ok, _ in results] == [True, True, True, False, False], results
    assert "at most 100 bytes" in results[3][1]
    # her delete (on worker 0, whose root holds n0) frees quota for a write on another worker
    assert _written(workers, 0, 'fs::delete("inbox/n0")')[0]
    assert _written(workers, 2, 'fs::mkdir("inbox"); fs::write("inbox/again", "' + "y" * 30 + '")')[0]


def test_the_s3_peer_quota_holds_across_workers(shared_workers: Callable[..., SharedWorkers], local_s3: LocalS3,
                                                s3_table: Callable[..., dict[str, object]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in local_s3.environ().items():
        monkeypatch.setenv(key, value)  # the workers' S3 credentials
    table = s3_table("bob")
    meta = "\n[storage]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
    meta += "\n[quotas]\nmax_total_bytes = 250\n"
    # a run's first S3 use lists the prefix: give it time on a loaded machine
    workers = shared_workers(DEMO_POLICY.replace("timeout = 2.0", "timeout = 60.0"), 3, meta)
    assert _written(workers, 0, 'fs::mkdir("inbox")')[0]
    results = [_written(workers, i % 3, f'fs::write("inbox/n{i}", "{"x" * 60}"); {i}') for i in range(6)]
    assert [ok for ok, _ in results] == [True, True, True, True, False, False], results  # 4 x 60 <= 250
    assert "over its 250-byte quota" in results[4][1]
