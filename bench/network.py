"""The network rows of the benchmark (issue 6): delegated calls to a ``peerbox serve`` worker.

Two measurements, each against a real worker started as a subprocess
(``python -m peerbox serve ... --listen 127.0.0.1:0 --port-file F``, stopped
with SIGTERM):

* **Round trips.** One trio :class:`~peerbox.net._client.AsyncClient` (so one
  multiplexed HTTP/2 connection) sends a trivial script (``params.x + 1``)
  from ``K`` concurrent tasks for a fixed time, K = 1, 16, 64. Every call is
  a full delegated call: the client signs the request envelope, the worker
  verifies it, checks the target's policy, runs the script, signs the reply,
  and the client verifies the reply and its value. Calls/s counts successful
  replies only; p50/p99 is their latency. A ``503`` (the worker's queues are
  full) or any other failure is counted and reported, never a success.
  Shared mode (the worker hosts the peer) and isolated mode (the same peer in
  its own child process, behind the router: one extra HTTP/2 hop).
* **Idle memory per peer.** The worker's VmRSS (``/proc/PID/status``) after
  startup and one call to each of a sample of its peers, with N peers hosted
  (1,000; 50 with ``--quick``) vs. with 1 peer: (RSS_N - RSS_1) / (N - 1).

Both client and worker run on the same (2-core) machine, so the client's own
signing/verifying competes with the worker for CPU: the calls/s figure is
for the pair, which is what a local caller sees.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROW_NAMES = ["net_shared_1", "net_shared_16", "net_shared_64",
             "net_isolated_1", "net_isolated_16", "net_isolated_64", "net_idle_peer"]
STREAMS = (1, 16, 64)
TARGET_CALLS = 1500.0          # calls/s, shared mode (best of the stream counts)
TARGET_P99_MS = 20.0           # at 64 streams
TARGET_KIB_PER_PEER = 200.0
SCRIPT = "params.x + 1"

# (full, quick): seconds of load per row, peers for the memory rows, peers of the sample called
DURATION = (3.0, 0.6)
MANY_PEERS = (1000, 50)
SAMPLE = (50, 10)

_POLICY = """\
version = 1

[[rule]]
who = "owner"
actions = ["*"]
effect = "allow"

