"""Rate limits shared on JetStream (peerbox.net._jslimits.JetStreamRates) against a real nats-server.

A caller's ``calls_per_minute``/``burst`` hold across every worker sharing the
state: three workers together admit exactly ``burst`` requests, then answer
429 with ``retry-after`` and a signed ``rate_limited`` reply; many concurrent
takes from several connections (a compare-and-set conflict storm) never admit
more than the bucket holds; with JetStream gone a rated request is refused,
never admitted unchecked.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable

import pytest
import trio

from peerbox.net._jetstream import JetStreamState
from peerbox.net._jslimits import LIMIT_BUCKETS, JetStreamRates
from peerbox.policy import RateLimit, RuleRef
from peerbox.trust import RateStoreError
from peerbox.wire._reply import verify_reply

from tests.conftest import DEMO_POLICY, NatsServer

from .conftest import SharedWorkers

RATED = DEMO_POLICY.replace("limits = { timeout = 2.0 }", "limits = { timeout = 2.0, calls_per_minute = 5, burst = 5 }")


def limit(per_minute: float, burst: int, index: int = 0) -> RateLimit:
    return RateLimit(key=f"{index}@{index + 3}", rule=RuleRef("policy.toml", index + 3, "allow", index),
                     per_minute=per_minute, burst=burst)


def fresh_target() -> bytes:
    """A peer key no other test uses (the bucket is shared by the session's tests)."""
    return time.time_ns().to_bytes(32, "big")


def open_state(url: str) -> JetStreamState:
    return JetStreamState(url, buckets=LIMIT_BUCKETS, share=False).open()


def test_a_caller_s_burst_holds_across_two_connections(nats_server: NatsServer) -> None:
    target = fresh_target()
    a, b = open_state(nats_server.url), open_state(nats_server.url)
    try:
        rates = [JetStreamRates(a, target), JetStreamRates(b, target)]
        now = 1_000_000.0
        admitted = [rates[i % 2].take("did:key:zcaller", [limit(60, 4)], now) is None for i in range(10)]
        assert admitted == [True] * 4 + [False] * 6
        denial = rates[0].take("did:key:zcaller", [limit(60, 4)], now)
        assert denial is not None and denial.retry_seconds == 1  # one call a second refills
        assert rates[1].take("did:key:zcaller", [limit(60, 4)], now + 1.0) is None
        assert rates[0].take("did:key:zother", [limit(60, 4)], now) is None  # another caller's own bucket
    finally:
        a.close()
        b.close()


def test_a_request_takes_from_every_limit_or_from_none(nats_server: NatsServer) -> None:
    with JetStreamState(nats_server.url, buckets=LIMIT_BUCKETS, share=False) as state:
        rates = JetStreamRates(state, fresh_target())
        tight, loose = limit(60, 1, 0), limit(60, 10, 1)
        now = 2_000_000.0
        assert rates.take("did:key:zc", [tight, loose], now) is None
        denial = rates.take("did:key:zc", [tight, loose], now)
        assert denial is not None and denial.limit == tight
        for _ in range(9):  # the refused request took nothing from the loose bucket
            assert rates.take("did:key:zc", [loose], now) is None
        assert rates.take("did:key:zc", [loose], now) is not None


def test_a_conflict_storm_never_admits_more_than_the_burst(nats_server: NatsServer) -> None:
    target = fresh_target()
    states = [open_state(nats_server.url) for _ in range(3)]
    try:
        rates = [JetStreamRates(s, target) for s in states]
        now = 3_000_000.0

        def take(i: int) -> bool:
            return rates[i % 3].take("did:key:zstorm", [limit(1, 12)], now) is None

        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            admitted = list(pool.map(take, range(120)))
        assert sum(admitted) == 12
    finally:
        for s in states:
            s.close()


def test_rates_fail_closed_without_jetstream(nats_servers: Callable[[], NatsServer]) -> None:
    server = nats_servers()
    with JetStreamState(server.url, timeout=1.0, buckets=LIMIT_BUCKETS, share=False) as state:
        rates = JetStreamRates(state, fresh_target())
        assert rates.take("did:key:zc", [limit(60, 2)], 100.0) is None
        server.stop()
        with pytest.raises(RateStoreError, match="shared rate limits"):
            rates.take("did:key:zc", [limit(60, 2)], 100.0)
        assert rates.take("did:key:zc", [], 100.0) is None  # an unrated request needs no store


def test_three_workers_together_admit_the_caller_s_burst_then_429(
        shared_workers: Callable[..., SharedWorkers]) -> None:
    workers = shared_workers(RATED, 3)
    bob = workers.store.get("bob").public_key

    async def main() -> None:
        statuses = []
        for i in range(12):  # spread over the workers in turn
            statuses.append((await workers.send(i % 3, workers.envelope(f"{i}"))).status)
        assert statuses == [200] * 5 + [429] * 7
        body = workers.envelope("99")
        refused = await workers.send(1, body)
        assert refused.status == 429
        assert ("retry-after", "12") in refused.headers  # 5 a minute: one every 12 s
        reply = verify_reply(refused.body, request_bytes=body, target=bob)
        assert reply.error is not None and reply.error["kind"] == "rate_limited"
        assert "5 calls per minute" in str(reply.error["message"])

    trio.run(main)
    workers.now += 12  # one more is allowed a period later, on any worker
    assert trio.run(workers.send, 2, workers.envelope("late")).status == 200
