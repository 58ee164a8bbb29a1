"""The network rows of the benchmark (issues 6, 15 and 16): delegated calls to a ``peerbox serve`` worker.

Every server is a real subprocess (``python -m peerbox serve ... --listen
127.0.0.1:0 --port-file F``, stopped with SIGTERM), and so is the client
(``bench/_netload.py``: the project's ``AsyncClient``, in a process of its
own so that its CPU is measured apart). Every call is a full delegated call:
the client signs the request envelope, the server verifies it, (the worker:
checks the target's policy), spends the nonce, runs ``params.x + 1`` in a
fresh sandbox and signs the reply; the client verifies the reply and its
value. Calls/s counts verified, correct replies only; a ``503`` or any other
failure is counted and reported, never a success.

Three servers, all started up front and measured in turns (2 rounds; each
figure is the best of the rounds):

* **the anchor** (``bench/anchor_server.py``): a ~150-line trio + h2 server
  doing the same essential work inline (one Ed25519 verify, one SQLite nonce
  insert, one wasm run, one sign), the yardstick of the worker's CPU per call
  (each row's "× anchor" divides by the anchor's figure under the same load:
  the closed loop's, or the open loop's for the open-loop rows);
* **shared mode**: ``peerbox serve --mode shared`` (with ``--workers``, when
  the command has it, at its default: the number of cores);
* **isolated mode**: the same peer in its own child process behind the router.

The loads (the same client, the same connections for every phase of one server):

* ``closed``: 2 connections (two ``AsyncClient``), 64 calls always in flight
  (32 per connection), for a few seconds: calls/s, and p50/p99 latency,
  which at a full pipe is queueing (Little's law: 64 / rate);
* ``open``: 300 calls/s *scheduled* at fixed times over 2 connections,
  whether or not earlier calls were answered; latency from the scheduled time
  to the verified reply (no coordinated omission). The p99 target is here;
* ``net_shared_1``: one call at a time on one connection (unloaded latency).

``net_call_1`` and ``net_call_64`` repeat ``net_shared_1`` and ``net_shared_64``
with ``peerbox/call`` requests (issue 16): the target's published
``bench::plus_one(x: i64) { x + 1 }``, the same work as the exec script, run
with the owner's rights (the worker finds the published function, checks the
argument and compiles a fixed call stub). They run on the same server and
connections, right after their exec twin in each round, and their notes give
the ratio call / exec of calls/s and of server CPU per call.

CPU per call: utime + stime (``/proc/PID/stat``) of the server process and
every descendant (router and children, or every worker process), over the
successful calls of the phase; the client's own ``getrusage`` the same way.
Both run on the same (2-core) machine, so they compete for it: calls/s is
for the pair.

**Idle memory per peer** (``net_idle_peer``): the worker's VmRSS after
startup and one call to each of a sample of its peers, with N peers hosted
(1,000; 50 with ``--quick``) vs. with 1 peer: (RSS_N - RSS_1) / (N - 1);
one worker process (``--workers 1`` when the command has the option).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _netservers import _anchor, _directory, _make_root, _Server, _worker, _ws_worker, serve_options
from _rows import Row, _err

BENCH = Path(__file__).resolve().parent
ROW_NAMES = ["net_anchor_64", "net_anchor_open", "net_shared_1", "net_call_1", "net_shared_64", "net_call_64",
             "net_shared_open", "net_isolated_64", "net_isolated_open", "net_ws_1", "net_ws_64", "net_idle_peer"]
#: each WebSocket row and the HTTP/2 row it is compared with (the same load, the same run)
WS_TWIN = {"net_ws_1": "net_shared_1", "net_ws_64": "net_shared_64"}
TARGET_WS_VS_H2 = 1.2          # WebSocket worker CPU per call / HTTP/2's (issue 18)
#: each peerbox/call row and the peerbox/exec row it is compared with (same server, same run)
CALL_TWIN = {"net_call_1": "net_shared_1", "net_call_64": "net_shared_64"}
TARGET_CALLS = 1500.0          # calls/s, shared mode, 64 in flight
TARGET_P99_MS = 20.0           # open loop at OPEN_RATE, shared mode
TARGET_SERVER_VS_ANCHOR = 1.0  # worker CPU per call / the anchor's
TARGET_CLIENT_MS = 0.5         # client CPU per call
TARGET_ISOLATED = 0.8          # isolated calls/s / shared calls/s
TARGET_KIB_PER_PEER = 200.0
CONNS, IN_FLIGHT, OPEN_RATE = 2, 64, 300.0
SCRIPT = "params.x + 1"
# (full, quick): seconds of load per phase, rounds, peers for the memory row, peers of the sample called
DURATION = (3.0, 0.4)
DURATION_1 = (1.5, 0.3)
ROUNDS = (2, 1)
WARM = (20, 5)                 # checked calls per server before measuring
MANY_PEERS = (1000, 50)
SAMPLE = (50, 10)

INTRO = (
    "Delegated calls (`bench/network.py`, issues 6, 15 and 16): the project's client (`AsyncClient`, in a "
    "process of its own) against a `peerbox serve` subprocess and against the anchor "
    "(`bench/anchor_server.py`: trio + h2 doing one Ed25519 verify, one SQLite nonce insert, one wasm "
    "run and one sign inline per call), script `params.x + 1`, every reply verified. Closed loop: "
    f"{CONNS} connections with {IN_FLIGHT} calls always in flight (p99 there is queueing, Little's law); "
    f"open loop: {OPEN_RATE:g} calls/s scheduled at fixed times, latency from the scheduled time. "
    "Server CPU: utime+stime of the server's process tree per successful call (× anchor: over the "
    "anchor's under the same load, closed or open loop); client CPU likewise. "
    "`net_call_*`: the same rows with `peerbox/call` of the peer's published `bench::plus_one(x: i64)` "
    "(the same `x + 1`, run with the owner's rights), measured right after their exec twin in each round; "
    "their notes give call / exec. `net_ws_*`: the same exec load over WebSocket (a worker listening on "
    "`ws://` only), measured in the same run as their HTTP/2 twins; their notes give worker CPU per call "
    "over HTTP/2's. "
    "Each figure is the best of the rounds; 503s are counted, not successes. Idle memory: one worker's "
    "VmRSS with N peers vs. 1, per extra peer."
)

@dataclass
class NetRow(Row):
    """A network row: ``us`` calls/s, ``peerbox``/``cpython`` p50/p99 ms, ``rel`` 503s, and these."""

    server_ms: float | None = None    # server CPU ms per successful call (its process tree)
    vs_anchor: float | None = None    # server_ms / the anchor's
    client_ms: float | None = None    # client CPU ms per successful call
    procs: int = 0                    # processes in the server's tree
    failed: int = 0


def _drive(servers: list[dict[str, Any]], rounds: int,
           warm: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Run every server's phases, ``rounds`` times in turn, from one ``_netload`` subprocess.

    ``servers``: ``{"key", "root", "target", "server": _Server, "phases"}``. Returns the per-phase
    results (each with its ``server`` key) and the error of each server that failed (its warm-up
    or a phase). Raises RuntimeError if the client process itself failed."""
    spec = {"rounds": rounds, "warm": warm, "servers": [
        {"key": sv["key"], "root": str(sv["root"]), "client": "client", "target": sv["target"],
         "directory": str(_directory(sv["root"], [sv["target"]], sv["server"].url)),
         "server_pid": sv["server"].proc.pid, "phases": sv["phases"]} for sv in servers]}
    with tempfile.TemporaryDirectory(prefix="peerbox-netload-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        budget = 120.0 + rounds * sum(float(p["duration"]) for sv in servers for p in sv["phases"]) * 3
        proc = subprocess.run([sys.executable, str(BENCH / "_netload.py"), str(spec_path), str(out_path)],
                              capture_output=True, text=True, timeout=budget)
        if not out_path.exists():
            raise RuntimeError(f"the load client failed (exit {proc.returncode}): {proc.stderr[-300:]}")
        doc = json.loads(out_path.read_text())
    errors = dict(doc.get("errors", {}))
    for sv in servers:
        if sv["key"] in errors:
            errors[sv["key"]] += f" (server: {sv['server'].tail()[-200:]})"
    return list(doc.get("results", [])), errors


# ------------------------------------------------------------------ rows


def _closed(name: str, conns: int, streams: int, duration: float, request: str = "exec") -> dict[str, Any]:
    return {"name": name, "kind": "closed", "conns": conns, "streams": streams, "duration": duration,
            "request": request}


def _open(name: str, duration: float) -> dict[str, Any]:
    return {"name": name, "kind": "open", "conns": CONNS, "rate": OPEN_RATE, "duration": duration}


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The best of several rounds of one phase, figure by figure (the first round's spec)."""
    def per_call(r: dict[str, Any], key: str) -> float | None:
        return 1e3 * r[key] / r["ok"] if r["ok"] else None

    best = dict(results[0])
    best["offered"] = results[0].get("rate")          # an open phase's calls/s scheduled
    rates = [float(r["calls_per_s"]) for r in results]
    best["rate"] = max(rates)
    best["rates"] = rates
    for key in ("ok", "rejected_503", "failed", "first_error", "seconds"):
        best[key] = results[rates.index(max(rates))][key]
    for key in ("p50", "p90", "p99", "max"):
        vals = [r[key] for r in results if r[key] is not None]
        best[key] = min(vals) if vals else None
    for key, src in (("server_ms", "server_cpu"), ("client_ms", "client_cpu")):
        vals = [v for r in results if (v := per_call(r, src)) is not None]
        best[key] = min(vals) if vals else None
    best["p99s"] = [r["p99"] for r in results]
    best["server_procs"] = max(r["server_procs"] for r in results)
    best["failed_total"] = sum(r["failed"] for r in results)
    best["first_error"] = next((r["first_error"] for r in results if r["first_error"]), "")
    return best


def _row(name: str, title: str, size: str, m: dict[str, Any] | None, err: str) -> NetRow:
    row = NetRow(name, title, size, unit="calls/s", group="network")
    if m is None:
        row.status, row.note = "ERROR", err or "not measured"
        return row
    row.us = m["rate"]
    row.peerbox, row.cpython = m["p50"], m["p99"]
    row.rel = float(m["rejected_503"])
    row.server_ms, row.client_ms = m["server_ms"], m["client_ms"]
    row.procs, row.failed = m["server_procs"], m["failed_total"]
    notes = [f"{m['ok']} ok in {m['seconds']:.1f} s"]
    if len(m["rates"]) > 1:
        notes.append("rounds " + " / ".join(f"{r:.0f}" for r in m["rates"]) + " calls/s")
    if m["kind"] == "open":
        notes.append(f"{m['offered']:g}/s offered")
        if len(m["p99s"]) > 1:
            notes.append("p99 by round " + " / ".join("—" if v is None else f"{v:.1f}" for v in m["p99s"])
                         + " ms")
    elif int(m["streams"]) > 1 and m["rate"]:
        notes.append(f"Little's law: {m['streams']} in flight / {m['rate']:.0f}/s = "
                     f"{1e3 * int(m['streams']) / m['rate']:.0f} ms")
    if m["failed_total"]:
        notes.append(f"{m['failed_total']} failed: {m['first_error']}")
    if m["ok"] == 0:
        row.status = "ERROR"
    row.note = "; ".join(notes)
    return row


def _vs_exec(call: dict[str, Any], exec_: dict[str, Any] | None) -> str:
    """The note comparing a ``peerbox/call`` row with its exec twin: ratios of calls/s, p50 and
    server CPU per call ("" when the twin was not measured)."""
    if not exec_:
        return ""
    parts = []
    for what, key in (("calls/s", "rate"), ("p50", "p50"), ("server CPU/call", "server_ms")):
        a, b = call.get(key), exec_.get(key)
        if a is not None and b:
            parts.append(f"{what} {a / b:.2f}×")
    return f"call / exec ({exec_['name']}, same run): " + ", ".join(parts) + "; " if parts else ""


def bench_network(quick: bool, wanted: Callable[[str], bool]) -> list[Any]:
    """The network rows (those ``wanted``) as :class:`NetRow`/``Row`` (group ``"network"``)."""
    q = 1 if quick else 0
    dur, dur1, rounds = DURATION[q], DURATION_1[q], ROUNDS[q]
    per_conn = IN_FLIGHT // CONNS
    load_rows = [n for n in ROW_NAMES if n != "net_idle_peer" and wanted(n)]
    # net_shared_64's targets are ratios to the anchor; net_isolated_64's to shared: measure those too
    need = set(load_rows)
    need |= {CALL_TWIN[n] for n in need if n in CALL_TWIN}    # a call row is read next to its exec twin
    need |= {WS_TWIN[n] for n in need if n in WS_TWIN}        # a WebSocket row next to its HTTP/2 twin
    if need & {"net_shared_1", "net_shared_64", "net_isolated_64"}:
        need.add("net_anchor_64")
    if need & {"net_shared_open", "net_isolated_open"}:
        need.add("net_anchor_open")
    if "net_isolated_64" in need:
        need.add("net_shared_64")
    plans: dict[str, list[dict[str, Any]]] = {
        "anchor": [_closed("net_anchor_64", CONNS, IN_FLIGHT, dur), _open("net_anchor_open", dur)],
        "shared": [_closed("net_shared_1", 1, 1, dur1), _closed("net_call_1", 1, 1, dur1, "call"),
                   _closed("net_shared_64", CONNS, IN_FLIGHT, dur),
                   _closed("net_call_64", CONNS, IN_FLIGHT, dur, "call"), _open("net_shared_open", dur)],
        "isolated": [_closed("net_isolated_64", CONNS, IN_FLIGHT, dur), _open("net_isolated_open", dur)],
        "ws": [_closed("net_ws_1", 1, 1, dur1), _closed("net_ws_64", CONNS, IN_FLIGHT, dur)],
    }
    plans = {k: [p for p in v if p["name"] in need] for k, v in plans.items()}
    plans = {k: v for k, v in plans.items() if v}
    measured: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    rows: list[Any] = []
    workers_note = ""
    # One root per server: a peer's storage has one writer at a time, so two servers never host the
    # same peer directory (each root has its own ``client`` and ``p0000``, its own keys).
    roots: dict[str, tuple[Path, list[str]]] = {}
    servers: dict[str, _Server] = {}
    try:
        if plans:
            has_workers = "--workers" in serve_options()
            workers_note = "--workers default" if has_workers else "one process (no --workers yet)"
            for kind in plans:           # all start at once, then each is waited for
                try:
                    root, names = roots[kind] = _make_root(1, publish=kind == "shared")
                    servers[kind] = (_anchor(root, names[0]) if kind == "anchor"
                                     else _ws_worker(root, names) if kind == "ws"
                                     else _worker(root, names, kind))
                except Exception as e:  # noqa: BLE001 - a failing server is reported in its rows
                    errors[kind] = _err(e)
            for kind, server in servers.items():
                try:
                    server.ready()
                    if kind == "ws":
                        server.url = f"ws://127.0.0.1:{server.port}"
                except Exception as e:  # noqa: BLE001
                    errors[kind] = _err(e)
            todo: list[dict[str, Any]] = [
                {"key": kind, "root": roots[kind][0], "target": roots[kind][1][0], "server": servers[kind],
                 "phases": phases} for kind, phases in plans.items() if kind not in errors]
            if todo:
                try:
                    results, failed = _drive(todo, rounds, WARM[q])
                    errors.update(failed)
                    for res in results:
                        measured.setdefault(res["name"], []).append(res)
                except Exception as e:  # noqa: BLE001
                    for sv in todo:
                        errors[sv["key"]] = _err(e)
    finally:
        for s in servers.values():
            s.stop()
        for root, _names in roots.values():
            shutil.rmtree(root, ignore_errors=True)

    merged = {name: _merge(rs) for name, rs in measured.items()}
    # a row's CPU per call is compared with the anchor's under the same load (closed or open loop)
    anchor_ms = {kind: merged.get(f"net_anchor_{kind}", {}).get("server_ms") for kind in ("64", "open")}
    shared_rate = merged.get("net_shared_64", {}).get("rate")
    titles = {
        "net_anchor_64": ("anchor", f"anchor server, {CONNS} connections × {per_conn} streams, closed loop",
                          f"{dur:g} s"),
        "net_anchor_open": ("anchor", f"anchor server, open loop {OPEN_RATE:g} calls/s over {CONNS} "
                            "connections", f"{dur:g} s"),
        "net_shared_1": ("shared", f"shared ({workers_note}), 1 connection × 1 stream, closed loop",
                         f"{dur1:g} s"),
        "net_call_1": ("shared", f"shared ({workers_note}), 1 connection × 1 stream, closed loop, "
                       "`peerbox/call` of a published function (the same `x + 1`)", f"{dur1:g} s"),
        "net_shared_64": ("shared", f"shared ({workers_note}), {CONNS} connections × {per_conn} streams, "
                          "closed loop (p99 = queueing)", f"{dur:g} s"),
        "net_call_64": ("shared", f"shared ({workers_note}), {CONNS} connections × {per_conn} streams, "
                        "closed loop, `peerbox/call` of a published function (the same `x + 1`)",
                        f"{dur:g} s"),
        "net_shared_open": ("shared", f"shared ({workers_note}), open loop {OPEN_RATE:g} calls/s over "
                            f"{CONNS} connections", f"{dur:g} s"),
        "net_isolated_64": ("isolated", f"isolated, {CONNS} connections × {per_conn} streams, closed loop "
                            "(p99 = queueing)", f"{dur:g} s"),
        "net_isolated_open": ("isolated", f"isolated, open loop {OPEN_RATE:g} calls/s over "
                              f"{CONNS} connections", f"{dur:g} s"),
        "net_ws_1": ("ws", f"shared ({workers_note}) over WebSocket (`ws://`), 1 connection × 1 in flight, "
                     "closed loop", f"{dur1:g} s"),
        "net_ws_64": ("ws", f"shared ({workers_note}) over WebSocket (`ws://`), {CONNS} connections × "
                      f"{per_conn} in flight, closed loop", f"{dur:g} s"),
    }
    for name in load_rows:
        kind, title, size = titles[name]
        m = merged.get(name)
        row = _row(name, title, size, m, errors.get(kind, ""))
        if m is not None and row.status != "ERROR":
            same = anchor_ms["open" if name.endswith("_open") else "64"]
            if same and row.server_ms is not None and not name.startswith("net_anchor"):
                row.vs_anchor = row.server_ms / same
            goals: list[bool] = []
            if name == "net_shared_64":
                row.target = (f"≥ {TARGET_CALLS:g}/s; server CPU ≤ {TARGET_SERVER_VS_ANCHOR:g}× anchor; "
                              f"client CPU ≤ {TARGET_CLIENT_MS:g} ms")
                goals = [row.us is not None and row.us >= TARGET_CALLS,
                         row.vs_anchor is not None and row.vs_anchor <= TARGET_SERVER_VS_ANCHOR,
                         row.client_ms is not None and row.client_ms <= TARGET_CLIENT_MS]
            elif name == "net_shared_open":
                row.target = f"p99 < {TARGET_P99_MS:g} ms, every call answered"
                goals = [row.cpython is not None and row.cpython < TARGET_P99_MS,
                         m["failed_total"] == 0 and m["rejected_503"] == 0]
            elif name == "net_isolated_64":
                row.target = f"≥ {TARGET_ISOLATED:g}× shared calls/s"
                ratio = (row.us or 0.0) / shared_rate if shared_rate else None
                goals = [ratio is not None and ratio >= TARGET_ISOLATED]
                if ratio is not None:
                    row.note = f"{ratio:.2f}× shared; " + row.note
            elif name in CALL_TWIN:
                row.note = _vs_exec(m, merged.get(CALL_TWIN[name])) + row.note
            elif name in WS_TWIN:
                h2_ms = merged.get(WS_TWIN[name], {}).get("server_ms")
                row.target = f"worker CPU per call ≤ {TARGET_WS_VS_H2:g}× HTTP/2's ({WS_TWIN[name]})"
                ratio = row.server_ms / h2_ms if h2_ms and row.server_ms is not None else None
                goals = [ratio is not None and ratio <= TARGET_WS_VS_H2]
                if ratio is not None:
                    row.note = f"{ratio:.2f}× HTTP/2's CPU per call; " + row.note
            if goals:
                row.status = "PASS" if all(goals) else "MISS"
        rows.append(row)
    if wanted("net_idle_peer"):
        rows.append(_bench_memory(quick, cache_warm=bool(measured)))
    return rows


def _call_each(root: Path, directory: Path, targets: list[str]) -> list[float]:
    """One checked call to each of ``targets``, in turn, over one connection, in this process;
    seconds per call (the first includes opening the connection). Raises if a call fails."""
    import trio

    import peerbox

    identity = peerbox.PeerStore(root).get("client").signing_key()
    times: list[float] = []

    async def main() -> None:
        async with peerbox.AsyncClient(identity, peerbox.Directory(directory)) as client:
            for i, name in enumerate(targets):
                t0 = time.perf_counter()
                r = await client.exec(name, SCRIPT, {"x": i})
                times.append(time.perf_counter() - t0)
                if not r.ok or r.value != i + 1:
                    raise RuntimeError(f"call to {name} failed: {r.error or r.value!r}")

    trio.run(main)
    return times


def _bench_memory(quick: bool, cache_warm: bool = False) -> Row:
    """``net_idle_peer``: VmRSS of the worker's process tree with N peers vs. with 1, per extra peer.
    ``cache_warm``: the load rows already compiled the script into the shared module cache."""
    from _netload import tree_pids

    q = 1 if quick else 0
    n, sample = MANY_PEERS[q], SAMPLE[q]
    row = Row("net_idle_peer", "idle memory per hosted peer, shared mode", f"{n:_} peers",
              unit="KiB", group="network", target=f"< {TARGET_KIB_PER_PEER:g} KiB")
    roots: list[Path] = []

    def rss_kib(server: _Server) -> int:
        total = 0
        for pid in tree_pids(server.proc.pid):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total

    try:
        one = ("--workers", "1") if "--workers" in serve_options() else ()
        base, base_names = _make_root(1)   # the 1-peer baseline, in its own root
        roots.append(base)
        if not cache_warm:
            # A throwaway worker first: its call fills the compiled-module cache the workers share
            # (PEERBOX_CACHE_DIR), so neither measured worker pays Cranelift (~10 MiB of RSS).
            with _worker(base, base_names, "shared", one).ready() as w:
                _call_each(base, _directory(base, base_names, w.url), base_names)
        t0 = time.perf_counter()
        root, names = _make_root(n)
        roots.append(root)
        t_init = time.perf_counter() - t0
        called = names[:: max(1, n // sample)][:sample]
        with _worker(base, base_names, "shared", one) as w1, _worker(root, names, "shared", one) as wn:
            w1.ready()
            wn.ready()
            # The baseline gets as many calls (all to its one peer) as the N-peer worker gets.
            _call_each(base, _directory(base, base_names, w1.url), base_names * len(called))
            rss_1 = rss_kib(w1)
            directory = _directory(root, called, wn.url)
            first = _call_each(root, directory, called)      # the first call to each: RSS after it
            rss_n = rss_kib(wn)
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
                    f"peers took {t_init:.1f} s{'; --workers 1' if one else ''}")
    except Exception as e:  # noqa: BLE001
        row.status, row.note = "ERROR", _err(e)
    finally:
        for r in roots:
            shutil.rmtree(r, ignore_errors=True)
    return row


def _cell(v: float | None, fmt: str, suffix: str = "") -> str:
    return "—" if v is None else format(v, fmt) + suffix


def render(rows: list[Any]) -> str:
    """The markdown tables of the network rows; "" if there are none."""
    mine = [r for r in rows if r.group == "network"]
    load = [r for r in mine if r.name != "net_idle_peer"]
    mem = [r for r in mine if r.name == "net_idle_peer"]
    out: list[str] = []
    if load:
        head = ["benchmark", "duration", "calls/s", "p50 ms", "p99 ms", "server CPU ms/call", "× anchor",
                "client CPU ms/call", "server processes", "503s", "target", "status"]
        out += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for r in load:
            status = r.status + (f" ({r.note})" if r.note else "")
            cells = [r.name + " — " + r.title, r.size, _cell(r.us, ".0f"), _cell(r.peerbox, ".2f"),
                     _cell(r.cpython, ".2f"), _cell(getattr(r, "server_ms", None), ".3f"),
                     _cell(getattr(r, "vs_anchor", None), ".2f", "×"),
                     _cell(getattr(r, "client_ms", None), ".3f"), str(getattr(r, "procs", "") or "—"),
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