[[rule]]
who = "*"
actions = ["exec"]
effect = "allow"
"""


@dataclass
class NetResult:
    """One load run: K streams against one worker."""

    name: str
    mode: str
    streams: int
    seconds: float = 0.0
    ok: int = 0
    rejected_503: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)   # seconds, successful calls
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float | None:
        if not self.latencies:
            return None
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))]


# ------------------------------------------------------------------ fixtures


def _make_root(n_peers: int) -> tuple[Path, list[str]]:
    """A temp root with a ``client`` peer and ``n_peers`` hosted peers that let anyone exec."""
    from peerbox.peer._peers import PeerStore

    root = Path(tempfile.mkdtemp(prefix="peerbox-bench-net-"))
    store = PeerStore(root)
    store.init("client")
    names = [f"p{i:04d}" for i in range(n_peers)]
    for name in names:
        peer = store.init(name)
        peer.paths.policy.write_text(_POLICY)
    return root, names


class _Worker:
    """``python -m peerbox serve`` as a subprocess; stopped with SIGTERM."""

    def __init__(self, root: Path, peers: list[str], mode: str) -> None:
        self.port_file = root / f"port-{mode}-{len(peers)}-{time.monotonic_ns()}"
        peer_arg = ["--peers", ",".join(peers)]
        cmd = [sys.executable, "-m", "peerbox", "serve", "--root", str(root), *peer_arg,
               "--mode", mode, "--listen", "127.0.0.1:0", "--port-file", str(self.port_file), "--quiet"]
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr)
        deadline = time.monotonic() + 60.0
        while not (self.port_file.exists() and self.port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                self.stderr.seek(0)
                raise RuntimeError(f"the worker did not start: {self.stderr.read().decode()[-400:]}")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text().strip())
        self.url = f"http://127.0.0.1:{self.port}"

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode

    def __enter__(self) -> _Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _directory(root: Path, names: list[str], url: str) -> Any:
    from peerbox.peer._directory import Directory
    from peerbox.peer._peers import PeerStore

    d = Directory(root / f"dir-{time.monotonic_ns()}")
    store = PeerStore(root)
    for name in names:
        d.add(name, store.get(name).did, url)
    return d


# ------------------------------------------------------------------ load


def _load(root: Path, directory: Any, target: str, runs: list[NetResult], duration: float,
          warm: int = 20) -> None:
    """``warm`` checked calls, then each of ``runs`` (K streams for ``duration`` s), over one
    AsyncClient connection. Raises if a warm-up call fails."""
    import trio

    from peerbox.net import AsyncClient, RemoteRejected
    from peerbox.peer._peers import PeerStore

    identity = PeerStore(root).get("client").signing_key()

    async def main() -> None:
        async with AsyncClient(identity, directory) as client:
            entry = client.resolve(target)
            for i in range(warm):                   # warm-up: connection, compile cache, threads
                r = await client.exec(entry, SCRIPT, {"x": i})
                if not r.ok or r.value != i + 1:
                    raise RuntimeError(f"warm-up call failed: {r.error or r.value!r}")
            for res in runs:
                deadline = trio.current_time() + duration

                async def stream(base: int, res: NetResult = res, deadline: float = deadline) -> None:
                    i = base
                    while trio.current_time() < deadline:
                        i += 1
                        t0 = time.perf_counter()
                        try:
                            r = await client.exec(entry, SCRIPT, {"x": i})
                        except RemoteRejected as exc:
                            if exc.status == 503:
                                res.rejected_503 += 1
                                await trio.sleep(0.001)
                            else:
                                res.failed += 1
                                res.first_error = res.first_error or str(exc)[:160]
                            continue
                        except Exception as exc:  # noqa: BLE001 - counted, reported
                            res.failed += 1
                            res.first_error = res.first_error or f"{type(exc).__name__}: {exc}"[:160]
                            continue
                        if r.ok and r.value == i + 1:
                            res.latencies.append(time.perf_counter() - t0)
                            res.ok += 1
                        else:
                            res.failed += 1
                            res.first_error = res.first_error or f"reply {r.error or r.value!r}"[:160]

                t0 = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for k in range(res.streams):
                        nursery.start_soon(stream, k * 10_000_000)
                res.seconds = time.perf_counter() - t0

    trio.run(main)


def _call_each(root: Path, directory: Any, targets: list[str]) -> list[float]:
    """One checked call to each of ``targets``, in turn, over one connection; seconds per call
    (the first includes opening the connection). Raises if a call fails."""
    import trio

    from peerbox.net._client import AsyncClient
    from peerbox.peer._peers import PeerStore

    identity = PeerStore(root).get("client").signing_key()
    times: list[float] = []

    async def main() -> None:
        async with AsyncClient(identity, directory) as client:
            for i, name in enumerate(targets):
                t0 = time.perf_counter()
                r = await client.exec(name, SCRIPT, {"x": i})
                times.append(time.perf_counter() - t0)
                if not r.ok or r.value != i + 1:
                    raise RuntimeError(f"call to {name} failed: {r.error or r.value!r}")

    trio.run(main)
    return times


def bench_network(quick: bool, wanted: Callable[[str], bool]) -> list[Any]:
    """The network rows (those ``wanted``) as :class:`_rows.Row` (group ``"network"``)."""
    from _rows import Row, _err

    q = 1 if quick else 0
    duration = DURATION[q]
    rows: list[Row] = []
    modes = [m for m in ("shared", "isolated") if any(wanted(f"net_{m}_{k}") for k in STREAMS)]
    root: Path | None = None
    try:
        if modes:
            root, names = _make_root(1)
        for mode in modes:
            runs = [NetResult(f"net_{mode}_{k}", mode, k) for k in STREAMS if wanted(f"net_{mode}_{k}")]
            err = ""
            try:
                assert root is not None
                with _Worker(root, names, mode) as w:
                    _load(root, _directory(root, names, w.url), names[0], runs, duration)
            except Exception as e:  # noqa: BLE001 - a failing row is reported, not fatal
                err = _err(e)
            for res in runs:
                row = Row(res.name, f"{mode}, {res.streams} stream{'s' if res.streams > 1 else ''}, "
                          "one HTTP/2 connection", f"{duration:g} s", unit="calls/s", group="network")
                row.us = res.rate
                p50, p99 = res.pct(0.50), res.pct(0.99)
                row.peerbox = p50 * 1e3 if p50 is not None else None
                row.cpython = p99 * 1e3 if p99 is not None else None   # p99 in ms (column reuse)
                row.rel = float(res.rejected_503)
                notes = [f"{res.ok} ok", f"{res.rejected_503} × 503"]
                if res.failed:
                    notes.append(f"{res.failed} failed: {res.first_error}")
                if err:
                    row.status = "ERROR"
                    notes = [err]
                elif res.ok == 0:
                    row.status = "ERROR"
                elif mode == "shared":
                    goals = []
                    if res.streams == 64:
                        row.target = f"p99 < {TARGET_P99_MS:g} ms; ≥ {TARGET_CALLS:g}/s"
                        goals.append(p99 is not None and p99 * 1e3 < TARGET_P99_MS)
                    else:
                        row.target = f"≥ {TARGET_CALLS:g}/s"
                    goals.append(res.rate >= TARGET_CALLS)
                    row.status = "PASS" if all(goals) else "MISS"
                elif res.streams == 64:
                    row.target = f"p99 < {TARGET_P99_MS:g} ms"
                    row.status = "PASS" if p99 is not None and p99 * 1e3 < TARGET_P99_MS else "MISS"
                row.note = "; ".join(notes)
                rows.append(row)
        if wanted("net_idle_peer"):
            rows.append(_bench_memory(quick))
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    return rows


def _bench_memory(quick: bool) -> Any:
    from _rows import Row, _err

    q = 1 if quick else 0
    n, sample = MANY_PEERS[q], SAMPLE[q]
    row = Row("net_idle_peer", "idle memory per hosted peer, shared mode", f"{n:_} peers",
              unit="KiB", group="network", target=f"< {TARGET_KIB_PER_PEER:g} KiB")
    roots: list[Path] = []
    try:
        base, base_names = _make_root(1)   # the 1-peer baseline, in its own root
        roots.append(base)
        # A throwaway worker first: its call fills the compiled-module cache the workers share
        # (PEERBOX_CACHE_DIR), so neither measured worker pays Cranelift (~10 MiB of RSS).
        with _Worker(base, base_names, "shared") as w:
            _call_each(base, _directory(base, base_names, w.url), base_names)
        t0 = time.perf_counter()
        root, names = _make_root(n)
        roots.append(root)
        t_init = time.perf_counter() - t0
        called = names[:: max(1, n // sample)][:sample]
        # The baseline gets as many calls (all to its one peer) as the N-peer worker gets.
        with _Worker(base, base_names, "shared") as w:
            _call_each(base, _directory(base, base_names, w.url), base_names * len(called))
            rss_1 = w.rss_kib()
        with _Worker(root, names, "shared") as w:
            directory = _directory(root, called, w.url)
            first = _call_each(root, directory, called)      # the first call to each: RSS after it
            rss_n = w.rss_kib()
            second = _call_each(root, directory, called)
        per = (rss_n - rss_1) / (n - 1)
        row.us = per
        row.peerbox, row.cpython = float(rss_1), float(rss_n)
        row.status = "PASS" if per < TARGET_KIB_PER_PEER else "MISS"

        def med(xs: list[float]) -> float:
            return 1e3 * sorted(xs)[len(xs) // 2]

        row.note = (f"VmRSS {rss_1 / 1024:.1f} MiB with 1 peer, {rss_n / 1024:.1f} MiB with {n:_}, each "
                    f"after {len(called)} sequential calls (with {n:_}: one to each of {len(called)} peers, "
                    f"median {med(first):.1f} ms; a second call to each: {med(second):.1f} ms); creating the "
                    f"peers took {t_init:.1f} s")
    except Exception as e:  # noqa: BLE001
        row.status, row.note = "ERROR", _err(e)
    finally:
        for r in roots:
            shutil.rmtree(r, ignore_errors=True)
    return row


def render(rows: list[Any]) -> str:
    """The markdown tables of the network rows; "" if there are none."""
    mine = [r for r in rows if r.group == "network"]
    load = [r for r in mine if r.name != "net_idle_peer"]
    mem = [r for r in mine if r.name == "net_idle_peer"]
    out: list[str] = []
    if load:
        head = ["benchmark", "duration", "calls/s", "p50 ms", "p99 ms", "503s", "target", "status"]
        out += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for r in load:
            status = r.status + (f" ({r.note})" if r.note else "")
            cells = [r.name + " — " + r.title, r.size, f"{r.us or 0:.0f}",
                     "—" if r.peerbox is None else f"{r.peerbox:.2f}",
                     "—" if r.cpython is None else f"{r.cpython:.2f}",
                     f"{r.rel or 0:.0f}", r.target, status]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if mem:
        if out:
            out.append("")
        head = ["benchmark", "size", "KiB per idle peer", "target", "status"]
        out += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for r in mem:
            status = r.status + (f" ({r.note})" if r.note else "")
            cells = [r.name + " — " + r.title, r.size, "—" if r.us is None else f"{r.us:.1f}",
                     r.target, status]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    quick = "--quick" in sys.argv
    print(render(bench_network(quick, lambda n: True)))
