"""Per-caller rate limits: a GCRA bucket per (caller, rule) in SQLite, shared by every limiter on the file.

The clock is passed in (``now``), so every assertion here is exact and none
depends on how fast the machine is.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbox.policy import RateLimit, RuleRef
from peerbox.trust._rate import RATES_FILE, RateLimiter, RateStoreError

CAROL = "did:key:z6Mkcarol"
DAVE = "did:key:z6Mkdave"
T0 = 1_700_000_000.0


def limit(per_minute: float, burst: int, line: int = 21, index: int = 2) -> RateLimit:
    return RateLimit(key=f"{index}@{line}", rule=RuleRef("policy.toml", line, "allow", index),
                     per_minute=per_minute, burst=burst)


@pytest.fixture
def limiter(tmp_path: Path) -> Iterator[RateLimiter]:
    with RateLimiter(tmp_path / RATES_FILE) as lim:
        yield lim


def test_burst_then_one_per_interval(limiter: RateLimiter) -> None:
    six = [limit(6, 5)]  # one every 10 s, five at once
    assert [limiter.take(CAROL, six, T0) for _ in range(5)] == [None] * 5
    denied = limiter.take(CAROL, six, T0)
    assert denied is not None and denied.limit == six[0]
    assert limiter.take(CAROL, six, T0 + 9.9) is not None
    assert limiter.take(CAROL, six, T0 + 10) is None  # one more after one interval
    assert limiter.take(CAROL, six, T0 + 10) is not None
    assert limiter.take(DAVE, six, T0) is None  # buckets are per caller
    assert limiter.take(CAROL, six, T0 + 60) is None  # refilled: five again
    assert [limiter.take(CAROL, six, T0 + 60) for _ in range(4)] == [None] * 4
    assert limiter.take(CAROL, six, T0 + 60) is not None


def test_all_or_nothing_across_limits(limiter: RateLimiter) -> None:
    loose, tight = limit(60, 10, line=5, index=0), limit(6, 2, line=21, index=2)
    assert limiter.take(CAROL, [loose, tight], T0) is None
    assert limiter.take(CAROL, [loose, tight], T0) is None
    denied = limiter.take(CAROL, [loose, tight], T0)
    assert denied is not None and denied.limit == tight
    # the refusal took nothing from the loose bucket: it still has 8 of its 10
    assert [limiter.take(CAROL, [loose], T0) for _ in range(8)] == [None] * 8
    assert limiter.take(CAROL, [loose], T0) is not None


def test_retry_after_is_the_wait(limiter: RateLimiter) -> None:
    lim = [limit(30, 1)]  # one every 2 s
    assert limiter.take(CAROL, lim, T0) is None
    denied = limiter.take(CAROL, lim, T0 + 0.5)
    assert denied is not None
    assert denied.retry_after == pytest.approx(1.5)
    assert denied.retry_seconds == 2
    assert denied.message() == "rate limit of policy.toml:21 (30 calls per minute, burst 1): retry in 2 s"
    assert limiter.take(CAROL, lim, T0 + 0.5 + denied.retry_after) is None  # exactly then it passes


def test_two_limiters_on_one_file_share_buckets(tmp_path: Path) -> None:
    lim = [limit(6, 5)]
    with RateLimiter(tmp_path / RATES_FILE) as a, RateLimiter(tmp_path / RATES_FILE) as b:
        results: list[bool] = []
        start = threading.Barrier(10)

        def take(limiter: RateLimiter) -> None:
            start.wait()
            results.append(limiter.take(CAROL, lim, T0) is None)

        threads = [threading.Thread(target=take, args=(a if i % 2 else b,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count(True) == 5
    with RateLimiter(tmp_path / RATES_FILE) as after_restart:
        assert after_restart.take(CAROL, lim, T0 + 1) is not None  # the buckets persist


def test_no_limits_touches_no_database(tmp_path: Path) -> None:
    path = tmp_path / "sub" / RATES_FILE  # not even its directory exists
    with RateLimiter(path) as lim:
        assert lim.take(CAROL, [], T0) is None
    assert not path.exists()


def test_prune(limiter: RateLimiter) -> None:
    lim = [limit(6, 5)]
    assert limiter.take(CAROL, lim, T0) is None
    assert limiter.take(DAVE, lim, T0 + 3000) is None
    assert limiter.prune(T0 + 3700) == 1  # carol's bucket is idle for over an hour, dave's is not
    with sqlite3.connect(limiter.path) as db:
        assert db.execute("SELECT caller FROM rate").fetchall() == [(DAVE,)]


def test_a_broken_store_is_a_rate_store_error_without_host_path(tmp_path: Path) -> None:
    broken = tmp_path / "secret-host-dir" / RATES_FILE
    broken.parent.mkdir()
    broken.write_bytes(b"not a database" * 100)
    with RateLimiter(broken) as lim, pytest.raises(RateStoreError) as failed:
        lim.take(CAROL, [limit(6, 5)], T0)
    assert "secret-host-dir" not in str(failed.value) and RATES_FILE in str(failed.value)
    with pytest.raises(RateStoreError, match="closed"):
        lim.take(CAROL, [limit(6, 5)], T0)
