"""Shared rate limits and quotas: cost per call on JetStream (compare-and-set) next to SQLite.

Usage: ``.venv/bin/python bench/limits_bench.py [CALLS]``. Starts a real
``nats-server -js`` on loopback (:class:`peerbox.net.LocalNats`), then times, one
thread at a time and from 8 threads at once (each thread its own caller, as
different callers would be), in the same run:

- ``rate``: an admitted :meth:`take` (a burst large enough never to refuse) on
  :class:`peerbox.net._jslimits.JetStreamRates` and on :class:`peerbox.trust.RateLimiter`;
- ``quota``: a tracked :meth:`CallerQuota.write` (reserve, then settle) of a
  fresh path on :class:`peerbox.net._jsquota.JetStreamLedger` and on
  :class:`peerbox.hostcalls.Ledger`.

Prints µs of wall time per call and the JetStream / SQLite ratio (the figure
to compare between runs: this shared machine is noisy).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from peerbox.hostcalls import CallerQuota, Ledger, LedgerStore  # noqa: E402
from peerbox.net._jetstream import JetStreamState  # noqa: E402
from peerbox.net._jslimits import LIMIT_BUCKETS, JetStreamRates  # noqa: E402
from peerbox.net._jsquota import JetStreamLedger  # noqa: E402
from peerbox.net._localnats import LocalNats  # noqa: E402
from peerbox.policy import RateLimit, RuleRef  # noqa: E402
from peerbox.trust import RateLimiter, RateStore  # noqa: E402

LIMIT = [RateLimit(key="0@3", rule=RuleRef("policy.toml", 3, "allow", 0), per_minute=1e6, burst=10**9)]


def _time(call: Callable[[int, int], None], calls: int, threads: int) -> float:
    """µs of wall time per call: ``call(thread, i)`` ``calls`` times over ``threads`` threads."""
    per = calls // threads

    def work(t: int) -> None:
        for i in range(per):
            call(t, i)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    wall = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return (time.perf_counter() - wall) / (per * threads) * 1e6


def _rate(store: RateStore) -> Callable[[int, int], None]:
    def call(t: int, i: int) -> None:
        assert store.take(f"did:key:zcaller{t}", LIMIT, time.time()) is None
    return call


def _quota(ledger: LedgerStore, run: str) -> Callable[[int, int], None]:
    def call(t: int, i: int) -> None:
        CallerQuota(ledger, f"did:key:zcaller{t}", max_bytes=10**12).write(f"{run}/{t}/{i}", 10, lambda: None)
    return call


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 800
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalNats(Path(tmp) / "nats")
        server.start()
        rows = []
        try:
            with JetStreamState(server.url, buckets=LIMIT_BUCKETS) as state:
                target = os.urandom(32)
                pairs = {
                    "rate": (_rate(JetStreamRates(state, target)), _rate(RateLimiter(Path(tmp) / "rates.sqlite"))),
                    "quota": (_quota(JetStreamLedger(state, "did:key:zbench"), "js"),
                              _quota(Ledger(Path(tmp) / "quota.sqlite"), "sq")),
                }
                for what, (js, sq) in pairs.items():
                    for threads in (1, 8):
                        _time(js, 80, threads)  # warm up
                        _time(sq, 80, threads)
                        js_us, sq_us = _time(js, calls, threads), _time(sq, calls, threads)
                        rows.append({"what": what, "threads": threads, "jetstream_us": round(js_us, 1),
                                     "sqlite_us": round(sq_us, 1), "ratio": round(js_us / sq_us, 2)})
        finally:
            server.stop()
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
