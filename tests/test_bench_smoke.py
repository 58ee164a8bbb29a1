"""Smoke test of the benchmark: ``bench/run.py --quick`` runs every row.

No timing is asserted (timings are what the benchmark reports, not a test);
this only checks that every workload compiles, runs, agrees with its CPython
twin, and that the table and the result files are produced.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROWS = [
    "fib", "loop_while", "loop_for", "string", "map", "sort",
    "compile_frontend", "compile_wasmtime", "compile_total", "trivial_run", "trivial_compile_run",
]


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

    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert [r["name"] for r in doc["rows"]] == ROWS
    assert all(r["peerbox"] is not None for r in doc["rows"])
    for key in ("cpu", "cores", "python", "wasmtime", "date", "commit"):
        assert key in doc["machine"]
    assert (tmp_path / "latest.md").read_text().count("\n| ") >= len(ROWS)


def test_bench_only_selects_rows() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--only", "fib,trivial_run"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [line.split(" — ")[0][2:] for line in proc.stdout.splitlines() if line.startswith("| ")
             and " — " in line]
    assert names == ["fib", "trivial_run"], proc.stdout
