"""The data-work programs of issue 14 as tests: each peerbox script gives its CPython twin's value.

The programs are the rows of the benchmark's data-work table
(``bench/programs/data_<name>.rhai`` and ``.py``, params made by
``bench/programs/data_inputs.py``); this file loads them, and
``bench/data_bench.py``, by path. Each program runs at an edge size (empty
input), a small size and a mid size that fits in the default memory limit
today, through ``peerbox.compile(...).run(params=...)``, and its value must
equal the CPython program's on the same params. At the mid size the run's
peak guest memory (``Result.peak_memory``) must be reported and stay under a
bound: today's peak with headroom, since the guest allocator never frees
during a run yet (the memory manager of issue 14 lowers these; tighten them
then). No timing is asserted: speed is what ``make bench`` reports.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import peerbox

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(path: Path) -> ModuleType:
    """A module loaded from ``path`` (not via sys.path: ``bench/programs/string.py``
    would shadow the standard library's ``string``)."""
    spec = importlib.util.spec_from_file_location(f"peerbox_test_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod    # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


data_bench = _load(BENCH / "data_bench.py")
INPUTS = _load(BENCH / "programs" / "data_inputs.py")

MiB = 1 << 20

# program -> (the data_inputs function making its params, small size, mid size,
#             bound on the mid run's peak guest memory: what it keeps and about half again;
#             peak measured 2026-12-02 with memory reclaimed during the run, issue 14)
CASES: dict[str, tuple[str, int, int, int]] = {
    "wordcount": ("wordcount", 5_000, 200_000, 10 * MiB),    # 6.1 MiB
    "records": ("count", 500, 20_000, 15 * MiB),             # 9.9 MiB
    "strbuild": ("count", 3_000, 200_000, 8 * MiB),          # 5.1 MiB (keeps ~20 KiB)
    "json": ("orders", 50, 2_000, 10 * MiB),                 # 6.8 MiB
    "sort": ("records", 300, 10_000, 7 * MiB),               # 4.6 MiB
    "replace": ("replace", 5_000, 500_000, 7 * MiB),         # 4.4 MiB
    "allocdrop": ("count", 5_000, 500_000, 7 * MiB),         # 4.1 MiB (keeps nothing)
}

_COMPILED: dict[str, peerbox.Program] = {}


def _program(name: str) -> peerbox.Program:
    """The compiled ``data_<name>.rhai`` (compiled once per test process)."""
    if name not in _COMPILED:
        src = (BENCH / "programs" / f"data_{name}.rhai").read_text()
        _COMPILED[name] = peerbox.compile(src, filename=f"data_{name}.rhai")
    return _COMPILED[name]


def _params(name: str, size: int) -> dict[str, Any]:
    maker = getattr(INPUTS, CASES[name][0])
    params: dict[str, Any] = maker(size)
    return params


def _python(name: str, params: dict[str, Any]) -> Any:
    return _load(BENCH / "programs" / f"data_{name}.py").main(params)


def _check(name: str, size: int) -> peerbox.Result:
    params = _params(name, size)
    want = _python(name, params)
    res = _program(name).run(params=params)
    assert res.value == want, (name, size, res.value if len(repr(res.value)) < 2000 else "…")
    return res


def test_every_program_has_a_case_and_a_bench_row() -> None:
    programs = sorted(p.stem.removeprefix("data_") for p in BENCH.glob("programs/data_*.rhai"))
    assert programs == sorted(CASES)
    assert sorted({p.program for p in data_bench.PROGRAMS}) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_empty_input(name: str) -> None:
    """Size 0: no text, no records, no steps."""
    _check(name, 0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_small(name: str) -> None:
    res = _check(name, CASES[name][1])
    assert res.peak_memory > 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_mid_size_fits_in_memory(name: str) -> None:
    _, _, mid, bound = CASES[name]
    res = _check(name, mid)
    assert 0 < res.peak_memory <= bound, (name, res.peak_memory / MiB)


def test_values_are_not_trivial() -> None:
    """The programs compute something: spot values of the small sizes, by hand."""
    wc = _python("wordcount", _params("wordcount", 5_000))
    assert wc["top"] == "the" and wc["words"] > 500 and 100 < wc["distinct"] < 250
    rec = _python("records", {"n": 14})
    # ages 18 + 7i % 60 for i < 14: 18 25 32 39 46 53 60 67 74 21 28 35 42 49 -> 10 are >= 30
    assert rec["records"] == 14 and rec["adults"] == 10 and len(rec["by_city"]) == 7
    assert _python("allocdrop", {"n": 12}) == 10 * len("item-0") + 2 * len("item-10")
    # records 1000..1004 are "1000,item-1000,30;" .. (18 chars each) after the one flush
    chars = sum(len(f"{i},item-{i},{i % 97};") for i in range(1_005))
    assert _python("strbuild", {"n": 1_005}) == {"chars": chars, "chunks": 1, "tail": 5 * 18}
    srt = _python("sort", _params("sort", 300))
    assert srt["n"] == 300 and len(srt["top"]) == 5
    rep = _python("replace", _params("replace", 5_000))
    assert rep["lines_with"] > 0 and rep["left"] == -1 and rep["first"] == rep["first_new"]


# -- the benchmark's row runner: a run over the memory limit is a row, not a crash --

def test_bench_row_over_the_memory_limit_is_oom() -> None:
    records = next(p for p in data_bench.PROGRAMS if p.name == "data_records")
    # 40k records kept until the end cannot fit in 1 MiB, whatever the allocator
    row = data_bench.run_row(records, 40_000, 1, limits=peerbox.Limits(memory=1 * MiB))
    assert row.status == "OOM" and row.peerbox is None and row.ratio is None, row
    assert row.cpython is not None and row.cpython_peak is not None and row.cpython_peak > 0
    assert "'records': 40000" in row.value
    table = data_bench.render([row])
    assert "| data_records — " in table and "| OOM |" in table
    assert "over the 0 data rows that finished: — (target ≥ 3×; 1 row without a ratio left out)" in table


def test_bench_row_measures_and_checks() -> None:
    wc = next(p for p in data_bench.PROGRAMS if p.name == "data_wordcount")
    row = data_bench.run_row(wc, 2_000, 2)
    assert row.status in ("PASS", "MISS"), row
    assert row.peerbox and row.cpython and row.ratio and row.peerbox_peak and row.peerbox_peak > 0
    assert row.cpython_peak_how == "tracemalloc" and len(row.samples) >= 1
    geo, n = data_bench.geomean([row])
    assert n == 1 and geo == pytest.approx(row.ratio)
    assert "Geometric mean of CPython/peerbox over the 1 data rows that finished" in data_bench.render([row])


def test_bench_row_of_a_missing_program_is_an_error_row() -> None:
    missing = data_bench.DataProgram("data_missing", "no such program", "missing", "count", "steps", 1, 1)
    row = data_bench.run_row(missing, 1, 1)
    assert row.status == "ERROR" and row.note, row


@pytest.mark.slow  # bench/run.py in a subprocess, every data row at its --quick size
def test_bench_quick_data_table(tmp_path: Path) -> None:
    """``bench/run.py --quick --only data`` prints the table and writes its rows to the JSON."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--only", "data", "--results-dir", str(tmp_path)],
        cwd=BENCH.parent, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "## Data work" in proc.stdout and "Geometric mean of CPython/peerbox over the " in proc.stdout
    names = [p.name for p in data_bench.PROGRAMS]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| data_")]
    assert [line.split(" — ")[0][2:] for line in table] == names, proc.stdout
    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert doc["rows"] == []                      # the data rows have their own list
    rows = {r["name"]: r for r in doc["data_rows"]}
    assert list(rows) == names
    for r in rows.values():
        assert r["status"] in ("PASS", "MISS", "OOM"), r
        assert r["cpython"] > 0 and r["cpython_samples"] and r["value"], r
        assert r["status"] == "OOM" or (r["peerbox"] > 0 and r["peerbox_peak"] > 0 and r["ratio"] > 0), r
    assert doc["data_geomean"]["rows"] == sum(r["status"] != "OOM" for r in rows.values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_small_on_the_debug_runtime(debug_sandbox: peerbox.Sandbox, name: str) -> None:
    """A collection at every safe point, freed memory poisoned: the same values (issue 14)."""
    params = _params(name, CASES[name][1] // 10)
    src = (BENCH / "programs" / f"data_{name}.rhai").read_text()
    res = peerbox.compile(src, filename=f"data_{name}.rhai", sandbox=debug_sandbox).run(params=params)
    assert res.value == _python(name, params)
