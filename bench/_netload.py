"""Load generation for the network rows: the project's client, in a process of its own.

``python bench/_netload.py SPEC.json OUT.json`` runs the phases of ``SPEC``
against one server and writes what happened to ``OUT``. Being its own
process, the client's CPU time (``getrusage(RUSAGE_SELF)``, every thread)
is measured apart from the server's, and it cannot take the server's GIL.

SPEC (JSON)::

    {"rounds": R, "warm": calls per server before measuring,
     "servers": [{"key": str, "root": peer root (holds the ``client`` peer), "client": "client",
                  "directory": a directory root whose peers.toml names "target",
                  "target": peer name, "server_pid": int,
                  "phases": [{"name": str, "kind": "closed", "conns": C, "streams": K, "duration": s,
                              "request": "exec" (default) or "call"},
                             {"name": str, "kind": "open", "conns": C, "rate": calls/s,
                              "duration": s}]}]}

Each server's connections are opened and warmed up first; then, ``R``
times, every server's phases run in turn (so the servers are compared
under the same conditions, round by round). A server whose warm-up or phase
fails is reported in ``errors`` and left out of later rounds.

Every call is a full delegated call through ``peerbox.AsyncClient``: sign,
send, verify the reply and check its value. ``"request": "exec"`` sends the
script ``params.x + 1`` (``peerbox/exec``); ``"call"`` calls the target's
published ``bench::plus_one(x: i64)`` (``peerbox/call``, the same ``x + 1``;
the target must publish it and let the client ``call`` it).
``C`` connections are ``C`` ``AsyncClient`` instances (each owns one HTTP/2
connection to the server's origin).

* ``closed``: ``K`` tasks in all, spread over the connections, each sending
  its next call when the last one is answered, for ``duration`` seconds.
  Latency is from the call to its verified reply; with ``K`` always in
  flight it is mostly queueing (Little's law: K / rate).
* ``open``: calls *scheduled* at fixed times (``rate`` per second, round
  robin over the connections) whether or not earlier ones were answered;
  latency is from the scheduled time to the verified reply, so a client or
  server that falls behind is charged for it (no coordinated omission).

Per phase: successful calls, 503s, other failures (and the first error),
p50/p90/p99/max latency in ms, the client's CPU seconds, and the server's:
utime + stime of ``server_pid`` and every live descendant (``/proc``), plus
what its reaped children used (``cutime``/``cstime``), sampled at the start
and end of the phase; and the number of processes in that tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

SCRIPT = "params.x + 1"
FUNCTION = "bench::plus_one"    # "request": "call": the published twin of SCRIPT
CALL_TIMEOUT = 30.0             # per call: an overloaded open loop queues, it does not fail
_TICK = os.sysconf("SC_CLK_TCK")


def _proc_stats() -> dict[int, tuple[int, float, float]]:
    """pid -> (ppid, own CPU s, reaped children's CPU s) for every process we can read."""
    out: dict[int, tuple[int, float, float]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        f2 = raw[raw.rfind(b")") + 2:].split()
        # fields after the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14)
        out[int(d)] = (int(f2[1]), (int(f2[11]) + int(f2[12])) / _TICK, (int(f2[13]) + int(f2[14])) / _TICK)
    return out


def _tree(pid: int, stats: dict[int, tuple[int, float, float]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for p, (ppid, _own, _reaped) in stats.items():
        children.setdefault(ppid, []).append(p)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            out.append(p)
            todo.extend(children.get(p, ()))
    return out


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    return _tree(pid, _proc_stats())


def tree_cpu(pid: int) -> tuple[float, int]:
    """CPU seconds used so far by ``pid`` and its descendants (live, and reaped), and the tree's size."""
    stats = _proc_stats()
    pids = _tree(pid, stats)
    return sum(stats[p][1] + stats[p][2] for p in pids), len(pids)


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Phase:
    """What one phase measured."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.ok = 0
        self.rejected_503 = 0
        self.failed = 0
        self.first_error = ""
        self.latencies: list[float] = []
        self.seconds = 0.0
        self.deadline = float("inf")   # closed loop: the end of the measuring window (trio clock)
        self.ok_in_window = 0

    def fail(self, msg: str) -> None:
        self.failed += 1
        self.first_error = self.first_error or msg[:200]

    def result(self, client_cpu: float, server_cpu: float, procs: int) -> dict[str, Any]:
        xs = sorted(self.latencies)

        def pct(q: float) -> float | None:
            return 1e3 * xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None

        # closed loop: replies within the window / the window (the calls in flight at its end
        # finish after it; if none finished inside it, as on a swamped machine, replies / the time
        # until the last one); open loop: replies / the time until the last one
        if self.spec["kind"] == "closed" and self.ok_in_window:
            rate = self.ok_in_window / float(self.spec["duration"])
        else:
            rate = self.ok / self.seconds if self.seconds else 0.0
        return {**self.spec, "calls_per_s": rate, "ok": self.ok, "rejected_503": self.rejected_503,
                "failed": self.failed, "first_error": self.first_error, "seconds": self.seconds,
                "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": 1e3 * xs[-1] if xs else None,
                "client_cpu": client_cpu, "server_cpu": server_cpu, "server_procs": procs}


def run(spec: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every round of every server's phases (see the module docstring); results and errors."""
    import trio

    import peerbox

    results: list[dict[str, Any]] = []
    errors: dict[str, str] = {}

    async def request(client: Any, entry: Any, i: int, kind: str, timeout: float) -> Any:
        """One ``peerbox/exec`` of SCRIPT or ``peerbox/call`` of FUNCTION with x = i; the reply."""
        if kind == "call":
            return await client.call(entry, FUNCTION, params={"x": i}, timeout=timeout)
        return await client.exec(entry, SCRIPT, {"x": i}, timeout=timeout)

    async def call(client: Any, entry: Any, i: int, t0: float, res: Phase) -> None:
        try:
            r = await request(client, entry, i, str(res.spec.get("request", "exec")), CALL_TIMEOUT)
        except peerbox.RemoteRejected as exc:
            if exc.status == 503:
                res.rejected_503 += 1
            else:
                res.fail(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - counted and reported, never a success
            res.fail(f"{type(exc).__name__}: {exc}")
            return
        if r.ok and r.value == i + 1:
            now = trio.current_time()
            res.latencies.append(now - t0)
            res.ok += 1
            res.ok_in_window += now <= res.deadline
        else:
            res.fail(f"reply {r.error or r.value!r}")

    async def closed(clients: list[Any], entry: Any, res: Phase) -> None:
        deadline = res.deadline = trio.current_time() + float(res.spec["duration"])
        conns = int(res.spec.get("conns", 1))

        async def stream(k: int) -> None:
            client, i = clients[k % conns], k * 10_000_000
            while trio.current_time() < deadline:
                i += 1
                n503 = res.rejected_503
                await call(client, entry, i, trio.current_time(), res)
                if res.rejected_503 != n503:
                    await trio.sleep(0.001)      # back off a little after a 503

        async with trio.open_nursery() as nursery:
            for k in range(int(res.spec["streams"])):
                nursery.start_soon(stream, k)

    async def open_loop(clients: list[Any], entry: Any, res: Phase) -> None:
        rate, conns = float(res.spec["rate"]), int(res.spec.get("conns", 1))
        n = max(1, int(rate * float(res.spec["duration"])))
        start = trio.current_time() + 0.01
        async with trio.open_nursery() as nursery:
            for i in range(n):
                at = start + i / rate
                await trio.sleep_until(at)
                nursery.start_soon(call, clients[i % conns], entry, i, at, res)

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            ready: list[tuple[dict[str, Any], list[Any], Any]] = []
            for sv in spec["servers"]:
                try:
                    identity = peerbox.PeerStore(sv["root"]).get(sv.get("client", "client")).signing_key()
                    directory = peerbox.Directory(sv["directory"])
                    n_conns = max(int(p.get("conns", 1)) for p in sv["phases"])
                    clients = [await stack.enter_async_context(peerbox.AsyncClient(identity, directory))
                               for _ in range(n_conns)]
                    entry = clients[0].resolve(sv["target"])
                    kinds = sorted({str(p.get("request", "exec")) for p in sv["phases"]})
                    for i in range(int(spec.get("warm", 20))):   # connections, compile cache, threads
                        for kind in kinds:
                            r = await request(clients[i % n_conns], entry, i, kind, 60.0)
                            if not r.ok or r.value != i + 1:
                                raise RuntimeError(f"warm-up {kind} failed: {r.error or r.value!r}")
                except Exception as exc:  # noqa: BLE001 - this server's rows report it
                    errors[sv["key"]] = f"{type(exc).__name__}: {exc}"[:300]
                    continue
                ready.append((sv, clients, entry))
            for rnd in range(int(spec.get("rounds", 1))):
                for sv, clients, entry in ready:
                    if sv["key"] in errors:
                        continue
                    try:
                        for p in sv["phases"]:
                            res = Phase(p)
                            s0, _ = tree_cpu(int(sv["server_pid"]))
                            c0, t0 = _cpu_self(), time.perf_counter()
                            await (closed if p["kind"] == "closed" else open_loop)(clients, entry, res)
                            res.seconds = time.perf_counter() - t0
                            c1 = _cpu_self()
                            s1, procs = tree_cpu(int(sv["server_pid"]))
                            results.append({**res.result(c1 - c0, s1 - s0, procs), "server": sv["key"],
                                            "round": rnd})
                    except Exception as exc:  # noqa: BLE001
                        errors[sv["key"]] = f"{type(exc).__name__}: {exc}"[:300]

    trio.run(main)
    return results, errors


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    try:
        results, errors = run(spec)
        doc: dict[str, Any] = {"results": results, "errors": errors}
    except Exception as exc:  # noqa: BLE001 - reported to the parent as the rows' error
        doc = {"errors": {sv["key"]: f"{type(exc).__name__}: {exc}"[:300] for sv in spec["servers"]}}
    Path(argv[2]).write_text(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
