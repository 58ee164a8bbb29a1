"""Smoke test of the benchmark: ``bench/run.py --quick`` runs every row.

No timing is asserted (timings are what the benchmark reports, not a test);
this only checks that every workload compiles, runs, agrees with its CPython
twin (the isolation rows: with ``programs/order.py``, the host-call rows:
with the file's content), and that the tables and the result files are
produced.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # runs bench/run.py in subprocesses

REPO = Path(__file__).resolve().parent.parent
PERF_ROWS = [
    "fib", "loop_while", "loop_for", "string", "map", "sort",
    "compile_frontend", "compile_wasmtime", "compile_total", "trivial_run", "trivial_compile_run",
]
ISO_ROWS = ["iso_a_python", "iso_a_python_fs", "iso_b_script", "iso_c_fs_read", "iso_d_subprocess",
            "iso_d_cli"]
HOSTCALL_ROWS = ["hostcall_py_read", "hostcall_dispatch", "hostcall_fs_read"]
NET_ROWS = ["net_anchor_64", "net_anchor_open", "net_shared_1", "net_call_1", "net_shared_64", "net_call_64",
            "net_shared_open", "net_isolated_64", "net_isolated_open", "net_ws_1", "net_ws_64", "net_idle_peer"]
#: peerbox/call rows (issue 16): each note compares it with its exec twin measured in the same run
NET_CALL_ROWS = {"net_call_1": "net_shared_1", "net_call_64": "net_shared_64"}
#: The network rows with a target: each must come out PASS or MISS (measured), never "" or ERROR.
NET_TARGETED = ["net_shared_64", "net_shared_open", "net_isolated_64", "net_idle_peer"]
ROWS = PERF_ROWS + ISO_ROWS + HOSTCALL_ROWS


def test_bench_quick_produces_every_row(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--results-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    for name in ROWS:
        assert any(line.startswith(f"| {name} — ") for line in table), (name, proc.stdout)
    assert "ERROR" not in proc.stdout and "WRONG" not in proc.stdout, proc.stdout

    for target_row in ("iso_b_script", "iso_c_fs_read"):
        line = next(line for line in table if line.startswith(f"| {target_row} — "))
        assert "PASS" in line or "MISS" in line, line

    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    own_tables = ("policy", "network", "logic", "hostile", "startup", "storage", "nats")
    assert [r["name"] for r in doc["rows"] if r["group"] not in own_tables] == ROWS
    storage = [r for r in doc["rows"] if r["group"] == "storage" and not r["name"].startswith("db_")]
    records = [r for r in doc["rows"] if r["name"] in ("db_records", "db_fs_json")]  # bench/db_bench.py
    assert len(records) == 2 and all(r["peerbox"] > 0 and r["us"] > 0 for r in records), records
    assert [r["title"].split()[0] for r in storage] == ["fs", "sqlite", "s3"], storage
    assert all(r["peerbox"] > 0 and r["us"] > 0 for r in storage), storage
    assert "## Storage backends" in proc.stdout
    assert any(r["group"] == "hostile" for r in doc["rows"])
    nats = [r for r in doc["rows"] if r["group"] == "nats"]
    assert len(nats) == 7 + 3 * 7 + 1, nats  # NATS next to HTTP/2; 1, 2, 3 workers (7 rows each); target
    scaling = nats[-1]   # worker CPU per call with 3 workers / with 1, judged against its target
    assert scaling["us"] > 0 and ("PASS" in scaling["title"] or "MISS" in scaling["title"]), scaling
    assert [r["rel"] for r in doc["rows"] if r["group"] == "startup"][0] == 1.0  # the reference
    _check_network(doc, table)
    assert "## Network" in proc.stdout
    policy = [r for r in doc["rows"] if r["group"] == "policy"]
    assert len(policy) >= 5 and all(r["us"] > 0 for r in policy)
    assert "## Policy decisions" in proc.stdout
    logic = [r for r in doc["rows"] if r["group"] == "logic"]
    assert len(logic) == 7 and all(r["us"] > 0 and r["unit"] in ("µs", "ms") for r in logic), logic
    assert "## Open logic" in proc.stdout and "logic set: a module 5 others import" in proc.stdout
    by_name = {r["name"]: r for r in doc["rows"]}
    assert all(by_name[n]["peerbox"] is not None and by_name[n]["group"] == "perf" for n in PERF_ROWS)
    for names, group in ((ISO_ROWS, "isolation"), (HOSTCALL_ROWS, "hostcall")):
        for n in names:
            r = by_name[n]
            assert r["group"] == group and r["us"] is not None and math.isfinite(r["us"]), r
            # a row that is a difference of two timings ("(N reads − empty loop) / N") can come out
            # below zero in a --quick run on a busy machine: only the others must be positive
            assert r["us"] > 0 or "−" in r["title"], r
            assert r["rel"] is not None and r["samples"], r
        assert by_name[names[0]]["rel"] == 1.0
    for key in ("cpu", "cores", "python", "wasmtime", "date", "commit", "loadavg_start", "loadavg_end"):
        assert key in doc["machine"]
    latest = (tmp_path / "latest.md").read_text()
    assert latest.count("\n| ") >= len(ROWS)
    assert "## Isolation overhead" in latest and "## Host-call overhead" in latest


def test_bench_only_selects_rows() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--only",
         "fib,trivial_run,iso_b,hostcall_fs"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [line.split(" — ")[0][2:] for line in proc.stdout.splitlines() if line.startswith("| ")
             and " — " in line]
    assert names == ["fib", "trivial_run", "iso_b_script", "hostcall_fs_read"], proc.stdout


def _check_network(doc: dict[str, Any], table: list[str]) -> None:
    """Every network row measured: calls/s, server and client CPU per call from the processes'
    clocks, the worker's CPU as a ratio to the anchor's, a status against each target."""
    net = {r["name"]: r for r in doc["rows"] if r["group"] == "network"}
    assert list(net) == NET_ROWS
    for n in NET_ROWS:
        assert net[n]["status"] in ("PASS", "MISS", ""), net[n]
        assert net[n]["us"] is not None, net[n]              # calls/s, or KiB per idle peer
        assert any(line.startswith(f"| {n} — ") for line in table), n
    for n in NET_TARGETED:
        assert net[n]["status"] in ("PASS", "MISS"), net[n]
    for n in NET_ROWS[:-1]:
        r = net[n]
        assert r["us"] > 0 and r["peerbox"] > 0 and r["cpython"] >= r["peerbox"], r   # calls/s, p50 <= p99
        assert r["server_ms"] > 0 and r["client_ms"] > 0 and r["procs"] >= 1, r
        assert r["failed"] == 0, r
        anchor_ms = net["net_anchor_open" if n.endswith("_open") else "net_anchor_64"]["server_ms"]
        assert n.startswith("net_anchor") or r["vs_anchor"] == pytest.approx(r["server_ms"] / anchor_ms), r
    assert net["net_isolated_64"]["procs"] >= 2, net["net_isolated_64"]   # the router and the peer's child
    for n, twin in NET_CALL_ROWS.items():
        assert f"call / exec ({twin}, same run): calls/s " in net[n]["note"], net[n]


def test_anchor_server_does_the_work_it_stands_for(tmp_path: Path) -> None:
    """The yardstick of the worker's CPU per call (bench/anchor_server.py) must really verify, spend
    the nonce and run the script: its reply verifies with the project's client, a replayed envelope
    is refused (409) and a forged one too (400)."""
    import time

    import peerbox
    import trio
    from peerbox.wire import make_request, verify_reply

    store = peerbox.PeerStore(tmp_path / "root")
    me = store.init("client").signing_key()
    target = store.init("bob").signing_key().public_key
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "anchor_server.py"), "--root",
                             str(tmp_path / "root"), "--peer", "bob", "--port-file", str(port_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.05)
        url = f"http://127.0.0.1:{int(port_file.read_text())}"
        envelope = make_request(me, target=target, script="params.x + 1", params={"x": 41},
                                now=int(time.time()))
        forged = envelope[:-1] + bytes([envelope[-1] ^ 1])
        answers: list[tuple[int, bytes]] = []

        async def main() -> None:
            async with peerbox.AsyncClient(me) as client:
                for env in (envelope, envelope, forged):
                    status, _ctype, body = await client.transport.exec(url, env, 30.0)
                    answers.append((status, body))

        trio.run(main)
        assert answers[0][0] == 200
        assert verify_reply(answers[0][1], target=target, request_bytes=envelope).value == 42
        assert [a[0] for a in answers[1:]] == [409, 400], answers
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert proc.returncode == 0
    assert not port_file.exists()                 # removed on a clean stop
